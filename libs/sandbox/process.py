"""Starting and supervising one sandboxed process tree: the bubblewrap command line, the launcher that joins
the cgroups and sets rlimits before exec, bounded capture of stdout/stderr, the wall-time kill of the tree."""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from libs.sandbox import cgroups

WORKSPACE = "/workspace"  # where the workspace is mounted inside bubblewrap
SANDBOX_UID = 1000  # the unprivileged uid (and gid) the program runs as inside bubblewrap
# Host paths a program may need, bound read-only where they exist (/usr holds the rest of the system).
_ETC = ("ssl", "ca-certificates", "ca-certificates.conf", "pki", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
        "localtime", "alternatives", "hosts", "nsswitch.conf", "mime.types", "fonts", "protocols", "services")
_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def interpreter_paths() -> list[str]:
    """The interpreter's prefixes (venv and base installation), shortest first, minus what /usr covers."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    out = []
    for p in sorted({os.path.realpath(p) for p in paths} | paths, key=len):
        if p in ("/", "/usr") or p.startswith("/usr/") or not os.path.isdir(p):
            continue
        if not any(p == q or p.startswith(q + "/") for q in out):
            out.append(p)
    return out


def bwrap_command(workspace: str, binds: Sequence[tuple[str, str]], argv: Sequence[str]) -> list[str]:
    """bubblewrap with every namespace unshared (user, pid, net, ipc, uts, cgroup), no capabilities, an
    unprivileged uid, a read-only system, `workspace` writable at /workspace, a private /tmp, and `binds`
    (host path, sandbox path) read-only on top; the tree dies with its parent."""
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
           "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL", "--hostname", "sandbox",
           "--ro-bind", "/usr", "/usr"]
    for name in _USR_LINKS:
        host = "/" + name
        if os.path.islink(host):
            cmd += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            cmd += ["--ro-bind", host, host]
    for name in _ETC:
        cmd += ["--ro-bind-try", "/etc/" + name, "/etc/" + name]
    # The private /tmp first: an interpreter (a venv) or a view under the host's /tmp is bound on top of it.
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for p in interpreter_paths():
        cmd += ["--ro-bind", p, p]
    cmd += ["--bind", workspace, WORKSPACE]
    for host, inside in binds:
        cmd += ["--ro-bind", host, inside]
    cmd += ["--remount-ro", "/", "--chdir", WORKSPACE, "--setenv", "PWD", WORKSPACE, "--", *argv]
    return cmd


_probe_lock = threading.Lock()
_probe: dict[str, str | None] = {}


def bwrap_problem() -> str | None:
    """None when bubblewrap works here (probed once per process with the real mounts), else why not."""
    with _probe_lock:
        if "bwrap" not in _probe:
            if shutil.which("bwrap") is None:
                _probe["bwrap"] = "bubblewrap (bwrap) is not installed"
            else:
                with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as d:
                    try:
                        r = subprocess.run(bwrap_command(d, (), ["true"]), env={"PATH": "/usr/bin:/bin"},
                                           check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                           timeout=30)
                        problem = None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]
                    except (OSError, subprocess.SubprocessError) as e:
                        problem = str(e)
                _probe["bwrap"] = None if problem is None else f"bubblewrap does not work here ({problem})"
        return _probe["bwrap"]


def launcher(cmd: Sequence[str], group: cgroups.Group | None, rlimits: Mapping[str, int]) -> list[str]:
    """`cmd` behind /bin/sh, which joins the cgroups, then prlimit (util-linux), which sets the rlimits, both
    replaced by exec: no preexec_fn, so starting from many threads is safe, and the tree is in its groups
    before its first instruction."""
    # "0" into `tasks` moves the writing (single-threaded) shell: unlike a pid written to cgroup.procs, it skips
    # the kernel's global threadgroup lock, which slowed every start by ~30 ms here.
    steps = [f"echo 0 > {shlex.quote(os.path.join(d, 'tasks'))}" for d in (group.dirs.values() if group else [])]
    prefix: list[str] = []
    if rlimits and shutil.which("prlimit"):
        prefix = ["prlimit", *(f"--{k}={v}" for k, v in rlimits.items()), "--"]
    steps.append('exec "$@"')
    return ["/bin/sh", "-c", " && ".join(steps), "sandbox", *prefix, *cmd]


class _Capture:
    """Keeps the first and last `limit // 2` bytes of a stream and counts what is cut in between."""

    def __init__(self, limit: int):
        self.head_max, self.tail_max = limit - limit // 2, limit // 2
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > 2 * self.tail_max + 65536:
            del self.tail[: len(self.tail) - self.tail_max]

    def text(self) -> str:
        tail = self.tail[len(self.tail) - self.tail_max:] if len(self.tail) > self.tail_max else self.tail
        cut = self.total - len(self.head) - len(tail)
        mark = f"\n[... sandbox: {cut} bytes cut ...]\n".encode() if cut else b""
        return bytes(self.head + mark + tail).decode("utf-8", errors="replace")


def kill_tree(proc: subprocess.Popen, group: cgroups.Group | None) -> None:
    """SIGKILL to the process group (the launcher started a new session) and to every cgroup member; inside
    bubblewrap the pid namespace dies with its init, which dies with bwrap (--die-with-parent)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if group is not None:
        group.kill_all()


