"""The LLM-First Search experiment: policies x puzzle tasks, scored by a model or a labelled stand-in.

Each (task, policy, game) is one search. Instances come from this codebase's generators (`tasks`) or
from a file (`instances_file`: the paper's own Countdown JSON and Sudoku pickles, or our JSONL; see
`libs.envs.instances`). Games run concurrently (`games_in_parallel`); each game journals its tree,
and finished games are appended to `games.jsonl`, so a rerun in the same workdir skips them and
resumes the others. A game whose model calls still fail after the gateway's retries is recorded
as unfinished, with the reason, and the run goes on (a rerun plays it again). SIGTERM / Ctrl-C stop
every game at its next step, journals complete, and end the run with status "interrupted". The run ends with `summary.md` (win rates with Wilson intervals, tokens,
nodes and seconds per game, AUP) and `profiles.png`.

The defaults follow the paper's code. The switches under "departures from the paper" restore this
codebase's earlier variants; each one in use is listed in the summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Sequence
from typing import Annotated, Any

import gin
from absl import logging

from libs.agents import puzzles, report, standin
from libs.agents.model_queries import ModelScorer
from libs.envs import countdown, instances, sudoku
from libs.search import best_first, evolutionary, greedy, lfs, mcts, tot_bfs
from libs.search.base import Budget, Search
from libs.train import rundir
from libs.train.errors import ConfigError, UserError
from libs.train.launch import NON_NEGATIVE, POSITIVE
from libs.train.metrics import format_duration

# name -> (game, generator arguments); the paper's tasks.
TASKS = {
    "countdown3": ("countdown", {"num_numbers": 3}),
    "countdown5": ("countdown", {"num_numbers": 5}),
    "countdown7": ("countdown", {"num_numbers": 7}),
    "sudoku4x4": ("sudoku", {"size": 4, "difficulty": "hard"}),
    "sudoku6x6": ("sudoku", {"size": 6, "difficulty": "medium"}),
}
# The paper's token caps per game (README "Reproducing"); 9x9 Sudoku has none there, so 6x6's.
TOKEN_CAPS = {"countdown": 1_000_000, 4: 100_000, 6: 500_000, 9: 500_000}
POLICIES = {
    "lfs": lambda p, cfg, **kw: lfs.LLMFirstSearch(p, **kw),
    "bestfs": lambda p, cfg, **kw: best_first.BestFirstSearch(p, **kw),
    "tot_bfs": lambda p, cfg, **kw: tot_bfs.ToTBFS(p, top_n=cfg["tot_top_n"], **kw),
    "mcts": lambda p, cfg, **kw: mcts.MCTS(p, selection="puct", c=cfg["mcts_c"],
                                           close_dead_ends=cfg["close_mcts_dead_ends"], **kw),
    "mcts_uct": lambda p, cfg, **kw: mcts.MCTS(p, selection="uct", c=cfg["mcts_c"], **kw),
    "greedy": lambda p, cfg, **kw: greedy.Greedy(p, **kw),
    "evolutionary": lambda p, cfg, **kw: evolutionary.Evolutionary(p, **kw),
}
DEPARTURES = ("win_on_generation", "known_terminal_values", "merge_equivalent_moves", "strict_sudoku_dead_ends",
              "close_mcts_dead_ends")


def make_games(task: str, count: int, seed: int) -> list:
    kind, args = TASKS[task]
    if kind == "countdown":
        return list(countdown.generate(args["num_numbers"], count, seed))
    return list(sudoku.generate(args["size"], args["difficulty"], count, seed))


def token_cap(instance) -> int:
    return TOKEN_CAPS["countdown"] if isinstance(instance, countdown.CountdownInstance) else TOKEN_CAPS[instance.size]


@gin.configurable(denylist=["workdir"])
def run(
    workdir: str,
    tasks: Sequence[str] = ("countdown3",),
    policies: Sequence[str] = ("lfs",),
    instances_file: str | None = None,
    sudoku_box_shape: Sequence[int] | None = None,
    scorer: str = "standin",
    standin_level: str = "medium",
    num_games: Annotated[int, POSITIVE] = 20,
    seed: int = 0,
    games_in_parallel: Annotated[int, POSITIVE] = 8,
    max_tokens_per_game: int = -1,
    max_nodes_per_game: Annotated[int, NON_NEGATIVE] = 0,
    max_seconds_per_game: Annotated[float, NON_NEGATIVE] = 0.0,
    mcts_c: Annotated[float, NON_NEGATIVE] = 0.5,
    tot_top_n: Annotated[int, POSITIVE] = 3,
    aup: str = "paper",
    win_on_generation: bool = False,
    known_terminal_values: bool = False,
    merge_equivalent_moves: bool = False,
    strict_sudoku_dead_ends: bool = False,
    close_mcts_dead_ends: bool = False,
) -> dict[str, Any]:
    """Plays `num_games` instances of every task with every policy.

    Args:
      workdir: run directory (games.jsonl, journals/, summary.md, profiles.png, llm_cache.sqlite).
      tasks: names from TASKS (generated instances); ignored when `instances_file` is set.
      policies: names from POLICIES.
      instances_file: play the first `num_games` instances of this file instead: the paper's
        `val_<k>.json` or `sudoku_diff_<level>_w_<w>_h_<h>.pkl`, or our JSONL. The task is named
        after the file.
      sudoku_box_shape: [rows, cols] of a 6x6 file's boxes when the file does not say.
      scorer: "standin" (the puzzle heuristic with `standin_level` noise; no model) or "llm"
        (the model of `LLMConfig`).
      standin_level: one of libs.agents.standin.LEVELS: "exact", "strong", "medium", "weak".
      max_tokens_per_game: scorer-token cap per game; -1 uses the paper's cap for the task, 0 none.
        A stand-in's tokens are estimated from the prompts it would have been sent.
      max_nodes_per_game / max_seconds_per_game: further per-game budgets (0: none, as in the paper).
      mcts_c: exploration constant of MCTS. tot_top_n: ToT-BFS beam width.
      aup: "paper" (the LFS code's AUP formulas) or "per_token" (efficiency = win rate per token).
      win_on_generation, known_terminal_values, merge_equivalent_moves, strict_sudoku_dead_ends,
        close_mcts_dead_ends: departures from the paper (see README), all off by default.
    """
    unknown = [t for t in tasks if t not in TASKS and not instances_file] + [p for p in policies
                                                                             if p not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown task or policy {unknown}: tasks {sorted(TASKS)}, policies {sorted(POLICIES)}")
    if scorer not in ("standin", "llm"):
        raise ConfigError(f"run.scorer={scorer!r}: expected 'standin' or 'llm'")
    if standin_level not in standin.LEVELS:
        raise ConfigError(f"run.standin_level={standin_level!r}: expected one of {list(standin.LEVELS)}")
    if aup not in ("paper", "per_token"):
        raise ConfigError(f"run.aup={aup!r}: expected 'paper' or 'per_token'")
    settings = {"mcts_c": mcts_c, "tot_top_n": tot_top_n, "close_mcts_dead_ends": close_mcts_dead_ends}
    switches = dict(win_on_generation=win_on_generation, known_terminal_values=known_terminal_values,
                    merge_equivalent_moves=merge_equivalent_moves, strict_sudoku_dead_ends=strict_sudoku_dead_ends,
                    close_mcts_dead_ends=close_mcts_dead_ends)
    departures = [name for name in DEPARTURES if switches[name]]
    task_games = _load_tasks(tasks, instances_file, sudoku_box_shape, num_games, seed)
    os.makedirs(workdir, exist_ok=True)
    gateway, errors = _gateway(workdir) if scorer == "llm" else (None, {"budget": (), "call": ()})
    label = gateway.config.model if gateway else standin.label(standin_level)
    games_path = os.path.join(workdir, "games.jsonl")
    done = {(r["task"], r["policy"], r["game"]) for r in report.read_games(games_path) if r.get("finished", True)}
    jobs = [(t, p, i, g) for t, games in task_games.items() for i, g in enumerate(games) for p in policies
            if (t, p, i) not in done]
    logging.info("%d games to play (%d already done); scorer: %s%s", len(jobs), len(done), label,
                 f"; departures from the paper: {', '.join(departures)}" if departures else "")

    async def play(task, policy, index, instance) -> dict[str, Any]:
        if isinstance(instance, countdown.CountdownInstance):
            game = puzzles.CountdownGame(instance, merge_equivalent=merge_equivalent_moves)
        else:
            game = puzzles.SudokuGame(instance, strict_dead_ends=strict_sudoku_dead_ends)
        if gateway:
            scorer_ = ModelScorer(gateway, label, structured=gateway.structured_outputs)
        else:  # One noise draw per (seed, task, game): every policy meets the same stand-in "model".
            game_seed = int(hashlib.sha256(f"{seed}/{task}/{index}".encode()).hexdigest()[:12], 16)
            scorer_ = standin.StandInScorer(standin_level, seed=game_seed)
        problem = puzzles.PuzzleProblem(game, scorer_, known_terminal_values=known_terminal_values)
        cap = token_cap(instance) if max_tokens_per_game < 0 else max_tokens_per_game
        journal = os.path.join(workdir, "journals", task, policy, f"{index}.jsonl")
        budget = Budget(max_nodes=max_nodes_per_game, max_tokens=cap, max_seconds=max_seconds_per_game)
        search: Search = POLICIES[policy](problem, settings, budget=budget, journal_path=journal,
                                          win_on_generation=win_on_generation)
        search.should_stop = rundir.stop_requested
        try:
            result = await search.run()
        except errors["call"] as e:  # pylint: disable=catching-non-exception
            if isinstance(e, UserError):
                raise
            return {"task": task, "policy": policy, "game": index, "finished": False, "scorer": label,
                    "tokens": problem.tokens_used(), "reason": str(e).splitlines()[0][:300]}
        if result.stop_reason == "interrupted":
            return None
        stats = getattr(scorer_, "stats", None)
        return {"task": task, "policy": policy, "game": index, "finished": True, "solved": result.solved,
                "stop_reason": result.stop_reason, "tokens": result.tokens, "nodes": result.nodes,
                "steps": result.steps, "seconds": round(result.seconds, 4),
                "search_seconds": round(result.seconds - result.query_seconds, 4),
                "scorer_seconds": round(result.query_seconds, 4), "scorer": label,
                "queries": stats.queries if stats else scorer_.queries,
                "model_calls": stats.calls if stats else 0, "parse_retries": stats.retries if stats else 0,
                "fallbacks": stats.fallbacks if stats else 0, "backtracks": getattr(search, "backtracks", None),
                "departures": departures,
                "solution": problem.encode(result.solution.state) if result.solution else None}

    status = asyncio.run(_play_all(jobs, play, games_in_parallel, games_path, errors["budget"]))
    if gateway:
        gateway.write_usage(os.path.join(workdir, "llm_usage.jsonl"))
        gateway.close()
    summary = report.write_summary(workdir, list(task_games), list(policies), scorer_label=label, aup=aup,
                                   departures=departures)
    summary["status"] = "incomplete" if status == "complete" and summary.get("unfinished") else status
    logging.info("summary written to %s (%s)", os.path.join(workdir, "summary.md"), status)
    return summary


def _load_tasks(tasks, instances_file, box_shape, num_games: int, seed: int) -> dict[str, list]:
    if not instances_file:
        return {t: make_games(t, num_games, seed) for t in tasks}
    try:
        loaded = instances.load_instances(instances_file, box_shape=tuple(box_shape) if box_shape else None,
                                          limit=num_games)
    except instances.InstanceError as e:
        raise UserError(str(e)) from e
    task = os.path.splitext(os.path.basename(instances_file))[0]
    logging.info("task %s: %s from %s", task, instances.describe(loaded), instances_file)
    return {task: loaded}


def _gateway(workdir: str):
    """The run's gateway and the errors it raises: {"budget": run budget spent, "call": a call failed}."""
    from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel (litellm is slow to import)

    return llm.Gateway.for_run(workdir), {"budget": llm.BudgetExceeded, "call": (llm.LLMError,)}


async def _play_all(jobs, play, parallel: int, games_path: str, budget_error) -> str:
    """Plays jobs `parallel` at a time, appending each game's record; stops cleanly on a spent budget or
    a stop request (SIGTERM / Ctrl-C). Returns "complete", "budget" or "interrupted"."""
    semaphore = asyncio.Semaphore(parallel)
    start, finished, wins, unfinished = time.perf_counter(), 0, 0, 0
    stop = asyncio.Event()

    async def one(job):
        nonlocal finished, wins, unfinished
        async with semaphore:
            if stop.is_set() or rundir.stop_requested():
                return
            try:
                record = await play(*job)
            except budget_error as e:
                logging.warning("LLM budget spent (%s); stopping after the games in flight", e)
                stop.set()
                return
            if record is None:  # Interrupted: its journal holds it; a rerun resumes it.
                return
            rundir.append_jsonl(games_path, record)
            if not record["finished"]:
                unfinished += 1
                logging.warning("game %s %s #%d unfinished: %s", record["task"], record["policy"], record["game"],
                                record["reason"])
                return
            finished += 1
            wins += record["solved"]
            elapsed = time.perf_counter() - start
            eta = elapsed / finished * (len(jobs) - finished - unfinished)
            logging.info("games %d/%d | win rate %.0f%% | last: %s %s #%d %s, %d tokens, %.2f s | %s elapsed | "
                         "ETA %s", finished, len(jobs), 100 * wins / finished, record["task"], record["policy"],
                         record["game"], "won" if record["solved"] else "lost", record["tokens"], record["seconds"],
                         format_duration(elapsed), format_duration(eta))

    await asyncio.gather(*(one(job) for job in jobs))
    if rundir.stop_requested():
        return "interrupted"
    return "budget" if stop.is_set() else "complete"
