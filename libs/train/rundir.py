"""The run-directory discipline every binary follows (applied by `libs.train.launch.run`).

- **One process per workdir**: an exclusive lock on `workdir/.lock` (the holder's pid is written in
  it); a second process ends with one line naming that pid.
- **A status record**, `workdir/status.json`: running, interrupted, finished or failed, with the
  result. Rerunning a finished run with the same config reports its result and changes nothing.
- **JSONL that survives kills**: `append_jsonl` never glues a record onto a torn last line (it cuts
  the torn tail first, with a warning); `read_jsonl` skips a torn last line but stops with one line
  naming the file and line for a corrupt line in the middle.
- **Interruption**: SIGTERM and Ctrl-C set `stop_requested()`; libraries check it at safe points,
  save what they have and return; the launcher records "interrupted" and exits 143 / 130. A second
  signal ends the process at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from absl import logging

from libs.train.errors import UserError

STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
_stop = threading.Event()
_signal = [0]


# --- interruption ---------------------------------------------------------------------


def stop_requested() -> bool:
    """True once SIGTERM or SIGINT arrived (or `request_stop` was called)."""
    return _stop.is_set()


def stop_signal() -> int:
    """The signal that asked to stop (0: none)."""
    return _signal[0]


def request_stop(signum: int = signal.SIGTERM) -> None:
    _signal[0] = signum
    _stop.set()


def reset_stop() -> None:
    _signal[0] = 0
    _stop.clear()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM / SIGINT request a clean stop; a second one restores the default (ends the process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, frame):
        del frame
        if stop_requested():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        logging.warning("%s received: saving and stopping (send it again to stop at once)",
                        signal.Signals(signum).name)
        request_stop(signum)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --- the lock and the status record ----------------------------------------------------------


class RunDir:
    """A workdir held by this process: its lock and its status record."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        try:
            os.makedirs(workdir, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot use --workdir={workdir}: {e.strerror or e}") from None
        if not os.access(workdir, os.W_OK):
            raise UserError(f"cannot use --workdir={workdir}: not writable")
        self._lock_file = None

    @contextlib.contextmanager
    def lock(self, process_index: int = 0) -> Iterator[RunDir]:
        """Holds the workdir; the processes of one multi-process run each hold their own (`.lock.<id>`)."""
        path = os.path.join(self.workdir, LOCK_FILE + (f".{process_index}" if process_index else ""))
        try:
            f = open(path, "a+")  # pylint: disable=consider-using-with
        except OSError as e:
            raise UserError(f"cannot use --workdir={self.workdir}: {e.strerror or e}") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"--workdir={self.workdir} is in use by pid {holder}; one process per workdir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f
        try:
            yield self
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
            self._lock_file = None

    def read_status(self) -> dict[str, Any] | None:
        path = os.path.join(self.workdir, STATUS_FILE)
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logging.warning("ignoring an unreadable %s", path)
            return None

    def write_status(self, status: str, **fields: Any) -> None:
        record = {"status": status, "pid": os.getpid(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
        path = os.path.join(self.workdir, STATUS_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, default=_jsonable, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / jax scalars
        return value.item()
    return str(value)


def one_line(result: Any, limit: int = 300) -> str:
    """A short description of a run's result for the console."""
    if isinstance(result, dict):
        parts = [f"{k}={_short(v)}" for k, v in result.items() if isinstance(v, (str, int, float, bool))]
        text = ", ".join(parts)
    else:
        text = str(result)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


# --- JSONL ------------------------------------------------------------------------------------


def append_jsonl(path: str, record: dict[str, Any]) -> None:
    """Appends one record as a line, first cutting a torn last line (left by a kill) so none glue."""
    line = json.dumps(record, separators=(",", ":"), default=_jsonable) + "\n"
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                _cut_torn_tail(f, path, size)
        f.write(line.encode())
        f.flush()


def _cut_torn_tail(f, path: str, size: int) -> None:
    chunk = min(size, 1 << 20)
    f.seek(size - chunk)
    tail = f.read(chunk)
    keep = size - chunk + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
    logging.warning("%s: dropping a torn last line (%d bytes) left by an earlier kill", path, size - keep)
    f.truncate(keep)
    f.seek(keep)


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The records of a JSONL file; a torn last line is skipped, a corrupt middle line is an error."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except ValueError:
            if number == len(lines):  # No newline after it: the write was cut short.
                logging.warning("%s: skipping a torn last line (line %d)", path, number)
                continue
            raise UserError(f"{path}: line {number} is corrupt (not JSON); fix or remove that line") from None
    return records
