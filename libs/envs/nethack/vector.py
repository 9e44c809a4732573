"""Many NetHack games stepped in batches by worker processes, with automatic reset and crash recovery.

Each worker owns a contiguous block of envs and steps them all per command. Policy observations go through one
shared-memory block (the parent's `Batch.obs` are copies of it); rewards, flags, skill contexts and finished-
episode records go through each worker's pipe. Workers are fresh interpreters started with `python -c` (not
multiprocessing's spawn or forkserver, which would import the parent's `__main__`, and with it jax, in every
worker); they import only NLE, numpy, gin and this package. A worker that dies or does not answer within
`step_timeout_s` is killed and replaced: its envs start new episodes, which are reported as dropped.

Episode k of env i is seeded with `env.episode_seeds(seed, i, k)` (NetHack's core and disp RNGs, no reseeding,
moon phase from the seed), so a run is reproducible for a given seed whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import pathlib
import subprocess
import sys
import time
import weakref
from multiprocessing import connection, shared_memory
from typing import Any

import numpy as np
from absl import logging
from nle.nethack import NLE_BL_DLEVEL, NLE_BL_DNUM, NLE_BL_X, NLE_BL_Y

from libs.envs.nethack.detectors import TaskTracker
from libs.envs.nethack.env import (
    ACTIONS,
    EpisodeState,
    NetHackEnv,
    NetHackSettings,
    crop_into,
    episode_seeds,
    landmarks,
    policy_obs_spec,
    targets_into,
)
from libs.train.errors import ConfigError

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
_START_TRIES = 3


@dataclasses.dataclass
class EpisodeRecord:
    """One finished (or, when `dropped`, abandoned) episode of env `env_index`."""

    env_index: int
    episode_return: float
    length: int
    final_context: dict[str, Any]
    successes: dict[str, bool]
    dropped: bool = False


@dataclasses.dataclass
class Batch:
    """One step of every env. After `done`, `obs` and `contexts` already belong to the env's next episode."""

    obs: dict[str, np.ndarray]  # crop (N, k, k) int16, blstats (N, 27) float32, message (N, 256) uint8, targets (N, 16)
    reward: np.ndarray  # (N,) float32, the score change
    done: np.ndarray  # (N,) bool, terminated or truncated
    truncated: np.ndarray  # (N,) bool, ended by the step limit
    contexts: list[dict[str, Any]]
    episodes: list[EpisodeRecord]
    dropped: int  # episodes lost to worker restarts during this call


class _EnvGroup:
    """Envs `indices` of a vector env, stepped in one process; policy obs are written into `obs` (k, ...)."""

    def __init__(self, settings: NetHackSettings, seed: int, indices: range, episodes: list[int],
                 obs: dict[str, np.ndarray]):
        self.settings, self.seed, self.indices, self.obs = settings, seed, indices, obs
        self.episodes = list(episodes)
        self.envs = [NetHackEnv(settings) for _ in indices]
        self.trackers = [TaskTracker() for _ in indices]
        self.returns = [0.0] * len(indices)
        self.started = False

    def _write(self, j: int, raw: dict[str, np.ndarray], state: EpisodeState) -> None:
        blstats = raw["blstats"]
        x, y = int(blstats[NLE_BL_X]), int(blstats[NLE_BL_Y])
        crop_into(raw["glyphs"], x, y, self.obs["crop"][j])
        targets_into(raw["glyphs"], x, y, (int(blstats[NLE_BL_DNUM]), int(blstats[NLE_BL_DLEVEL])), state,
                     self.obs["targets"][j])
        self.obs["blstats"][j] = blstats
        self.obs["message"][j] = raw["message"]

    def _observe(self, j: int) -> dict[str, Any]:
        env = self.envs[j]
        self._write(j, env.raw, env.state)
        context = env.context()
        self.trackers[j].update(context, landmarks(env.raw))
        return context

    def _start(self, j: int) -> dict[str, Any]:
        self.envs[j].reset(episode_seeds(self.seed, self.indices[j], self.episodes[j]))
        self.trackers[j].reset()
        self.returns[j] = 0.0
        return self._observe(j)

    def reset(self) -> list[dict[str, Any]]:
        if self.started:  # running episodes are abandoned
            self.episodes = [e + 1 for e in self.episodes]
        self.started = True
        return [self._start(j) for j in range(len(self.envs))]

    def step(self, actions: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict], list[EpisodeRecord]]:
        k = len(self.envs)
        rewards, dones, truncs = np.zeros(k, np.float32), np.zeros(k, bool), np.zeros(k, bool)
        contexts, finished = [], []
        for j, (env, action) in enumerate(zip(self.envs, actions)):
            _, reward, terminated, truncated = env.step(action)
            self.returns[j] += reward
            rewards[j], dones[j], truncs[j] = reward, terminated or truncated, truncated
            context = self._observe(j)
            if dones[j]:
                finished.append(EpisodeRecord(self.indices[j], self.returns[j], env.state.step, context,
                                              self.trackers[j].successes()))
                self.episodes[j] += 1
                context = self._start(j)
            contexts.append(context)
        return rewards, dones, truncs, contexts, finished

    def close(self) -> None:
        for env in self.envs:
            env.close()


