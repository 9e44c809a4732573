r"""Search-library benchmarks: bookkeeping cost per expansion, and games over a slow model.

    python -m tools.bench_search --nodes=100000            # bookkeeping only
    python -m tools.bench_search --games=20 --calls=25     # + LFS games against a 200 ms local server

1. Bookkeeping: a synthetic problem with instant expansion and scoring grows a
   tree to `--nodes` nodes under a policy (journal on disk); what remains is the
   library's own cost per expansion, reported overall and for the last 10%.
2. Games: `--games` LLM-First Search games on Countdown, all at once, each with
   the model (a local OpenAI-compatible test server answering after
   `--delay_s`) as scorer, through the real gateway; the wall time is compared
   with total calls x delay / calls in flight.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

from absl import app, flags

from libs.search import best_first, lfs, mcts
from libs.search.base import Budget
from libs.search.problem import Problem

_NODES = flags.DEFINE_integer("nodes", 100_000, "Tree size for the bookkeeping benchmark (0: skip).")
_POLICIES = flags.DEFINE_list("policies", ["lfs", "bestfs", "mcts"], "Policies for the bookkeeping benchmark.")
_GAMES = flags.DEFINE_integer("games", 0, "LFS games against the local server (0: skip).")
_CALLS = flags.DEFINE_integer("calls", 25, "Model calls per game (the game's token budget is set to match).")
_IN_FLIGHT = flags.DEFINE_integer("in_flight", 20, "LLMConfig.max_in_flight for the games benchmark.")
_DELAY = flags.DEFINE_float("delay_s", 0.2, "Server delay per call.")


class Synthetic(Problem):
    """Branching factor 4, states numbered in creation order, values from a hash: no work besides the
    library's own."""

    def __init__(self):
        self._next = 1

    def root(self):
        return 0

    async def expand(self, state):
        self._next += 4
        return list(range(self._next - 4, self._next))

    async def child_values(self, path, children):
        return {i: ((s * 2654435761) % 1000) / 1000.0 for i, s in children.items()}

    def is_terminal(self, state):
        return False

    def is_solution(self, state):
        return False


POLICIES = {"lfs": lfs.LLMFirstSearch, "bestfs": best_first.BestFirstSearch, "mcts": mcts.MCTS}


def bench_bookkeeping(policy: str, nodes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        search = POLICIES[policy](Synthetic(), budget=Budget(max_nodes=nodes),
                                  journal_path=os.path.join(tmp, "journal.jsonl"))
        marks = []

        async def run():
            while len(search.tree) < nodes:
                t0 = time.perf_counter()
                await search.step()
                search.steps += 1
                search.tree.save_policy_state(search.policy_state(), search.seconds())
                marks.append((len(search.tree), time.perf_counter() - t0))

        t0 = time.perf_counter()
        asyncio.run(run())
        total = time.perf_counter() - t0
        size = os.path.getsize(os.path.join(tmp, "journal.jsonl"))
    tail = [dt for n, dt in marks if n >= 0.9 * nodes]
    return {"steps": len(marks), "total_s": total, "ms_per_step": 1e3 * total / len(marks),
            "ms_per_step_last_10pct": 1e3 * sum(tail) / max(len(tail), 1), "journal_mb": size / 2**20}


def main(argv):
    del argv
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if _NODES.value:
        for policy in _POLICIES.value:
            r = bench_bookkeeping(policy, _NODES.value)
            print(f"bookkeeping {policy:7s} {_NODES.value:,} nodes: {r['steps']:,} expansions in "
                  f"{r['total_s']:.1f} s = {r['ms_per_step']:.3f} ms/expansion "
                  f"(last 10% of the tree: {r['ms_per_step_last_10pct']:.3f} ms), journal {r['journal_mb']:.1f} MB")
    if _GAMES.value:
        from tools import bench_search_games  # pylint: disable=import-outside-toplevel

        bench_search_games.run(_GAMES.value, _CALLS.value, _IN_FLIGHT.value, _DELAY.value)


if __name__ == "__main__":
    app.run(main)
