"""The NetHack vector env: determinism across worker counts, auto-reset, crash/hang recovery, clean shutdown."""

from __future__ import annotations

import logging
import os
import time
from multiprocessing import shared_memory

import numpy as np
import pytest

from libs.envs.nethack.detectors import TASKS
from libs.envs.nethack.env import CONTEXT_KEYS, NetHackSettings
from libs.envs.nethack.vector import VectorEnv
from libs.train.errors import ConfigError


def _rollout(venv: VectorEnv, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    batches = [venv.reset()]
    for _ in range(steps):
        batches.append(venv.step(rng.integers(venv.num_actions, size=venv.num_envs)))
    return batches


def test_workers_reproduce_the_in_process_run():
    with VectorEnv(4, 0, seed=3) as local, VectorEnv(4, 2, seed=3) as remote:
        a, b = _rollout(local, 120), _rollout(remote, 120)
    for x, y in zip(a, b):
        for key in ("crop", "blstats", "message"):
            np.testing.assert_array_equal(x.obs[key], y.obs[key])
        np.testing.assert_array_equal(x.reward, y.reward)
        np.testing.assert_array_equal(x.done, y.done)
        assert x.contexts == y.contexts
        assert [(e.env_index, e.length, e.episode_return) for e in x.episodes] == [
            (e.env_index, e.length, e.episode_return) for e in y.episodes]
    first = a[0]
    assert first.obs["crop"].shape == (4, 9, 9) and first.obs["crop"].dtype == np.int16
    assert first.obs["blstats"].shape == (4, 27) and first.obs["blstats"].dtype == np.float32
    assert first.obs["message"].shape == (4, 256) and first.obs["message"].dtype == np.uint8
    assert all(tuple(c) == CONTEXT_KEYS for c in first.contexts)
    assert not np.array_equal(first.obs["crop"][0], first.obs["crop"][1])  # each env its own game
    with VectorEnv(1, 0, seed=4) as other:
        assert not np.array_equal(other.reset().obs["crop"][0], first.obs["crop"][0])


def test_finished_episodes_are_reported_and_restarted():
    with VectorEnv(2, 0, seed=0, settings=NetHackSettings(max_episode_steps=15)) as venv:
        batches = _rollout(venv, 15)
    last = batches[-1]
    records = [e for b in batches for e in b.episodes]
    assert last.done.all() and sum(len(b.episodes) for b in batches) == len(records) >= 2
    truncated = [e for e in records if not e.dropped and e.length == 15]
    assert {e.env_index for e in truncated} <= {0, 1} and last.truncated.any()
    for record in records:
        assert set(record.successes) == set(TASKS) and record.final_context["step"] == record.length
        assert record.final_context["depth"] >= 1  # the last state of the game, not NLE's after quitting
    assert [c["step"] for c in last.contexts] == [0, 0]  # the next episodes' first contexts


def test_crashed_and_hung_workers_are_replaced(caplog):
    venv = VectorEnv(4, 2, seed=1, step_timeout_s=1.5)
    try:
        rng = np.random.default_rng(0)
        venv.reset()
        venv.step(rng.integers(venv.num_actions, size=4))
        crashed = venv._workers[0].process
        venv._inject_fault(0, "crash")
        with caplog.at_level(logging.WARNING):
            batch = venv.step(rng.integers(venv.num_actions, size=4))
        assert batch.dropped == 2 and batch.done[:2].all()
        assert [(e.env_index, e.dropped, e.length) for e in batch.episodes if e.dropped] == [(0, True, 1), (1, True, 1)]
        assert crashed.poll() is not None and "died" in caplog.text
        assert [c["step"] for c in batch.contexts[:2]] == [0, 0]
        venv._inject_fault(1, "hang")
        start = time.monotonic()
        batch = venv.step(rng.integers(venv.num_actions, size=4))
        assert time.monotonic() - start < 30 and batch.dropped == 2 and batch.done[2:].all()
        assert "no reply within 1.5 s" in caplog.text
        batch = venv.step(rng.integers(venv.num_actions, size=4))
        assert batch.dropped == 0 and [c["step"] for c in batch.contexts] == [2, 2, 1, 1]
    finally:
        venv.close()


def test_close_leaves_no_processes_or_shared_memory():
    venv = VectorEnv(3, 2, seed=0)
    venv.reset()
    processes = [w.process for w in venv._workers]
    name = venv._segment.name
    venv.close()
    venv.close()  # idempotent
    assert all(p.poll() is not None for p in processes)
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)
    assert not os.path.exists(f"/dev/shm/{name}")


def test_bad_arguments():
    with pytest.raises(ConfigError, match="num_workers"):
        VectorEnv(2, 3, seed=0)
    with VectorEnv(2, 0, seed=0) as venv:
        venv.reset()
        with pytest.raises(ValueError, match="shape"):
            venv.step(np.zeros(3, np.int64))
        with pytest.raises(ValueError, match="0..27"):
            venv.step(np.array([0, 28]))


def test_workers_import_neither_jax_nor_the_parents_main():
    import subprocess
    import sys

    code = "import sys, libs.envs.nethack.vector; print(sorted(m for m in sys.modules if m.split('.')[0] == 'jax'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