# --- shared memory ------------------------------------------------------------------------------------------------

def _layout(num_envs: int, crop_size: int) -> tuple[dict[str, tuple[int, tuple[int, ...], np.dtype]], int]:
    fields, offset = {}, 0
    for name, (shape, dtype) in policy_obs_spec(crop_size).items():
        fields[name] = (offset, (num_envs, *shape), dtype)
        offset += -(-num_envs * int(np.prod(shape)) * dtype.itemsize // 64) * 64
    return fields, offset


def _views(buffer, num_envs: int, crop_size: int) -> dict[str, np.ndarray]:
    fields, _ = _layout(num_envs, crop_size)
    return {name: np.ndarray(shape, dtype, buffer=buffer, offset=offset) for name, (offset, shape, dtype) in
            fields.items()}


def _attach(name: str, size: int):
    """Maps the parent's segment without registering it with this process's resource tracker (which would
    unlink it when the worker exits)."""
    path = f"/dev/shm/{name}"
    if os.path.exists(path):
        fd = os.open(path, os.O_RDWR)
        try:
            return mmap.mmap(fd, size)
        finally:
            os.close(fd)
    from multiprocessing import resource_tracker  # not Linux: attach, then forget the registration
    segment = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(segment._name, "shared_memory")
    return segment.buf


def _worker_main() -> None:
    """A worker process: builds its env group, then serves reset/step commands until told to close."""
    conn = connection.Connection(int(sys.argv[1]))
    try:
        init = conn.recv()
        settings, start, stop, n = init["settings"], init["start"], init["stop"], init["num_envs"]
        views = _views(_attach(init["shm_name"], init["shm_size"]), n, settings.crop_size)
        group = _EnvGroup(settings, init["seed"], range(start, stop), init["episodes"],
                          {name: view[start:stop] for name, view in views.items()})
        conn.send("ready")
        fault = None
        while True:
            command, argument = conn.recv()
            if command == "close":
                break
            if command == "fault":
                fault = argument
                continue
            if command == "step" and fault == "crash":
                os._exit(3)
            if command == "step" and fault == "hang":
                time.sleep(10**6)
            conn.send(group.reset() if command == "reset" else group.step(argument))
        group.close()
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass


# --- the parent side --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Worker:
    index: int
    envs: range
    process: subprocess.Popen | None = None
    conn: connection.Connection | None = None

    def stop(self, grace_s: float = 0.0) -> None:
        if self.conn is not None and grace_s > 0:
            try:
                self.conn.send(("close", None))
            except OSError:
                pass
        if self.process is not None:
            try:
                self.process.wait(timeout=grace_s) if grace_s > 0 else None
            except subprocess.TimeoutExpired:
                pass
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn = None, None


def _release(workers: list[_Worker], segment: shared_memory.SharedMemory | None) -> None:
    for worker in workers:
        worker.stop(grace_s=2.0)
    if segment is not None:
        segment.close()
        segment.unlink()


class VectorEnv:
    """`num_envs` MaestroMotif games over `num_workers` processes (0: all in this process, for tests/debug)."""

    def __init__(self, num_envs: int, num_workers: int, seed: int, settings: NetHackSettings | None = None,
                 step_timeout_s: float = 30.0, start_timeout_s: float = 120.0):
        if num_envs < 1:
            raise ConfigError(f"VectorEnv num_envs must be >= 1, got {num_envs}")
        if not 0 <= num_workers <= num_envs:
            raise ConfigError(f"VectorEnv num_workers must be in 0..num_envs ({num_envs}), got {num_workers}")
        if step_timeout_s <= 0:
            raise ConfigError(f"VectorEnv step_timeout_s must be > 0, got {step_timeout_s}")
        self.num_envs, self.num_workers, self.seed = num_envs, num_workers, seed
        self.settings = settings if settings is not None else NetHackSettings()
        self.step_timeout_s, self.start_timeout_s = step_timeout_s, start_timeout_s
        self._episodes = [0] * num_envs
        self._returns = np.zeros(num_envs, np.float64)
        self._lengths = np.zeros(num_envs, np.int64)
        self._contexts: list[dict[str, Any]] = [{} for _ in range(num_envs)]
        self._started = False
        self._group: _EnvGroup | None = None
        self._segment: shared_memory.SharedMemory | None = None
        self._workers: list[_Worker] = []
        if num_workers == 0:
            self._obs = {name: np.zeros((num_envs, *shape), dtype)
                         for name, (shape, dtype) in policy_obs_spec(self.settings.crop_size).items()}
            self._group = _EnvGroup(self.settings, seed, range(num_envs), self._episodes, self._obs)
            self._finalizer = weakref.finalize(self, self._group.close)
            return
        _, size = _layout(num_envs, self.settings.crop_size)
        self._segment = shared_memory.SharedMemory(create=True, size=size)
        self._obs = _views(self._segment.buf, num_envs, self.settings.crop_size)
        bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
        self._workers = [_Worker(w, range(bounds[w], bounds[w + 1])) for w in range(num_workers)]
        self._finalizer = weakref.finalize(self, _release, self._workers, self._segment)
        try:
            for worker in self._workers:
                self._launch(worker)
        except BaseException:
            self.close()
            raise

    @property
    def num_actions(self) -> int:
        return len(ACTIONS)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (none in process mode)."""
        return [w.process.pid for w in self._workers if w.process is not None]

    # --- workers ---

    def _launch(self, worker: _Worker) -> None:
        """Starts `worker`'s process and waits until its envs are built (retrying a failed start)."""
        error = ""
        for _ in range(_START_TRIES):
            ours, theirs = connection.Pipe(duplex=True)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO_ROOT),
                                                                               os.environ.get("PYTHONPATH")]))}
            code = "from libs.envs.nethack.vector import _worker_main; _worker_main()"
            worker.process = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())],
                                              pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                              start_new_session=True)  # Ctrl-C reaches only the parent
            theirs.close()
            worker.conn = ours
            envs = worker.envs
            ours.send({"settings": self.settings, "seed": self.seed, "start": envs.start, "stop": envs.stop,
                       "num_envs": self.num_envs, "episodes": self._episodes[envs.start:envs.stop],
                       "shm_name": self._segment.name, "shm_size": self._segment.size})
            reply, error = self._receive(worker, time.monotonic() + self.start_timeout_s)
            if reply == "ready":
                return
            worker.stop()
        raise RuntimeError(f"NetHack worker {worker.index} failed to start {_START_TRIES} times: {error}")

    def _receive(self, worker: _Worker, deadline: float) -> tuple[Any, str]:
        """(reply, "") or (None, what went wrong)."""
        try:
            if not worker.conn.poll(max(deadline - time.monotonic(), 0.0)):
                return None, f"no reply within {self.step_timeout_s:g} s"
            return worker.conn.recv(), ""
        except (EOFError, OSError):
            try:
                code = worker.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                code = None
            return None, f"died (exit code {code})"

    def _replace(self, worker: _Worker, error: str) -> list[dict[str, Any]]:
        """Kills `worker`, starts a new one for the same envs, returns their first contexts."""
        logging.warning("NetHack worker %d (envs %d-%d) %s; restarted it, its %d episodes are dropped",
                        worker.index, worker.envs.start, worker.envs.stop - 1, error, len(worker.envs))
        worker.stop()
        for _ in range(_START_TRIES):
            self._launch(worker)
            worker.conn.send(("reset", None))
            reply, error = self._receive(worker, time.monotonic() + self.start_timeout_s)
            if reply is not None:
                return reply
            worker.stop()
        raise RuntimeError(f"NetHack worker {worker.index} could not reset its envs: {error}")

    def _inject_fault(self, worker: int, fault: str) -> None:
        """For tests: worker `worker` "crash"es (exits) or "hang"s (sleeps) at the next step."""
        self._workers[worker].conn.send(("fault", fault))

    # --- the vector env ---

    def _batch(self, reward, done, truncated, contexts, episodes, dropped) -> Batch:
        return Batch({name: view.copy() for name, view in self._obs.items()}, reward, done, truncated, contexts,
                     episodes, dropped)

    def reset(self) -> Batch:
        """Starts a new episode in every env (abandoning running ones, which are not reported)."""
        if self._started:
            self._episodes = [e + 1 for e in self._episodes]
        self._started = True
        if self._group is not None:
            contexts = self._group.reset()
        else:
            contexts = []
            for worker in self._workers:
                worker.conn.send(("reset", None))
            for worker in self._workers:
                reply, error = self._receive(worker, time.monotonic() + self.start_timeout_s)
                contexts += reply if reply is not None else self._replace(worker, error)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._contexts = contexts
        n = self.num_envs
        return self._batch(np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), contexts, [], 0)

    def step(self, actions: np.ndarray) -> Batch:
        """Steps every env with its action; finished envs start their next episode."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integers of shape ({self.num_envs},), got {actions.dtype} "
                             f"{actions.shape}")
        if actions.size and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise ValueError(f"actions must be in 0..{self.num_actions - 1}, got {actions.min()}..{actions.max()}")
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._group is not None:
            reward, done, truncated, contexts, episodes = self._group.step(actions.tolist())
            return self._account(reward, done, truncated, contexts, episodes, [])
        n = self.num_envs
        reward, done, truncated = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        contexts: list[dict[str, Any]] = [{}] * n
        episodes: list[EpisodeRecord] = []
        failed: list[tuple[_Worker, str]] = []
        for worker in self._workers:
            try:
                worker.conn.send(("step", actions[worker.envs.start:worker.envs.stop].tolist()))
            except OSError:
                pass  # it died; the receive below says so
        deadline = time.monotonic() + self.step_timeout_s
        for worker in self._workers:
            reply, error = self._receive(worker, deadline)
            if reply is None:
                failed.append((worker, error))
                continue
            s = slice(worker.envs.start, worker.envs.stop)
            reward[s], done[s], truncated[s], contexts[s], finished = reply
            episodes += finished
        lost = []
        for worker, error in failed:
            lost += self._drop(worker)
            contexts[worker.envs.start:worker.envs.stop] = self._replace(worker, error)
            done[worker.envs.start:worker.envs.stop] = True
        return self._account(reward, done, truncated, contexts, episodes, lost)

    def _drop(self, worker: _Worker) -> list[EpisodeRecord]:
        records = []
        for i in worker.envs:
            records.append(EpisodeRecord(i, float(self._returns[i]), int(self._lengths[i]), self._contexts[i], {},
                                         dropped=True))
            self._episodes[i] += 1
        return records

    def _account(self, reward, done, truncated, contexts, episodes, lost) -> Batch:
        """Keeps the parent's running returns and lengths (for records of dropped episodes)."""
        self._returns += reward
        self._lengths += 1
        for i in np.flatnonzero(done):
            self._returns[i], self._lengths[i] = 0.0, 0
        if self._group is not None:
            self._episodes = list(self._group.episodes)
        else:
            for record in episodes:
                self._episodes[record.env_index] += 1
        self._contexts = contexts
        return self._batch(reward, done, truncated, contexts, episodes + lost, len(lost))

    def close(self) -> None:
        """Stops the workers and frees the shared memory (idempotent)."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
