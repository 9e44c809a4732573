"""cgroup v1 memory and pids groups, one pair per execution, created under this process's own groups.

Why v1 and not systemd: this project's machines run cgroups v1 without systemd as PID 1, so the groups are
made directly under /sys/fs/cgroup/{memory,pids}/<this process's group>/sandbox-<pid>-<n> and removed after
the run. A group nested under our own keeps every limit our own group already has.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)

_ROOT = "/sys/fs/cgroup"
_LIMIT_FILE = {"memory": "memory.limit_in_bytes", "pids": "pids.max"}
_lock = threading.Lock()
_parents: dict[int, dict[str, str]] = {}  # pid -> controller -> parent dir (probed once per process)
_counter = itertools.count()


def _own_group(controller: str) -> str | None:
    """This process's group path in the v1 hierarchy that carries `controller`, e.g. /process_api/6a69."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(","):
                    return path
    except OSError:
        pass
    return None


def _sweep_stale(parent: str) -> None:
    """Removes empty sandbox-<pid>-* groups left by processes that died before cleaning up."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "sandbox" and parts[1].isdigit() and not os.path.exists(f"/proc/{parts[1]}"):
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


def available() -> dict[str, str]:
    """Controller -> parent directory where this process can create groups ({} when none: no v1, no root)."""
    pid = os.getpid()
    with _lock:
        if pid in _parents:
            return _parents[pid]
        found = {}
        for controller, limit_file in _LIMIT_FILE.items():
            own = _own_group(controller)
            parent = os.path.normpath(f"{_ROOT}/{controller}/{own.lstrip('/')}") if own is not None else None
            if parent is None or not os.path.exists(os.path.join(parent, "cgroup.procs")):
                continue
            probe = os.path.join(parent, f"sandbox-{pid}-probe")
            try:
                os.mkdir(probe)
                ok = os.path.exists(os.path.join(probe, limit_file))
                os.rmdir(probe)
            except OSError:
                ok = False
            if ok:
                _sweep_stale(parent)
                found[controller] = parent
        _parents[pid] = found
        return found


class Group:
    """The memory and pids groups of one execution (`dirs`): limits set on creation, `kill_all` for the whole
    tree, `oom_kills` after the run, `remove` at the end."""

    def __init__(self, memory_bytes: int | None, pids_max: int | None):
        self.dirs: dict[str, str] = {}  # controller -> group directory
        name = f"sandbox-{os.getpid()}-{next(_counter)}"
        parents = available()
        try:
            if memory_bytes is not None and "memory" in parents:
                d = self._make("memory", parents["memory"], name)
                self._write(d, "memory.limit_in_bytes", memory_bytes)
                if os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):  # no swapping past it
                    self._write(d, "memory.memsw.limit_in_bytes", memory_bytes)
            if pids_max is not None and "pids" in parents:
                d = self._make("pids", parents["pids"], name)
                self._write(d, "pids.max", pids_max)
        except OSError:
            self.remove()
            raise

    def _make(self, controller: str, parent: str, name: str) -> str:
        d = os.path.join(parent, name)
        os.mkdir(d)
        self.dirs[controller] = d
        return d

    @staticmethod
    def _write(d: str, file: str, value: int) -> None:
        with open(os.path.join(d, file), "w") as f:
            f.write(str(value))

    @property
    def memory(self) -> bool:
        return "memory" in self.dirs

    @property
    def pids(self) -> bool:
        return "pids" in self.dirs

    def members(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs.values():
            try:
                with open(os.path.join(d, "cgroup.procs")) as fh:
                    out.update(int(x) for x in fh.read().split())
            except OSError:
                pass
        return out

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILLs every member until none is left (new forks are caught by the next pass)."""
        end = time.monotonic() + timeout
        while True:
            pids = self.members()
            if not pids:
                return True
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.monotonic() > end:
                return False
            time.sleep(0.002)

    def oom_kills(self) -> int:
        """How many processes the memory limit killed (kernel >= 4.13 counts them in memory.oom_control)."""
        if "memory" in self.dirs:
            try:
                with open(os.path.join(self.dirs["memory"], "memory.oom_control")) as f:
                    for line in f:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
            except (OSError, ValueError):
                pass
        return 0

    def remove(self) -> None:
        """Kills what is left and removes the groups (retrying while exiting tasks still hold them)."""
        if not self.dirs:
            return
        self.kill_all()
        end = time.monotonic() + 2.0
        for d in self.dirs.values():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if time.monotonic() > end:
                        log.warning("sandbox: could not remove cgroup %s: %s", d, e)
                        break
                    self.kill_all(timeout=0.1)
                    time.sleep(0.005)
        self.dirs = {}
