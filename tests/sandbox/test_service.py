"""libs/sandbox/service.py: a persistent sandboxed process answering JSON lines; timeouts and crashes kill the
tree with a clear error; under bubblewrap it sees neither the host's files nor the network."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from libs.sandbox import Limits, Sandbox
from libs.sandbox import process as sandbox_process
from libs.sandbox.service import SandboxService, ServiceError

BWRAP_PROBLEM = sandbox_process.bwrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP_PROBLEM is not None,
                                 reason=f"{BWRAP_PROBLEM}: apt-get install -y bubblewrap to run this test")
BACKENDS = [pytest.param("bwrap", marks=needs_bwrap), "rlimits"]

SERVER = """
    import json, os, socket, sys, time
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "echo":
            reply = {"echo": req["value"], "pid": os.getpid()}
        elif op == "sleep":
            time.sleep(req["seconds"])
            reply = {"slept": True}
        elif op == "exit":
            print("giving up now", file=sys.stderr, flush=True)
            sys.exit(3)
        elif op == "garbage":
            reply = None
            print("this is not json", flush=True)
            continue
        elif op == "read":
            try:
                with open(req["path"]) as f:
                    reply = {"read": f.read()[:50]}
            except OSError as e:
                reply = {"error": type(e).__name__}
        elif op == "connect":
            try:
                socket.create_connection((req["host"], req["port"]), timeout=2).close()
                reply = {"connected": True}
            except OSError as e:
                reply = {"error": type(e).__name__}
        elif op == "listdir":
            reply = {"names": sorted(os.listdir(req["path"]))}
        print(json.dumps(reply), flush=True)
"""


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("server")
    (directory / "server.py").write_text(textwrap.dedent(SERVER))
    return directory


def _service(directory: Path, backend: str = "auto", wall_s: float = 5.0) -> SandboxService:
    return SandboxService([sys.executable, "-I", "-S", "server.py"], directory, Limits(wall_s=wall_s),
                          Sandbox(backend), name="test server")


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_round_trips_in_one_process(server_dir, backend):
    with _service(server_dir, backend) as service:
        replies = [service.request({"op": "echo", "value": [i, "x" * i]}) for i in range(20)]
        assert service.backend == backend and service.alive
    assert [r["echo"] for r in replies] == [[i, "x" * i] for i in range(20)]
    assert len({r["pid"] for r in replies}) == 1  # one long-lived process
    assert not service.alive


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hanging_request_is_killed_after_its_timeout(server_dir, backend):
    service = _service(server_dir, backend)
    pid_inside = service.request({"op": "echo", "value": 1})["pid"]
    start = time.monotonic()
    with pytest.raises(ServiceError, match=r"test server did not answer within 0.5 s \(killed\)") as caught:
        service.request({"op": "sleep", "seconds": 30}, timeout_s=0.5)
    assert caught.value.kind == "timeout" and time.monotonic() - start < 5
    assert not service.alive
    with pytest.raises(ServiceError, match="is closed"):
        service.request({"op": "echo", "value": 2})
    if backend == "rlimits":  # same pid namespace: the process itself must be gone
        assert not os.path.exists(f"/proc/{pid_inside}")


def test_a_crash_and_a_bad_reply_are_one_line_errors(server_dir):
    with _service(server_dir) as service, \
            pytest.raises(ServiceError, match="exited with code 3: giving up now") as caught:
        service.request({"op": "exit"})
    assert caught.value.kind == "crashed"
    with _service(server_dir) as service, pytest.raises(ServiceError, match="not JSON") as caught:
        service.request({"op": "garbage"})
    assert caught.value.kind == "bad_reply"


@needs_bwrap
def test_the_service_sees_no_host_files_and_no_network(server_dir, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    repo_file = Path(__file__).resolve()
    with _service(server_dir, "bwrap") as service:
        assert service.request({"op": "read", "path": str(secret)}) == {"error": "FileNotFoundError"}
        assert service.request({"op": "read", "path": str(repo_file)}) == {"error": "FileNotFoundError"}
        assert "error" in service.request({"op": "read", "path": "/root/.bash_history"})
        assert set(service.request({"op": "listdir", "path": "/root"})["names"]) <= {".pyenv"}  # the interpreter
        assert service.request({"op": "connect", "host": "1.1.1.1", "port": 53})["error"] in {"OSError",
                                                                                             "TimeoutError"}
        assert service.request({"op": "echo", "value": "still alive"})["echo"] == "still alive"
