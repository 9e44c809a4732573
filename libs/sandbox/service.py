"""A long-lived sandboxed process that answers JSON-lines requests: `SandboxService(argv, files_from, ...)`.

`Sandbox.run` starts a process per execution; a service starts one and keeps it, for code that is called
thousands of times (LLM-written skill programs during rollouts). The isolation is the same: a private copy of
`files_from` as the workspace, bubblewrap namespaces (`process.bwrap_command`), the launcher that joins the
memory/pids cgroups and sets the rlimits (`process.launcher`), a clean environment, the rlimits fallback (with
the Sandbox's loud warning) when bubblewrap is missing. The protocol: one JSON object per line on stdin, one
JSON reply per line on stdout; stderr is kept (head and tail) for error messages.

A request that takes longer than its timeout, a process that exits, or a reply that is not one JSON line of
at most `limits.output_bytes` kills the whole tree and raises `ServiceError`; the service is closed from then
on (the caller starts a new one if it wants). `limits.wall_s` is the default per-request timeout, not a
lifetime: a service lives until `close()`.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

from libs.sandbox import cgroups, process
from libs.sandbox.sandbox import Limits, Sandbox, _first_line, _rmtree
from libs.train.errors import UserError

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """The service failed (`kind`: "timeout", "crashed", "bad_reply", "closed"); the message is one line."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class SandboxService:
    """One sandboxed process answering JSON-lines requests; not thread-safe beyond its own lock.

    Args:
      argv: the command, as for `Sandbox.run` (e.g. [sys.executable, "-I", "-S", "server.py"]).
      files_from: copied into the service's private workspace.
      limits: memory, processes and file size as for `Sandbox.run` (None: `Limits()`); `wall_s` is the default
        request timeout; `output_bytes` caps one reply line and the kept stderr.
      sandbox: gives the backend ("bwrap" or "rlimits"); a fresh `Sandbox()` (auto) when None.
      read_only, env: as for `Sandbox.run`.
      name: how errors name this service.
    """

    def __init__(self, argv: Sequence[str], files_from: str | os.PathLike, limits: Limits | None = None,
                 sandbox: Sandbox | None = None, *, read_only: Mapping[str, str] = {},
                 env: Mapping[str, str] = {}, name: str = "service"):
        self.sandbox = sandbox if sandbox is not None else Sandbox()
        self.limits = limits if limits is not None else Limits()
        self.name = name
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self._proc: subprocess.Popen | None = None
        self._group: cgroups.Group | None = None
        argv, src, binds, _ = self.sandbox._check(argv, files_from, read_only, limits, env, ())
        self._run_dir = tempfile.mkdtemp(prefix="sandbox-service-", dir=self.sandbox.scratch_dir)
        try:
            self._start(argv, src, binds, env)
        except BaseException:
            self._cleanup()
            raise

    @property
    def backend(self) -> str:
        return self.sandbox.backend

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _start(self, argv: list[str], src: str, binds: list, env: Mapping[str, str]) -> None:
        workspace = os.path.join(self._run_dir, "workspace")
        try:
            shutil.copytree(src, workspace, symlinks=True)
        except (OSError, shutil.Error) as e:
            raise UserError(f"sandbox files_from {src}: cannot copy it ({_first_line(e)})") from None
        bwrap = self.backend == "bwrap"
        mounts = [(host, self.sandbox._mount_point(workspace, host, inside)) for host, inside in binds]
        tmp = "/tmp" if bwrap else os.path.join(self._run_dir, "tmp")
        if not bwrap:
            os.mkdir(tmp)
        # The same clean environment as Sandbox.run.
        clean_env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
                     "HOME": process.WORKSPACE if bwrap else workspace, "TMPDIR": tmp, "LANG": "C.UTF-8",
                     "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                     "PYTHONUNBUFFERED": "1", **env}
        self.sandbox._check_executable(argv[0], workspace, clean_env["PATH"])
        cmd = process.bwrap_command(workspace, mounts, argv) if bwrap else argv
        extra = 2 if bwrap else 0  # bwrap's monitor and the namespace's init
        try:
            self._group = cgroups.Group(self.limits.memory_mb << 20, self.limits.processes + extra)
        except OSError as e:
            log.warning("sandbox service: could not create cgroups (%s); falling back to rlimits", e)
            self._group = cgroups.Group(None, None)
        self._proc = subprocess.Popen(
            process.launcher(cmd, self._group, self.sandbox._rlimits(self.limits, self._group)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env, cwd=workspace,
            start_new_session=True)
        os.set_blocking(self._proc.stdin.fileno(), False)
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._stderr = process._Capture(self.limits.output_bytes)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name=f"{self.name}-stderr", daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        stream = self._proc.stderr
        while True:
            try:
                data = stream.read1(1 << 16)
            except (OSError, ValueError):  # closed under us by close()
                return
            if not data:
                return
            self._stderr.add(data)

    def stderr_tail(self, lines: int = 5) -> str:
        """The last lines the process wrote to stderr."""
        capture = getattr(self, "_stderr", None)
        return "\n".join(capture.text().strip().splitlines()[-lines:]) if capture is not None else ""

    # -- requests -----------------------------------------------------------------------------------------

    def request(self, obj: Any, timeout_s: float | None = None) -> Any:
        """Sends `obj` as one JSON line and returns the decoded reply line; raises ServiceError (the service
        is then closed) on a timeout, an exit or a bad reply, and after `close()`."""
        with self._lock:
            if self._proc is None:
                raise ServiceError("closed", f"sandboxed {self.name} is closed")
            timeout = self.limits.wall_s if timeout_s is None else timeout_s
            deadline = time.monotonic() + timeout
            data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
            self._write(data, deadline, timeout)
            line = self._read_line(deadline, timeout)
            try:
                return json.loads(line)
            except ValueError:
                self._fail("bad_reply", f"replied with a line that is not JSON: {line[:120]!r}")

    def _write(self, data: bytes, deadline: float, timeout: float) -> None:
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail("timeout", f"did not take a request within {timeout:g} s")
                if not sel.select(remaining):
                    continue
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    self._fail("crashed", self._exit_text())

    def _read_line(self, deadline: float, timeout: float) -> bytes:
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                newline = self._buffer.find(b"\n")
                if newline >= 0:
                    line = bytes(self._buffer[:newline])
                    del self._buffer[:newline + 1]
                    return line
                if len(self._buffer) > self.limits.output_bytes:
                    self._fail("bad_reply", f"replied with a line longer than {self.limits.output_bytes} bytes")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail("timeout", f"did not answer within {timeout:g} s (killed)")
                if not sel.select(remaining):
                    continue
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    self._fail("crashed", self._exit_text())
                self._buffer += data

    def _exit_text(self) -> str:
        try:
            code = self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "closed its stdout"
        self._stderr_thread.join(timeout=0.5)  # the last words on stderr
        why = f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"
        if self._group is not None and self._group.oom_kills():
            why += " (memory limit)"
        tail = self.stderr_tail(1)
        return why + (f": {tail}" if tail else "")

    def _fail(self, kind: str, detail: str) -> None:
        self._cleanup()
        raise ServiceError(kind, f"sandboxed {self.name} {detail}")

    # -- lifetime -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Kills the whole tree and removes the workspace and cgroups (idempotent)."""
        with self._lock:
            self._cleanup()

    def _cleanup(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            process.kill_tree(proc, self._group)
            proc.wait()
            thread = getattr(self, "_stderr_thread", None)
            if thread is not None:
                thread.join(timeout=2.0)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass
        if self._group is not None:
            self._group.remove()
            self._group = None
        if self._run_dir is not None:
            _rmtree(self._run_dir)
            self._run_dir = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_proc", None) is not None:
            self._cleanup()
