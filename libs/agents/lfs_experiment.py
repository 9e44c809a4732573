"""The LLM-First Search experiment: policies x puzzle tasks, scored by a heuristic or a model.

Each (task, policy, game) is one search over a generated instance. Games run
concurrently (`games_in_parallel`); each game journals its tree, and finished
games are appended to `games.jsonl`, so a rerun in the same workdir skips them
and resumes the unfinished ones. The run ends with `summary.md` (win rates with
Wilson intervals, tokens per game, AUP) and `profiles.png`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import gin
from absl import logging

from libs.agents import puzzles, report
from libs.agents.model_queries import ModelQueries
from libs.envs import countdown, sudoku
from libs.search import best_first, evolutionary, greedy, lfs, mcts, tot_bfs
from libs.search.base import Budget, Search
from libs.train.launch import ConfigError
from libs.train.metrics import format_duration

# name -> (game, generator arguments, the paper's token cap per game)
TASKS = {
    "countdown3": ("countdown", {"num_numbers": 3}, 1_000_000),
    "countdown5": ("countdown", {"num_numbers": 5}, 1_000_000),
    "countdown7": ("countdown", {"num_numbers": 7}, 1_000_000),
    "sudoku4x4": ("sudoku", {"size": 4, "difficulty": "hard"}, 100_000),
    "sudoku6x6": ("sudoku", {"size": 6, "difficulty": "medium"}, 500_000),
}
POLICIES = {
    "lfs": lambda p, cfg, **kw: lfs.LLMFirstSearch(p, **kw),
    "bestfs": lambda p, cfg, **kw: best_first.BestFirstSearch(p, **kw),
    "tot_bfs": lambda p, cfg, **kw: tot_bfs.ToTBFS(p, top_n=cfg["tot_top_n"], **kw),
    "mcts": lambda p, cfg, **kw: mcts.MCTS(p, selection="puct", c=cfg["mcts_c"], **kw),
    "mcts_uct": lambda p, cfg, **kw: mcts.MCTS(p, selection="uct", c=cfg["mcts_c"], **kw),
    "greedy": lambda p, cfg, **kw: greedy.Greedy(p, **kw),
    "evolutionary": lambda p, cfg, **kw: evolutionary.Evolutionary(p, **kw),
}


def make_games(task: str, count: int, seed: int) -> list:
    kind, args, _ = TASKS[task]
    if kind == "countdown":
        return [puzzles.CountdownGame(i) for i in countdown.generate(args["num_numbers"], count, seed)]
    return [puzzles.SudokuGame(i) for i in sudoku.generate(args["size"], args["difficulty"], count, seed)]


@gin.configurable(denylist=["workdir"])
def run(
    workdir: str,
    tasks: Sequence[str] = ("countdown3",),
    policies: Sequence[str] = ("lfs",),
    scorer: str = "heuristic",
    num_games: int = 20,
    seed: int = 0,
    games_in_parallel: int = 8,
    max_tokens_per_game: int = -1,
    max_nodes_per_game: int = 5000,
    max_seconds_per_game: float = 0.0,
    mcts_c: float = 0.5,
    tot_top_n: int = 3,
) -> dict[str, Any]:
    """Plays `num_games` instances of every task with every policy.

    Args:
      workdir: run directory (games.jsonl, journals/, summary.md, profiles.png, llm_cache.sqlite).
      tasks: names from TASKS. policies: names from POLICIES.
      scorer: "heuristic" (offline stand-in, no model) or "llm" (the model of `LLMConfig`).
      max_tokens_per_game: model-token cap per game; -1 uses the paper's cap for the task, 0 none.
      max_nodes_per_game / max_seconds_per_game: further per-game budgets (0: none).
      mcts_c: exploration constant of MCTS. tot_top_n: ToT-BFS beam width.
    """
    unknown = [t for t in tasks if t not in TASKS] + [p for p in policies if p not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown task or policy {unknown}: tasks {sorted(TASKS)}, policies {sorted(POLICIES)}")
    if scorer not in ("heuristic", "llm"):
        raise ConfigError(f"run.scorer={scorer!r}: expected 'heuristic' or 'llm'")
    os.makedirs(workdir, exist_ok=True)
    gateway, budget_error = _gateway(workdir) if scorer == "llm" else (None, ())
    games_path = os.path.join(workdir, "games.jsonl")
    done = {(r["task"], r["policy"], r["game"]) for r in report.read_games(games_path)}
    jobs = [(t, p, i, g) for t in tasks for i, g in enumerate(make_games(t, num_games, seed)) for p in policies
            if (t, p, i) not in done]
    logging.info("%d games to play (%d already done) with the %s scorer", len(jobs), len(done),
                 puzzles.HEURISTIC_LABEL if scorer == "heuristic" else gateway.config.model)
    settings = {"mcts_c": mcts_c, "tot_top_n": tot_top_n}

    async def play(task, policy, index, game) -> dict[str, Any]:
        cap = TASKS[task][2] if max_tokens_per_game < 0 else max_tokens_per_game
        queries = ModelQueries(gateway, game.rules) if gateway else None
        problem = puzzles.PuzzleProblem(game, scorer, queries)
        journal = os.path.join(workdir, "journals", task, policy, f"{index}.jsonl")
        budget = Budget(max_nodes=max_nodes_per_game, max_tokens=cap if gateway else 0,
                        max_seconds=max_seconds_per_game)
        search: Search = POLICIES[policy](problem, settings, budget=budget, journal_path=journal)
        result = await search.run()
        stats = queries.stats if queries else None
        return {"task": task, "policy": policy, "game": index, "solved": result.solved,
                "stop_reason": result.stop_reason, "tokens": result.tokens, "nodes": result.nodes,
                "steps": result.steps, "seconds": round(result.seconds, 3),
                "scorer": puzzles.HEURISTIC_LABEL if scorer == "heuristic" else gateway.config.model,
                "model_calls": stats.calls if stats else 0, "parse_retries": stats.retries if stats else 0,
                "fallbacks": stats.fallbacks if stats else 0,
                "solution": problem.encode(result.solution.state) if result.solution else None}

    status = asyncio.run(_play_all(jobs, play, games_in_parallel, games_path, budget_error))
    if gateway:
        gateway.write_usage(os.path.join(workdir, "llm_usage.jsonl"))
        gateway.close()
    summary = report.write_summary(workdir, list(tasks), list(policies), scorer_label=(
        puzzles.HEURISTIC_LABEL if scorer == "heuristic" else gateway.config.model))
    summary["status"] = status
    logging.info("summary written to %s (%s)", os.path.join(workdir, "summary.md"), status)
    return summary


def _gateway(workdir: str):
    """The run's gateway and the exception that says its budget is spent."""
    from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel (litellm is slow to import)

    return llm.Gateway(llm.LLMConfig(), cache_path=os.path.join(workdir, "llm_cache.sqlite")), llm.BudgetExceeded


async def _play_all(jobs, play, parallel: int, games_path: str, budget_error) -> str:
    """Plays jobs `parallel` at a time, appending each finished game; stops cleanly on a spent budget."""
    semaphore = asyncio.Semaphore(parallel)
    start, finished, wins = time.perf_counter(), 0, 0
    stop = asyncio.Event()

    async def one(job):
        nonlocal finished, wins
        async with semaphore:
            if stop.is_set():
                return
            try:
                record = await play(*job)
            except budget_error as e:
                logging.warning("LLM budget spent (%s); stopping after the games in flight", e)
                stop.set()
                return
            with open(games_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            finished += 1
            wins += record["solved"]
            elapsed = time.perf_counter() - start
            eta = elapsed / finished * (len(jobs) - finished)
            logging.info("games %d/%d | win rate %.0f%% | last: %s %s #%d %s, %d tokens | %s elapsed | ETA %s",
                         finished, len(jobs), 100 * wins / finished, record["task"], record["policy"],
                         record["game"], "won" if record["solved"] else "lost", record["tokens"],
                         format_duration(elapsed), format_duration(eta))

    await asyncio.gather(*(one(job) for job in jobs))
    return "budget" if stop.is_set() else "complete"
