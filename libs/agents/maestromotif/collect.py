"""Motif's dataset step at CPU scale: captioned game events from rollouts, and the pairs to annotate.

An *event* is what the reward model sees of one transition: the message shown after it (NLE's 256 bytes) and
the change vector (depth, gold, HP, XP, hunger; `libs.envs.nethack.captions.diffstats`). Rollouts run a
uniformly random policy over the MaestroMotif action set (the reference used score-maximising APPO agents and
human play from Dungeons & Data; neither is available offline). Events are pooled by identity with their counts,
and pairs are drawn uniformly over the *distinct* events, so rare ones (a staircase down, an altar's flash) are
annotated at all: a uniform draw over occurrences would spend nearly every pair on "It's a wall.".
The pool is saved every `save_every` vector steps; a relaunch goes on from there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable

import gin
import numpy as np
from absl import logging

from libs.envs.nethack import captions
from libs.envs.nethack.vector import VectorEnv
from libs.train import rundir
from libs.train.errors import UserError

EVENTS_FILE = "events.npz"
PAIRS_FILE = "pairs.npz"


@gin.configurable("maestromotif_collect")
@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """How many random-policy steps to pool events from, and how many pairs to draw from them."""

    env_steps: int = 100_000
    num_envs: int = 32
    num_workers: int = 2
    num_pairs: int = 5_000
    save_every: int = 500  # vector steps between saves of the pool
    seed: int = 0


class EventPool:
    """Distinct (message, change vector) events with their occurrence counts."""

    def __init__(self):
        self._index: dict[tuple[bytes, tuple[float, ...]], int] = {}
        self.messages: list[np.ndarray] = []
        self.diffs: list[np.ndarray] = []
        self.counts: list[int] = []

    def __len__(self) -> int:
        return len(self.counts)

    def add(self, message: np.ndarray, diff: np.ndarray) -> None:
        key = (message.tobytes(), tuple(float(x) for x in diff))
        i = self._index.get(key)
        if i is None:
            self._index[key] = len(self.counts)
            self.messages.append(np.array(message, dtype=np.uint8))
            self.diffs.append(np.array(diff, dtype=np.float32))
            self.counts.append(1)
        else:
            self.counts[i] += 1

    def save(self, path: str, steps_done: int) -> None:
        tmp = path + ".tmp.npz"
        np.savez(tmp, messages=np.stack(self.messages) if self.messages else np.zeros((0, 256), np.uint8),
                 diffs=np.stack(self.diffs) if self.diffs else np.zeros((0, 5), np.float32),
                 counts=np.asarray(self.counts, np.int64), steps_done=np.int64(steps_done))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> tuple[EventPool, int]:
        pool = cls()
        with np.load(path) as data:
            for m, d, c in zip(data["messages"], data["diffs"], data["counts"]):
                pool.add(m, d)
                pool.counts[-1] = int(c)
            return pool, int(data["steps_done"])

    def caption(self, i: int) -> str:
        return captions.caption(captions.decode_message(self.messages[i]), self.diffs[i])


def collect_events(workdir: str, config: CollectConfig,
                   should_stop: Callable[[], bool] = rundir.stop_requested) -> tuple[EventPool, bool]:
    """Steps random actions until `config.env_steps` env steps are pooled; returns (pool, finished)."""
    path = os.path.join(workdir, EVENTS_FILE)
    pool, done = EventPool.load(path) if os.path.exists(path) else (EventPool(), 0)
    if done >= config.env_steps:
        return pool, True
    rng = np.random.default_rng([config.seed, done])
    start, last_log = time.perf_counter(), time.perf_counter()
    with VectorEnv(config.num_envs, config.num_workers, seed=config.seed + done) as venv:
        num_actions = venv.num_actions
        batch = venv.reset()
        steps = 0
        while done < config.env_steps and not should_stop():
            prev_blstats = batch.obs["blstats"].copy()
            batch = venv.step(rng.integers(num_actions, size=config.num_envs))
            for i in np.flatnonzero(~batch.done):  # after a reset the obs is the next game's, not this step's
                pool.add(batch.obs["message"][i], captions.diffstats(prev_blstats[i], batch.obs["blstats"][i]))
            done += config.num_envs
            steps += 1
            if steps % config.save_every == 0:
                pool.save(path, done)
            if time.perf_counter() - last_log > 10:
                last_log = time.perf_counter()
                rate = steps * config.num_envs / (last_log - start)
                logging.info("collect: %d/%d env steps, %d distinct events, %.0f steps/s", done,
                             config.env_steps, len(pool), rate)
    pool.save(path, done)
    return pool, done >= config.env_steps


def draw_pairs(workdir: str, pool: EventPool, config: CollectConfig) -> np.ndarray:
    """(num_pairs, 2) indices into the pool: distinct events, uniformly; saved once, then reused."""
    path = os.path.join(workdir, PAIRS_FILE)
    if os.path.exists(path):
        with np.load(path) as data:
            return data["pairs"]
    if len(pool) < 2:
        raise UserError(f"{os.path.join(workdir, EVENTS_FILE)}: only {len(pool)} distinct events; "
                               "collect more steps (maestromotif_collect.env_steps)")
    rng = np.random.default_rng([config.seed, 1])
    a = rng.integers(len(pool), size=config.num_pairs)
    b = (a + rng.integers(1, len(pool), size=config.num_pairs)) % len(pool)  # never an event with itself
    pairs = np.stack([a, b], axis=1)
    np.savez(path + ".tmp.npz", pairs=pairs)
    os.replace(path + ".tmp.npz", path)
    with open(os.path.join(workdir, "pairs_examples.txt"), "w", encoding="utf-8") as f:
        for i, j in pairs[:20]:
            f.write(json.dumps([pool.caption(int(i)), pool.caption(int(j))]) + "\n")
    return pairs
