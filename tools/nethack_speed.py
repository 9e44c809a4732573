r"""NetHack stepping speed with a uniformly random policy: one game in this process, then the vector env.

    python -m tools.nethack_speed --num_envs=32 --num_workers=2 --steps=500
    python -m tools.nethack_speed --measure=vector --num_envs=64

Rows (env steps per second of wall time after start-up, and per CPU second of all processes involved, which
is what to compare on a shared machine where other jobs take cores):
  single: NetHackEnv.step alone, and with what a worker adds per step (policy obs, skill context, landmarks,
          task tracker).
  vector: VectorEnv(num_envs, num_workers) steps of random actions; `--steps` is vector steps; start-up time
          (workers, games) is reported separately. num_workers=0 steps all envs in this process.
  loop:   the whole MaestroMotif training loop (libs/agents/maestromotif/training.py) on the same envs and
          workers: stepping, batched policy inference, the skill program, five reward models (untrained, same
          cost) and the PPO update; `--updates` updates of num_envs x 64 steps, timed after the first (compile).
A measurement is a function in MEASUREMENTS taking the parsed flags and returning rows; add one there.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable

import numpy as np
from absl import app, flags

from libs.envs.nethack.detectors import TaskTracker
from libs.envs.nethack.env import NetHackEnv, episode_seeds, landmarks
from libs.envs.nethack.vector import VectorEnv


@dataclasses.dataclass
class Row:
    name: str
    env_steps: int
    seconds: float
    cpu_seconds: float
    note: str = ""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def measure_single(steps: int, seed: int) -> list[Row]:
    """One game in this process, without and with the per-step work a worker does."""
    rows = []
    rng = np.random.default_rng(seed)
    with NetHackEnv() as env:
        for with_context in (False, True):
            tracker, episode = TaskTracker(), 0
            env.reset(episode_seeds(seed, 0, episode))
            actions = rng.integers(env.num_actions, size=steps)
            start, cpu = time.perf_counter(), time.process_time()
            for action in actions:
                raw, _, terminated, truncated = env.step(int(action))
                if with_context:
                    env.policy_obs()
                    tracker.update(env.context(), landmarks(raw))
                if terminated or truncated:
                    episode += 1
                    env.reset(episode_seeds(seed, 0, episode))
                    tracker.reset()
            name = "single: step + obs + context + tracker" if with_context else "single: step"
            rows.append(Row(name, steps, time.perf_counter() - start, time.process_time() - cpu, f"{episode} resets"))
    return rows


def measure_vector(num_envs: int, num_workers: int, steps: int, seed: int) -> list[Row]:
    """VectorEnv with random actions; start-up is timed apart from stepping."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with VectorEnv(num_envs, num_workers, seed=seed) as venv:
        venv.reset()
        started, cpu = time.perf_counter(), time.process_time()
        workers_cpu = [_cpu_seconds(pid) for pid in venv.worker_pids]
        finished = 0
        for _ in range(steps):
            finished += len(venv.step(rng.integers(venv.num_actions, size=num_envs)).episodes)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu + sum(_cpu_seconds(p) - c for p, c in zip(venv.worker_pids, workers_cpu))
    return [Row(f"vector: {num_envs} envs / {num_workers} workers", steps * num_envs, seconds, cpu,
                f"start-up {started - start:.1f} s, {finished} episodes")]


_MEASURE = flags.DEFINE_list("measure", ["single", "vector", "loop"], "Measurements to run (keys of MEASUREMENTS).")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 32, "Envs of the vector env.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 2, "Worker processes of the vector env (0: in process).")
_STEPS = flags.DEFINE_integer("steps", 500, "Vector steps (the single-game rows use steps x num_envs / 4).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of games and actions.")

_UPDATES = flags.DEFINE_integer("updates", 12, "PPO updates of the loop measurement (the first is not timed).")


def measure_loop(num_envs: int, num_workers: int, updates: int, seed: int) -> list[Row]:
    """The training loop with untrained reward models for all five skills and the default skill program."""
    import tempfile  # pylint: disable=import-outside-toplevel

    from libs.agents.maestromotif import training  # pylint: disable=import-outside-toplevel  (imports jax)
    from libs.models import motif  # pylint: disable=import-outside-toplevel
    from libs.rl import ppo  # pylint: disable=import-outside-toplevel

    config = motif.RewardModelConfig()
    params = motif.make_model(config).init(__import__("jax").random.key(seed), np.zeros((1, 256), np.uint8),
                                          np.zeros((1, 5), np.float32))["params"]
    levels = np.linspace(0, 1, 101)
    stats = {"mean": 0.0, "std": 1.0, "quantile_levels": levels, "quantile_values": levels - 0.5}
    models = {s: motif.TrainedRewardModel(config, params, stats) for s in training.SKILLS}
    ppo_config = ppo.PPOConfig(num_envs=num_envs, num_steps=64, total_env_steps=num_envs * 64 * updates)
    train_config = training.SkillTrainingConfig(num_workers=num_workers, checkpoint_every=0, log_every=updates,
                                                seed=seed)
    with tempfile.TemporaryDirectory() as workdir:
        cpu, start = time.process_time(), time.perf_counter()
        result = training.train_skills(workdir, models, train_config, ppo_config, should_stop=lambda: False)
        seconds = time.perf_counter() - start
    rate = result.get("env_steps_per_s", float("nan"))
    return [Row(f"loop: {num_envs} envs / {num_workers} workers, PPO + 5 reward models", result["env_steps"],
                result["env_steps"] / rate, time.process_time() - cpu,
                f"{seconds:.1f} s in all with start-up and the first update's compile; parent CPU only")]


MEASUREMENTS: dict[str, Callable[[], list[Row]]] = {
    "single": lambda: measure_single(max(_STEPS.value * _NUM_ENVS.value // 4, 1), _SEED.value),
    "vector": lambda: measure_vector(_NUM_ENVS.value, _NUM_WORKERS.value, _STEPS.value, _SEED.value),
    "loop": lambda: measure_loop(_NUM_ENVS.value, _NUM_WORKERS.value, _UPDATES.value, _SEED.value),
}


def main(argv):
    del argv
    unknown = [m for m in _MEASURE.value if m not in MEASUREMENTS]
    if unknown:
        raise app.UsageError(f"--measure: unknown {unknown}; choose from {sorted(MEASUREMENTS)}")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"python {sys.version.split()[0]}")
    print("\n| measurement | env steps | wall s | env steps/s | CPU s | env steps/CPU s | note |\n"
          "|---|---:|---:|---:|---:|---:|---|")
    for name in _MEASURE.value:
        for row in MEASUREMENTS[name]():
            per_cpu = row.env_steps / row.cpu_seconds if row.cpu_seconds > 0 else float("nan")
            print(f"| {row.name} | {row.env_steps} | {row.seconds:.2f} | {row.env_steps / row.seconds:,.0f} | "
                  f"{row.cpu_seconds:.2f} | {per_cpu:,.0f} | {row.note} |", flush=True)


if __name__ == "__main__":
    app.run(main)
