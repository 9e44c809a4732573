"""How a sweep's runs are launched: the binary as a subprocess inside a submitit job, and the executors.

- `BinaryJob` is what a job runs: the binary with its output appended to the run's `run.log`, signals
  passed on to it exactly once (a second SIGTERM would end it without saving).
- `LocalLauncher`: `submitit.LocalExecutor`, at most `max_parallel` jobs at once, each with its own slot
  (and GPUs with `gpus_per_run`). Stopping a job sends SIGTERM down to the binary, never SIGKILL first.
- `SlurmLauncher`: one job array through `submitit.AutoExecutor`; SLURM signals the jobs itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from libs.train import rundir
from libs.train.errors import UserError

# --- one job: the binary as a subprocess ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BinaryJob:
    """What a submitit job runs: the binary, its output appended to `log_path`, signals passed on once.

    With `own_session` (local jobs) the binary gets its own process group, so a terminal's Ctrl-C does not
    reach it twice, and the signals in `forward` reach it as one SIGTERM: it saves and exits 143. On SLURM
    the scheduler signals every process of the job itself; only its pre-timeout USR2 is forwarded.
    """

    command: tuple[str, ...]
    cwd: str
    log_path: str
    env: tuple[tuple[str, str | None], ...] = ()  # changes to the environment; None removes a variable
    own_session: bool = True
    forward: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)

    def __call__(self) -> int:
        env = dict(os.environ)
        for key, value in self.env:
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        asked: list[int] = []
        proc: list[subprocess.Popen] = []

        def pass_on(signum, frame):
            del frame
            if not asked:
                asked.append(signum)
                if proc:
                    self._terminate(proc[0])

        for s in self.forward:
            signal.signal(s, pass_on)
        with open(self.log_path, "a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} sweep launch: {shlex.join(self.command)}\n")
            log.flush()
            # SLURM sends submitit's pre-timeout USR2 to every process of the job, and its default action would
            # end the binary unsaved: the binary starts with it ignored (that survives exec); this job passes
            # it on as SIGTERM.
            handler = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
            try:
                proc.append(subprocess.Popen(list(self.command), cwd=self.cwd, env=env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=self.own_session))
            finally:
                signal.signal(signal.SIGUSR2, handler)
            if asked:  # A signal came before the binary existed.
                self._terminate(proc[0])
            return proc[0].wait()

    def _terminate(self, proc: subprocess.Popen) -> None:
        try:
            if self.own_session:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


# --- executors --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """How runs are launched: where, how many at once, with what resources."""

    executor: str = "local"  # "local" | "slurm"
    max_parallel: int = 1
    timeout_min: int = 24 * 60
    gpus_per_run: int = 0
    cpus_per_run: int = 0  # 0: the scheduler's default
    slurm_partition: str = ""
    slurm_extra: tuple[tuple[str, str], ...] = ()  # e.g. (("account", "mylab"), ("qos", "high"))
    stop_timeout_s: float = 300.0
    progress_every_s: float = 60.0
    poll_s: float = 0.5


class LocalLauncher:
    """Local submitit jobs; each holds a slot (and, with `gpus_per_run`, that slot's GPUs)."""

    own_session = True
    forward = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)

    def __init__(self, folder: str, options: LaunchOptions):
        import submitit  # pylint: disable=import-outside-toplevel

        self.executor = submitit.LocalExecutor(folder=folder)
        self.executor.update_parameters(timeout_min=options.timeout_min, signal_delay_s=90)
        self.gpu_groups = _gpu_groups(options.gpus_per_run, options.max_parallel)
        self.slots = len(self.gpu_groups) if self.gpu_groups else options.max_parallel
        self.shared_gpu_fraction = 0.9 / options.max_parallel if options.max_parallel > 1 else None
        self._free = list(range(self.slots))
        self._slot_of: dict[int, int] = {}

    def capacity(self, in_flight: int) -> int:
        return self.slots - in_flight

    def environment(self, slot: int) -> tuple[tuple[str, str | None], ...]:
        """LocalExecutor hides every GPU unless told otherwise: give back the sweep's own, or the slot's."""
        if self.gpu_groups:
            return (("CUDA_VISIBLE_DEVICES", ",".join(self.gpu_groups[slot])),)
        env = [("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))]
        if self.shared_gpu_fraction and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ:
            env.append(("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{self.shared_gpu_fraction:.2f}"))
        return tuple(env)

    def submit(self, jobs: list[tuple[Any, BinaryJob]]) -> list[Any]:
        submitted = []
        for _, job in jobs:
            slot = self._free.pop(0)
            job = dataclasses.replace(job, env=job.env + self.environment(slot))
            # The job's controller must not take a terminal's Ctrl-C (it would SIGKILL the job a second
            # later): an ignored SIGINT is inherited across exec, so it is ignored while it starts.
            with _sigint_ignored():
                handle = self.executor.submit(job)
            self._slot_of[id(handle)] = slot
            submitted.append(handle)
        return submitted

    def release(self, handle: Any) -> None:
        self._free.append(self._slot_of.pop(id(handle)))
        self._free.sort()

    @staticmethod
    def stop(handle: Any) -> None:
        """SIGTERM to the job's controller, which passes it to the job, which passes it to the binary once.

        (`LocalJob.cancel` sends SIGINT, on which the controller SIGKILLs the job after a second.)
        """
        process = getattr(handle, "_process", None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    @staticmethod
    def kill(workdir: str) -> None:
        """The last resort after the stop timeout: SIGKILL the binary holding `workdir` (its process group).

        Only while the workdir's lock is held, so the pid written in it is the live binary's.
        """
        try:
            with open(os.path.join(workdir, rundir.LOCK_FILE)) as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return  # Nobody holds it: the binary has ended.
                except OSError:
                    pid = int(f.read().strip() or 0)
            if pid > 0:
                os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


class SlurmLauncher:
    """One SLURM job array through submitit.AutoExecutor; `max_parallel` tasks run at once."""

    own_session = False
    forward = (signal.SIGUSR2,)

    def __init__(self, folder: str, options: LaunchOptions, name: str):
        import submitit  # pylint: disable=import-outside-toplevel

        try:
            self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        except RuntimeError as e:
            raise UserError(f"--executor=slurm: {e}") from None
        params: dict[str, Any] = {"name": name, "timeout_min": options.timeout_min, "nodes": 1, "tasks_per_node": 1,
                                  "slurm_array_parallelism": options.max_parallel}
        if options.gpus_per_run:
            params["gpus_per_node"] = options.gpus_per_run
        if options.cpus_per_run:
            params["cpus_per_task"] = options.cpus_per_run
        if options.slurm_partition:
            params["slurm_partition"] = options.slurm_partition
        if options.slurm_extra:
            params["slurm_additional_parameters"] = dict(options.slurm_extra)
        self.executor.update_parameters(**params)

    @staticmethod
    def capacity(in_flight: int) -> int:
        del in_flight
        return 1 << 30  # The array's own parallelism limit holds the rest back.

    def submit(self, jobs: list[tuple[Any, BinaryJob]]) -> list[Any]:
        with self.executor.batch():
            delayed = [self.executor.submit(job) for _, job in jobs]
        return delayed

    def release(self, handle: Any) -> None:
        del handle

    @staticmethod
    def stop(handle: Any) -> None:
        handle.cancel(check=False)  # scancel: SIGTERM to the job's processes, SIGKILL after KillWait.

    @staticmethod
    def kill(workdir: str) -> None:
        del workdir  # SLURM's KillWait ends what SIGTERM did not.


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # Only the main thread sets handlers.
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _gpu_groups(gpus_per_run: int, max_parallel: int) -> list[list[str]]:
    """Disjoint GPU sets for local runs in flight (empty: runs share what the sweep sees)."""
    if gpus_per_run <= 0:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d for d in visible.split(",") if d.strip()]
    else:
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        devices = [str(i) for i in range(sum(line.startswith("GPU ") for line in out.splitlines()))]
    groups = [devices[i:i + gpus_per_run] for i in range(0, len(devices) - gpus_per_run + 1, gpus_per_run)]
    if not groups:
        raise UserError(f"--gpus_per_run={gpus_per_run}: only {len(devices)} GPU(s) visible here")
    return groups[:max_parallel]
