"""Evaluating skill policies: the descender check against a random policy, and per-task success rates.

Every episode starts a fresh game seeded from (seed, env, episode), so two methods evaluated with one seed play
the same dungeons. Rates carry Wilson 95% intervals over episodes (`libs.evals.stats`).

- `descender_rate`: the descender skill alone from the first turn, for `step_limit` env steps; success = the
  agent reached a deeper dungeon level within them. The random policy draws uniformly from the same actions.
- `task_rates`: each task's policy over skills (`default_skills.select_skill_for_task`, or an accepted
  LLM-written program) drives the trained skill policy for up to `max_steps` env steps; success per task is
  the task detector's (`libs.envs.nethack.detectors`, run in the env workers over the whole episode).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from libs.agents.maestromotif import skills as skills_lib
from libs.envs.nethack.env import NetHackSettings
from libs.envs.nethack.vector import EpisodeRecord, VectorEnv
from libs.evals.stats import RateSummary, summarize_wins
from libs.rl import ppo
from libs.train import rundir

SKILLS = skills_lib.SKILLS
Policy = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]  # (env obs, skill ids) -> actions
SkillPicker = Callable[[list[dict], np.ndarray], np.ndarray]  # (contexts, episode starts) -> skill ids


@dataclasses.dataclass(frozen=True)
class Rate:
    """A success rate over episodes with its Wilson 95% interval."""

    successes: int
    episodes: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, outcomes: Sequence[bool]) -> Rate:
        s: RateSummary = summarize_wins([bool(o) for o in outcomes])
        return cls(int(round(s.successes)), s.n, s.rate, s.low, s.high)

    def text(self) -> str:
        return f"{100 * self.rate:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}] (n={self.episodes})"


def random_policy(num_actions: int, seed: int) -> Policy:
    rng = np.random.default_rng(seed)
    return lambda obs, skills: rng.integers(num_actions, size=len(skills))


def learned_policy(network: Any, params: Any, seed: int) -> Policy:
    act = ppo.policy_step(network.apply)
    key = [jax.random.key(seed)]

    def policy(obs: dict[str, np.ndarray], skill_ids: np.ndarray) -> np.ndarray:
        key[0], sub = jax.random.split(key[0])
        inputs = {"crop": obs["crop"], "blstats": obs["blstats"], "targets": obs["targets"],
                  "skill": skill_ids.astype(np.int32)}
        return np.asarray(jax.device_get(act(params, inputs, sub)[0]))

    return policy


def _episodes(policy_factory: Callable[[int], Policy], episodes: int, max_steps: int, num_envs: int,
              num_workers: int, seed: int, on_step: Callable[[int, dict, bool], None],
              chunk_skills: Callable[[int], SkillPicker], should_stop: Callable[[], bool],
              on_end: Callable[[int, EpisodeRecord], None] | None = None) -> int:
    """Plays the first episode of each of `episodes` envs (in chunks of `num_envs`) for `max_steps` steps.

    `on_step(env, context, started)` sees every step's context of a still-counted episode; `chunk_skills(n)`
    gives a chunk of n envs its skill picker, `(contexts, starts) -> skill ids`; `on_end(env, record)` gets each
    counted episode's record (its task successes come from the worker's detectors, which also see the map).
    Returns the number of episodes played to their end.
    """
    settings = NetHackSettings(max_episode_steps=max_steps)
    played = 0
    for chunk_start in range(0, episodes, num_envs):
        n = min(num_envs, episodes - chunk_start)
        with VectorEnv(n, min(num_workers, n), seed=seed + chunk_start, settings=settings) as venv:
            policy = policy_factory(chunk_start)
            skills = chunk_skills(n)
            batch = venv.reset()
            live = np.ones(n, bool)
            skill_ids = skills(batch.contexts, np.ones(n, bool))
            for i in range(n):
                on_step(chunk_start + i, batch.contexts[i], True)
            while live.any():
                if should_stop():
                    return played
                batch = venv.step(policy(batch.obs, skill_ids))
                for record in batch.episodes:
                    if live[record.env_index]:
                        on_step(chunk_start + record.env_index, record.final_context, False)
                        if on_end is not None:
                            on_end(chunk_start + record.env_index, record)
                        live[record.env_index] = False
                        played += 1
                for i in np.flatnonzero(live):
                    on_step(chunk_start + i, batch.contexts[i], False)
                skill_ids = skills(batch.contexts, batch.done)
    return played


def descender_rate(policy_factory: Callable[[int], Policy], episodes: int = 100, step_limit: int = 500,
                   num_envs: int = 50, num_workers: int = 2, seed: int = 10_000,
                   should_stop: Callable[[], bool] = rundir.stop_requested) -> Rate | None:
    """The share of episodes in which the descender reached a deeper level within `step_limit` steps."""
    start_depth: dict[int, int] = {}
    reached = np.zeros(episodes, bool)
    descender = SKILLS.index("descender")

    def on_step(env: int, ctx: dict, started: bool) -> None:
        if started:
            start_depth[env] = ctx["depth"]
        elif ctx["depth"] > start_depth[env]:
            reached[env] = True

    def always_descender(ctxs: list[dict], starts: np.ndarray) -> np.ndarray:
        return np.full(len(ctxs), descender, np.int32)

    played = _episodes(policy_factory, episodes, step_limit, num_envs, num_workers, seed, on_step,
                       lambda n: always_descender, should_stop)
    return Rate.of(reached) if played == episodes else None


def task_rates(policy_factory: Callable[[int], Policy], tasks: Sequence[str], program_source: Callable[[str], str],
               episodes: int, max_steps: int, num_envs: int = 25, num_workers: int = 2, seed: int = 20_000,
               sandboxed: bool = False,
               should_stop: Callable[[], bool] = rundir.stop_requested) -> dict[str, Rate | None]:
    """Success rate per task, each task's own policy over skills driving the skill policy."""
    out: dict[str, Rate | None] = {}
    for task in tasks:
        source = program_source(task)
        runner = skills_lib.SandboxedRunner(source) if sandboxed else skills_lib.InProcessRunner(source)
        successes: dict[int, bool] = {}

        def chunk_skills(n: int, _runner=runner) -> SkillPicker:
            scheduler = skills_lib.SkillScheduler(_runner, n, seed)  # a chunk's games are new: fresh memories

            def pick(ctxs: list[dict], starts: np.ndarray) -> np.ndarray:
                names, _ = scheduler.update(ctxs, [bool(s) for s in starts])
                return np.asarray([SKILLS.index(s) for s in names], np.int32)
            return pick

        def on_end(env: int, record: EpisodeRecord, _task=task, _successes=successes) -> None:
            _successes[env] = bool(record.successes.get(_task, False))

        with runner:
            played = _episodes(policy_factory, episodes, max_steps, num_envs, num_workers, seed,
                               lambda env, ctx, started: None, chunk_skills, should_stop, on_end)
        out[task] = Rate.of([successes[e] for e in range(episodes)]) if played == episodes else None
        logging.info("evaluate: %s %s", task, out[task].text() if out[task] else "stopped")
    return out


def results_table(rows: dict[str, dict[str, Rate | None]], tasks: Sequence[str]) -> str:
    """Markdown, method x task, in the reference's layout (success rate with the 95% interval)."""
    lines = ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for method, rates in rows.items():
        cells = [rates[t].text() if rates.get(t) else "-" for t in tasks]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