def supervise(proc: subprocess.Popen, wall_s: float, output_bytes: int, group: cgroups.Group | None,
              cancel: Callable[[], bool] | None = None) -> tuple[str, str, bool, bool]:
    """Reads stdout/stderr until the process exits, the wall time passes or `cancel()` turns true (polled
    every 0.2 s), then kills whatever is left of the tree (also after a normal exit: nothing outlives a
    run). Returns (stdout, stderr, timed_out, cancelled)."""
    deadline = time.monotonic() + wall_s
    cancelled = False
    out, err = _Capture(output_bytes), _Capture(output_bytes)
    caps = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    sel = selectors.DefaultSelector()
    for fd in caps:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    try:
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):  # Linux < 5.3: poll instead
        pidfd = None
    open_streams, exited, timed_out, end = len(caps), False, False, deadline
    try:
        while open_streams or not exited:
            now = time.monotonic()
            if now >= end:
                if exited:  # an escaped process still holds a pipe: stop reading
                    break
                timed_out = exited = True
                kill_tree(proc, group)
                end = time.monotonic() + 2.0
                continue
            if cancel is not None and not exited and cancel():
                cancelled = exited = True
                kill_tree(proc, group)
                end = time.monotonic() + 2.0
                continue
            timeout = end - now if pidfd is not None or exited else min(end - now, 0.01)
            if cancel is not None:
                timeout = min(timeout, 0.2)
            for key, _ in sel.select(timeout):
                if key.fd == pidfd:
                    sel.unregister(pidfd)
                    exited = True
                    kill_tree(proc, group)  # the leader is a zombie until waited: its group id is still ours
                    end = time.monotonic() + 2.0
                    continue
                try:
                    data = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if data:
                    caps[key.fd].add(data)
                else:
                    sel.unregister(key.fd)
                    open_streams -= 1
            if pidfd is None and not exited and _has_exited(proc.pid):
                exited = True
                kill_tree(proc, group)
                end = time.monotonic() + 2.0
        if not exited:
            kill_tree(proc, group)
        proc.wait()
    finally:
        if proc.returncode is None:  # interrupted (e.g. KeyboardInterrupt in this thread): the tree goes too
            kill_tree(proc, group)
            proc.wait()
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        proc.stdout.close()
        proc.stderr.close()
    return out.text(), err.text(), timed_out, cancelled


def _has_exited(pid: int) -> bool:
    """Whether `pid` has exited, without reaping it (so its process group id stays ours until the kill)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
