"""The sandbox: the only code in this project that runs generated code.

Each `Sandbox.run` copies a directory into a fresh workspace, runs a command there under bubblewrap (user, pid,
network, ipc, uts and cgroup namespaces; no capabilities; uid 1000; the system read-only; nothing of the host
but the interpreter, /usr and a few /etc files; the workspace writable at /workspace, a private /tmp), with a
memory cap and a process cap (cgroup v1 where usable, rlimits otherwise), a file-size rlimit, a clean
environment and a wall-time limit that kills the whole tree; captures truncated stdout/stderr and collects the
files asked for. Without bubblewrap the `rlimits` backend runs the command directly in its own session with
the same limits and environment, and says loudly what it cannot enforce.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

from libs.sandbox import cgroups, process
from libs.train.errors import UserError

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with `apt-get install -y bubblewrap` (the Makefile setup does this where it can)"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one execution may use."""

    wall_s: float = 60.0
    memory_mb: int = 1024  # memcg cap of the whole execution (RLIMIT_DATA per process without cgroups)
    processes: int = 64  # processes AND threads of the whole execution (pids cgroup, else RLIMIT_NPROC)
    output_bytes: int = 65536  # stdout and stderr are each cut to this (head and tail kept, the cut marked)
    file_bytes: int = 64 << 20  # largest file it may write (RLIMIT_FSIZE)


@dataclasses.dataclass
class Execution:
    """What happened. A signal N reads as returncode 128+N (as in a shell); None after a timeout."""

    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool
    killed: str | None  # why it was stopped, when known: "timeout", "memory", "file_size", "cancelled"
    files: dict[str, bytes]  # the collected files that exist (relative path -> content; a directory: its files)
    workspace: str | None  # the kept workspace (keep=True), else None
    backend: str  # "bwrap" or "rlimits"


