"""Many LLM-First Search games against a slow local model: is the model the only cost?

`games` Sudoku games run at once through the real gateway (litellm over
HTTP) against `libs.llm.testing.LocalOpenAIServer`, which answers every call
after `delay_s` with the scripted search replies of `libs.agents.testing`
(a test double, not a model). Each game stops after `calls` model calls (its
token budget is set from a probe game). Ideal wall time = total calls x delay /
calls in flight; the ratio to it is what the search and gateway add.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time

import libs.llm  # noqa: F401  (sets the offline cost map before litellm loads)
from libs.agents import puzzles
from libs.agents.model_queries import FALLBACKS, ModelScorer
from libs.agents.testing import search_responder
from libs.envs import sudoku
from libs.llm.gateway import Gateway, LLMConfig
from libs.llm.testing import LocalOpenAIServer
from libs.search import lfs
from libs.search.base import Budget


class _CallCap(ModelScorer):
    """Stops a game after exactly `cap` model calls."""

    def __init__(self, *args, cap: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.cap = cap

    async def ask(self, kind, game_name, prompt, keys):
        if self.stats.calls >= self.cap:
            return FALLBACKS[kind]
        return await super().ask(kind, game_name, prompt, keys)


def run(games: int, calls: int, in_flight: int, delay_s: float) -> dict[str, float]:
    # 9x9 easy Sudoku: 24 empty cells, so no game can end before it has made its calls.
    instances = sudoku.generate(9, "easy", games, seed=11)
    os.environ["BENCH_LLM_KEY"] = "sk-bench-not-a-secret"
    with LocalOpenAIServer(responder=search_responder(), delay_s=delay_s) as server, \
            tempfile.TemporaryDirectory() as tmp:
        config = LLMConfig(model="openai/scripted", api_base=server.base_url, api_key_env="BENCH_LLM_KEY",
                           max_in_flight=in_flight, timeout_s=30.0, input_usd_per_mtok=0.0,
                           output_usd_per_mtok=0.0)  # The scripted model has no price to look up.
        gateway = Gateway(config)  # No cache: every call goes over HTTP.

        async def play(i, instance):
            game = puzzles.SudokuGame(instance)
            queries = _CallCap(gateway, "openai/scripted", cap=calls)
            problem = puzzles.PuzzleProblem(game, queries)

            class Capped(lfs.LLMFirstSearch):
                def _stop_reason(self):
                    return "tokens" if queries.stats.calls >= calls else super()._stop_reason()

            search = Capped(problem, budget=Budget(), journal_path=os.path.join(tmp, f"{i}.jsonl"))
            await search.run()
            return queries.stats.calls

        async def main():
            return await asyncio.gather(*(play(i, inst) for i, inst in enumerate(instances)))

        t0 = time.perf_counter()
        per_game = asyncio.run(main())
        wall = time.perf_counter() - t0
        total = sum(per_game)
        ideal = total * delay_s / in_flight
        print(f"games: {games} LFS games x {calls} calls (min {min(per_game)}, max {max(per_game)}) = {total} "
              f"calls, server delay {delay_s * 1e3:.0f} ms, {in_flight} in flight (server saw at most "
              f"{server.max_concurrent}): {wall:.2f} s vs ideal {ideal:.2f} s = {wall / ideal:.3f}x (target <= 1.3x)")
        return {"wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal, "calls": total}
