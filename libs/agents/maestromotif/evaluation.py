"""Evaluating skill policies: the descender check against a random policy, and per-task success rates.

Every episode starts a fresh game seeded from (seed, env, episode), so two methods evaluated with one seed play
the same dungeons. Rates carry Wilson 95% intervals over episodes (`libs.evals.stats`).

- `descender_rate`: the descender skill alone from the first turn, for `step_limit` env steps; success = the
  agent reached a deeper dungeon level within them. The random policy draws uniformly from the same actions.
- `task_rates`: each task's policy over skills (`default_skills.select_skill_for_task`, or an accepted
  LLM-written program) drives the trained skill policy for up to `max_steps` env steps; success per task is
  the task detector's (`libs.envs.nethack.detectors`).
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
from libs.envs.nethack.vector import VectorEnv
from libs.evals.stats import RateSummary, summarize_wins
from libs.rl import ppo
from libs.train import rundir

SKILLS = skills_lib.SKILLS
Policy = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]  # (env obs, skill ids) -> actions


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
              num_workers: int, seed: int, on_step: Callable[[int, dict, np.ndarray], None],
              skills: Callable[[list[dict], np.ndarray], np.ndarray],
              should_stop: Callable[[], bool]) -> int:
    """Plays the first episode of each of `episodes` envs (in chunks of `num_envs`) for `max_steps` steps.

    `on_step(env, context, started)` sees every step's context of a still-counted episode; `skills(contexts,
    starts)` gives each env's skill id. Returns the number of episodes played to their end.
    """
    settings = NetHackSettings(max_episode_steps=max_steps)
    played = 0
    for chunk_start in range(0, episodes, num_envs):
        n = min(num_envs, episodes - chunk_start)
        with VectorEnv(n, min(num_workers, n), seed=seed + chunk_start, settings=settings) as venv:
            policy = policy_factory(chunk_start)
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

    played = _episodes(policy_factory, episodes, step_limit, num_envs, num_workers, seed, on_step,
                       lambda ctxs, starts: np.full(len(ctxs), descender, np.int32), should_stop)
    return Rate.of(reached) if played == episodes else None


def task_rates(policy_factory: Callable[[int], Policy], tasks: Sequence[str], program_source: Callable[[str], str],
               episodes: int, max_steps: int, num_envs: int = 25, num_workers: int = 2, seed: int = 20_000,
               sandboxed: bool = False,
               should_stop: Callable[[], bool] = rundir.stop_requested) -> dict[str, Rate | None]:
    """Success rate per task, each task's own policy over skills driving the skill policy."""
    from libs.envs.nethack.detectors import TaskTracker  # pylint: disable=import-outside-toplevel

    out: dict[str, Rate | None] = {}
    for task in tasks:
        source = program_source(task)
        runner = skills_lib.SandboxedRunner(source) if sandboxed else skills_lib.InProcessRunner(source)
        trackers: dict[int, TaskTracker] = {}
        with runner:
            schedulers: dict[int, skills_lib.SkillScheduler] = {}

            def skills(ctxs: list[dict], starts: np.ndarray, _task=task) -> np.ndarray:
                n = len(ctxs)
                if n not in schedulers:
                    schedulers[n] = skills_lib.SkillScheduler(runner, n, seed)
                names, _ = schedulers[n].update(ctxs, [bool(s) for s in starts])
                return np.asarray([SKILLS.index(s) for s in names], np.int32)

            def on_step(env: int, ctx: dict, started: bool) -> None:
                if started:
                    trackers[env] = TaskTracker()
                trackers[env].update(ctx)

            schedulers.clear()
            played = _episodes(policy_factory, episodes, max_steps, num_envs, num_workers, seed, on_step,
                               _fresh_schedulers(skills, schedulers), should_stop)
        out[task] = Rate.of([trackers[e].successes()[task] for e in range(episodes)]) if played == episodes else None
        logging.info("evaluate: %s %s", task, out[task].text() if out[task] else "stopped")
    return out


def _fresh_schedulers(skills, schedulers):
    """Each chunk of envs starts with new schedulers (its games are new)."""
    def wrapped(ctxs, starts):
        if all(starts):
            schedulers.clear()
        return skills(ctxs, starts)
    return wrapped


def results_table(rows: dict[str, dict[str, Rate | None]], tasks: Sequence[str]) -> str:
    """Markdown, method x task, in the reference's layout (success rate with the 95% interval)."""
    lines = ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for method, rates in rows.items():
        cells = [rates[t].text() if rates.get(t) else "-" for t in tasks]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