class Sandbox:
    """Runs commands in isolated workspaces; `run` may be called from several threads at once."""

    def __init__(self, backend: str = "auto", scratch_dir: str | None = None):
        if backend not in ("auto", "bwrap", "rlimits"):
            raise UserError(f"sandbox backend {backend!r}: use 'auto', 'bwrap' or 'rlimits'")
        if scratch_dir is not None and not os.path.isdir(scratch_dir):
            raise UserError(f"sandbox scratch_dir {scratch_dir}: not a directory")
        self.scratch_dir = scratch_dir
        if backend == "rlimits":
            log.warning("sandbox: backend 'rlimits' chosen: generated code runs WITHOUT namespaces (it sees the "
                        "host filesystem, network and processes; read-only data is not enforced); bubblewrap is "
                        "the safe backend")
        else:
            problem = process.bwrap_problem()
            if problem is None:
                backend = "bwrap"
            elif backend == "bwrap":
                raise UserError(f"sandbox backend 'bwrap': {problem}; {INSTALL_HINT}")
            else:
                log.warning("sandbox: %s, so generated code runs WITHOUT isolation (no filesystem, network or "
                            "pid namespaces; only rlimits, cgroups where usable and a process group bound it). "
                            "To isolate it, %s", problem, INSTALL_HINT)
                backend = "rlimits"
        self.backend = backend
        if shutil.which("prlimit") is None:
            log.warning("sandbox: prlimit (util-linux) is missing: the file-size limit (and RLIMIT_DATA without a "
                        "memory cgroup) is NOT applied")
        groups = cgroups.available()
        if "memory" not in groups:
            log.warning("sandbox: no usable cgroup v1 memory controller (needs root and /sys/fs/cgroup/memory): "
                        "memory is capped per process (RLIMIT_DATA: private memory of each process, not the tree)")
        if "pids" not in groups and os.geteuid() == 0:
            log.warning("sandbox: no usable cgroup v1 pids controller and RLIMIT_NPROC does not bind root: "
                        "the process count is NOT capped")

    # -- inputs -----------------------------------------------------------------------------------------

    @staticmethod
    def _relative(path: str, what: str) -> str:
        norm = os.path.normpath(path) if isinstance(path, str) and path else ""
        if not norm or os.path.isabs(norm) or norm == "." or norm.split("/")[0] == "..":
            raise UserError(f"sandbox {what} {path!r}: must be a relative path inside the workspace")
        return norm

    def _check(self, argv, files_from, read_only, limits, env, collect):
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence) or not argv \
                or not all(isinstance(a, str) and "\0" not in a for a in argv):
            raise UserError(f"sandbox argv {argv!r}: must be a non-empty list of strings")
        src = os.fspath(files_from)
        if not os.path.isdir(src):
            raise UserError(f"sandbox files_from {src}: no such directory")
        binds = []
        if limits.wall_s <= 0 or limits.memory_mb <= 0 or limits.processes < 1 or limits.output_bytes < 0 \
                or limits.file_bytes < 0:
            raise UserError(f"sandbox {limits}: limits must be positive")
        for host, inside in read_only.items():
            if not isinstance(inside, str) or not inside:
                raise UserError(f"sandbox read_only target {inside!r}: must be a path")
            if not os.path.exists(host):
                raise UserError(f"sandbox read_only source {host}: no such file or directory")
            host = os.path.realpath(host)
            if os.path.isabs(inside):
                inside = os.path.normpath(inside)
                if self.backend == "rlimits" and inside != host:
                    raise UserError(f"sandbox read_only target {inside}: the rlimits backend can only give "
                                    "relative targets (inside the workspace); use a relative path")
            else:
                inside = self._relative(inside, "read_only target")
            binds.append((host, inside))
        for k, v in env.items():
            if not isinstance(k, str) or not k or "=" in k or not isinstance(v, str):
                raise UserError(f"sandbox env {k!r}: names and values must be strings, names without '='")
        return list(argv), src, binds, [self._relative(c, "collect path") for c in collect]

    def _check_executable(self, argv0: str, workspace: str, path: str) -> None:
        if "/" not in argv0:
            found = shutil.which(argv0, path=path)
        else:
            if self.backend == "bwrap" and argv0.startswith(process.WORKSPACE + "/"):
                argv0 = argv0[len(process.WORKSPACE) + 1:]
            found = os.path.join(workspace, argv0) if not os.path.isabs(argv0) else argv0
            found = found if os.path.isfile(found) else None
        if found is None:
            raise UserError(f"sandbox argv[0] {argv0!r}: no such program in the sandbox")

    # -- one execution ----------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], files_from: str | os.PathLike, *, read_only: Mapping[str, str] = {},
            limits: Limits = Limits(), env: Mapping[str, str] = {}, collect: Sequence[str] = (),
            keep: bool = False, stdin: str | None = None, cancel: Callable[[], bool] | None = None) -> Execution:
        """Runs `argv` in a fresh copy of `files_from` with `read_only` {host path: sandbox path} views (a
        relative sandbox path is inside the workspace) and returns what happened; anything the program does is
        reported in the Execution, never raised. `cancel` is polled while it runs: once it returns True the
        whole tree is killed (`killed == "cancelled"`; e.g. `rundir.stop_requested` on SIGTERM). Bad arguments
        raise UserError."""
        argv, src, binds, collect = self._check(argv, files_from, read_only, limits, env, collect)
        run_dir = tempfile.mkdtemp(prefix="sandbox-", dir=self.scratch_dir)
        workspace = os.path.join(run_dir, "workspace")
        try:
            try:
                shutil.copytree(src, workspace, symlinks=True)
            except (OSError, shutil.Error) as e:
                raise UserError(f"sandbox files_from {src}: cannot copy it ({_first_line(e)})") from None
            bwrap = self.backend == "bwrap"
            mounts = [(host, self._mount_point(workspace, host, inside)) for host, inside in binds]
            home = process.WORKSPACE if bwrap else workspace
            tmp = "/tmp" if bwrap else os.path.join(run_dir, "tmp")
            path = f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin"
            clean_env = {"PATH": path, "HOME": home, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
                         "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1",
                         **env}
            self._check_executable(argv[0], workspace, clean_env["PATH"])
            if not bwrap:
                os.mkdir(tmp)
            cmd = process.bwrap_command(workspace, mounts, argv) if bwrap else argv
            return self._execute(cmd, workspace, run_dir, clean_env, limits, stdin, collect, keep, cancel)
        finally:
            if keep:
                _rmtree(os.path.join(run_dir, "tmp"))
            else:
                _rmtree(run_dir)

    def _mount_point(self, workspace: str, host: str, inside: str) -> str:
        """Prepares where a read-only view goes: a mount point (bwrap) or a symlink (rlimits)."""
        if os.path.isabs(inside):
            return inside
        target = os.path.join(workspace, inside)
        parts = inside.split("/")
        if any(os.path.islink(os.path.join(workspace, *parts[:i])) for i in range(1, len(parts))):
            raise UserError(f"sandbox read_only target {inside!r}: passes through a symlink in files_from")
        is_dir = os.path.isdir(host)
        if os.path.lexists(target):
            if not (is_dir and os.path.isdir(target) and not os.path.islink(target) and not os.listdir(target)):
                raise UserError(f"sandbox read_only target {inside!r}: already exists in files_from")
            os.rmdir(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if self.backend == "rlimits":
            os.symlink(host, target)
        elif is_dir:
            os.mkdir(target)
        else:
            open(target, "w").close()
        return f"{process.WORKSPACE}/{inside}"

    def _rlimits(self, limits: Limits, group: cgroups.Group) -> dict[str, int]:
        r = {"fsize": limits.file_bytes, "core": 0}
        if not group.memory:
            r["data"] = limits.memory_mb << 20  # not RLIMIT_AS: JAX reserves more address space than 1 GiB
        if not group.pids and os.geteuid() != 0:  # RLIMIT_NPROC counts all of this uid's processes
            r["nproc"] = limits.processes + _processes_of(os.getuid())
        return r

    def _execute(self, cmd, workspace, run_dir, env, limits, stdin, collect, keep, cancel) -> Execution:
        extra = 2 if self.backend == "bwrap" else 0  # bwrap's monitor and the namespace's init
        try:
            group = cgroups.Group(limits.memory_mb << 20, limits.processes + extra)
        except OSError as e:
            log.warning("sandbox: could not create cgroups (%s); falling back to rlimits", e)
            group = cgroups.Group(None, None)
        try:
            stdin_file = subprocess.DEVNULL
            if stdin is not None:
                stdin_path = os.path.join(run_dir, "stdin")
                with open(stdin_path, "w", encoding="utf-8") as f:
                    f.write(stdin)
                stdin_file = open(stdin_path, "rb")  # noqa: SIM115 (closed once the child has it)
            start = time.monotonic()
            try:
                proc = subprocess.Popen(process.launcher(cmd, group, self._rlimits(limits, group)),
                                        stdin=stdin_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=env, cwd=workspace, start_new_session=True)
            finally:
                if stdin is not None:
                    stdin_file.close()
            out, err, timed_out, cancelled = process.supervise(proc, limits.wall_s, limits.output_bytes, group,
                                                                   cancel)
            wall = time.monotonic() - start
            oom = group.oom_kills()
        finally:
            group.remove()
        rc = None if timed_out else (128 - proc.returncode if proc.returncode < 0 else proc.returncode)
        killed = None
        if timed_out:
            killed = "timeout"
        elif cancelled:
            killed = "cancelled"
        elif oom and rc:
            killed = "memory"
        elif rc == 128 + signal.SIGXFSZ:
            killed = "file_size"
        files = {}
        for rel in collect:
            for path in _files_under(workspace, rel):  # a directory (a checkpoint) is collected whole
                content = _read_inside(workspace, path, limits.file_bytes)
                if content is not None:
                    files[path] = content
        return Execution(returncode=rc, stdout=out, stderr=err, wall_s=wall, timed_out=timed_out, killed=killed,
                         files=files, workspace=workspace if keep else None, backend=self.backend)


def _files_under(workspace: str, rel: str) -> list[str]:
    """`rel` itself, or the files below it when it is a real directory (symlinks are not followed)."""
    top = os.path.join(workspace, rel)
    if os.path.islink(top) or not os.path.isdir(top):
        return [rel]
    found = []
    for folder, dirs, names in os.walk(top, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        found += [os.path.relpath(os.path.join(folder, n), workspace) for n in names]
    return sorted(found)


def _read_inside(workspace: str, rel: str, max_bytes: int) -> bytes | None:
    """The content of a regular file at `rel`, or None: symlinks (anywhere on the path) and special files are
    not followed, so a program cannot make the collector read the host's files."""
    path = os.path.join(workspace, rel)
    root = os.path.realpath(workspace)
    if os.path.realpath(os.path.dirname(path)) != os.path.normpath(os.path.join(root, os.path.dirname(rel))):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(max_bytes)


def _processes_of(uid: int) -> int:
    n = 0
    for name in os.listdir("/proc"):
        try:
            n += name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid
        except OSError:
            pass
    return n


def _rmtree(path: str) -> None:
    """Removes a tree the program may have made unwritable."""
    def retry(func, p, _):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError as e:
            log.warning("sandbox: could not remove %s: %s", p, e)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=retry)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
