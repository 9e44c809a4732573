"""Starting, or reusing, the project's own model server for a gateway whose `LLMConfig.local_model` is set.

`ensure(config)` asks `GET /health` at the config's api_base (which must be on this machine). A server of
this project that serves the expected model is reused; if nothing listens there, `python -m tools.serve`
is started with the configured model source, waited for (loading and compiling take a minute on a small
CPU), and stopped when this process exits. Its output goes to a log file, named in errors.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from libs.train.errors import ConfigError, UserError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_started: list[subprocess.Popen] = []


class LocalServerError(UserError):
    """The local server cannot be started or reached, or something else listens at its address."""


def served_name(model: str) -> str:
    """The name the server answers to: the litellm model string without its provider prefix."""
    return model.split("/", 1)[1] if "/" in model else model


def _health(base: str, timeout: float = 2.0) -> dict | None:
    """The server's /health JSON, or None when nothing listens there."""
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout) as reply:
            return json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as e:
        return {"status": f"HTTP {e.code}"}
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None
    except ValueError:
        return {"status": "not JSON"}


def ensure(api_base: str | None, model: str, source: str, *, log_dir: str | None = None,
           startup_timeout_s: float = 600.0) -> subprocess.Popen | None:
    """Makes sure a server of `source` named after `model` answers at `api_base`; returns the process
    started (None when one was already serving)."""
    url = urllib.parse.urlsplit(api_base or "")
    if url.scheme != "http" or url.hostname not in _LOOPBACK or not url.port:
        raise ConfigError(f"LLMConfig.local_model needs an api_base on this machine with a port, e.g. "
                          f"'http://127.0.0.1:8421/v1', got {api_base!r}")
    base = f"http://{url.hostname}:{url.port}"
    name = served_name(model)
    health = _health(base)
    if health is not None:
        if health.get("model") == name:
            return None
        raise LocalServerError(f"{base} answers but does not serve {name!r} ({health.get('model') or health}); "
                               "stop it or choose another port in LLMConfig.api_base")
    log_dir = log_dir or tempfile.gettempdir()
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, f"local_server_{url.port}.log")
    command = [sys.executable, "-m", "tools.serve", f"--model={source}", f"--name={name}",
               f"--host={url.hostname}", f"--port={url.port}"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    _started.append(process)
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServerError(f"the local model server exited with code {process.returncode}: "
                                   f"{_last_line(log_path)} (log: {log_path})")
        health = _health(base)
        if health is not None and health.get("model") == name:
            return process
        time.sleep(0.5)
    stop(process)
    raise LocalServerError(f"the local model server did not answer within {startup_timeout_s:.0f} s (log: {log_path})")


def stop(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


@atexit.register
def _stop_all() -> None:
    for process in _started:
        stop(process)
