"""libs/sandbox: each limit is shown to hold (the program fails, the test process and machine are fine), on
bubblewrap and, where it applies, on the rlimits fallback."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from libs.sandbox import Limits, Sandbox, cgroups
from libs.sandbox import process as sandbox_process
from libs.train.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
BWRAP_PROBLEM = sandbox_process.bwrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP_PROBLEM is not None,
                                 reason=f"{BWRAP_PROBLEM}: apt-get install -y bubblewrap to run this test")
BACKENDS = [pytest.param("bwrap", marks=needs_bwrap), "rlimits"]
HAS_CGROUPS = set(cgroups.available()) == {"memory", "pids"}
needs_process_cap = pytest.mark.skipif("pids" not in cgroups.available() and os.geteuid() == 0,
                                       reason="no pids cgroup and RLIMIT_NPROC does not bind root: no process cap")


@pytest.fixture(scope="module")
def sandboxes():
    made = {}

    def get(backend: str) -> Sandbox:
        if backend not in made:
            made[backend] = Sandbox(backend)
        return made[backend]
    return get


def _src(tmp_path: Path, code: str) -> Path:
    """A fresh files_from directory holding main.py."""
    src = tmp_path / f"src-{uuid.uuid4().hex[:6]}"
    src.mkdir()
    (src / "main.py").write_text(textwrap.dedent(code))
    return src


def _survivors(marker: str) -> list[int]:
    """Pids of live processes whose command line carries `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def _stale_cgroups() -> list[str]:
    return [n for parent in cgroups.available().values() for n in os.listdir(parent)
            if n.startswith(f"sandbox-{os.getpid()}-")]


@needs_bwrap
def test_python_with_project_packages_and_nothing_else(sandboxes, tmp_path):
    code = """
        import os, sys, numpy, sklearn, jax
        print("sum", float(jax.numpy.ones(3).sum()), os.getcwd(), os.environ["HOME"], os.getuid())
        print("caps", open("/proc/self/status").read().split("CapEff:")[1].split()[0])
        try:
            import libs
            print("repo visible")
        except ImportError:
            print("repo hidden")
        print("stdin", sys.stdin.read())
    """
    ex = sandboxes("bwrap").run([PY, "main.py"], _src(tmp_path, code), env={"JAX_PLATFORMS": "cpu"},
                                stdin="hello")  # the default Limits: 1 GiB memcg must be enough for JAX
    assert ex.returncode == 0, ex.stderr
    assert "sum 3.0 /workspace /workspace 1000" in ex.stdout
    assert "caps 0000000000000000" in ex.stdout and "repo hidden" in ex.stdout and "stdin hello" in ex.stdout
    assert ex.backend == "bwrap" and ex.killed is None and not ex.timed_out and ex.workspace is None


@needs_process_cap
@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_bomb_ends_and_leaves_nothing(sandboxes, tmp_path, backend):
    marker = f"bomb-{uuid.uuid4().hex}"
    code = """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """
    ex = sandboxes(backend).run([PY, "main.py", marker], _src(tmp_path, code), limits=Limits(wall_s=2, processes=24))
    assert ex.timed_out and ex.killed == "timeout" and ex.returncode is None
    assert ex.wall_s < 5
    assert _survivors(marker) == []
    assert _stale_cgroups() == []
    assert subprocess.run(["true"], check=False).returncode == 0  # this process can still fork
    again = sandboxes(backend).run([PY, "-c", "print('alive')"], tmp_path)
    assert again.returncode == 0 and again.stdout == "alive\n"


@needs_process_cap
@pytest.mark.parametrize("backend", BACKENDS)
def test_process_count_is_capped(sandboxes, tmp_path, backend):
    code = """
        import os, time
        n = 0
        try:
            for _ in range(100):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
        except OSError as e:
            print("fork failed:", type(e).__name__)
        print("children", n)
    """
    ex = sandboxes(backend).run([PY, "main.py"], _src(tmp_path, code), limits=Limits(wall_s=20, processes=16))
    assert "fork failed" in ex.stdout, ex.stdout + ex.stderr
    assert int(ex.stdout.split("children")[1]) < 16
    assert ex.wall_s < 10  # the sleeping children did not keep the run alive


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_cap(sandboxes, tmp_path, backend):
    code = """
        print("allocating", flush=True)
        block = b"x" * (400 << 20)
        print("allocated", len(block))
    """
    ex = sandboxes(backend).run([PY, "main.py"], _src(tmp_path, code), limits=Limits(memory_mb=200))
    assert "allocating" in ex.stdout and "allocated" not in ex.stdout
    assert ex.returncode != 0 and not ex.timed_out
    if cgroups.available().get("memory"):
        assert ex.killed == "memory" and ex.returncode == 137
    else:
        assert "MemoryError" in ex.stderr
    assert subprocess.run(["true"], check=False).returncode == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_loop_times_out_and_the_whole_tree_dies(sandboxes, tmp_path, backend):
    marker = f"loop-{uuid.uuid4().hex}"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    escape = backend == "bwrap" or HAS_CGROUPS  # a child in its own session: only namespaces/cgroups catch it
    code = f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", {stubborn!r}, "{marker}"])
        subprocess.Popen([sys.executable, "-c", {stubborn!r}, "{marker}"], start_new_session={escape})
        print("started", flush=True)
        while True:
            pass
    """
    ex = sandboxes(backend).run([PY, "main.py", marker], _src(tmp_path, code), limits=Limits(wall_s=1.5))
    assert ex.timed_out and ex.killed == "timeout" and ex.returncode is None
    assert 1.4 <= ex.wall_s < 4
    assert ex.stdout == "started\n"  # output before the kill is kept
    assert _survivors(marker) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_cancel_kills_the_run_at_once(sandboxes, tmp_path, backend):
    marker = f"cancel-{uuid.uuid4().hex}"
    code = """
        import time
        print("started", flush=True)
        time.sleep(600)
    """
    start = time.monotonic()
    ex = sandboxes(backend).run([PY, "main.py", marker], _src(tmp_path, code), limits=Limits(wall_s=60),
                                cancel=lambda: time.monotonic() - start > 1.0)
    assert ex.killed == "cancelled" and not ex.timed_out and ex.wall_s < 3
    assert ex.stdout == "started\n" and _survivors(marker) == []


@needs_bwrap
def test_no_network(sandboxes, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        code = f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("connected")
            except OSError as e:
                print("failed", type(e).__name__)
        """
        ex = sandboxes("bwrap").run([PY, "main.py"], _src(tmp_path, code), limits=Limits(wall_s=10))
        assert ex.stdout.startswith("failed"), ex.stdout + ex.stderr
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # the same connection from here works
            conn, _ = server.accept()
            conn.close()
    finally:
        server.close()


@needs_bwrap
def test_writes_outside_the_workspace_fail(sandboxes, tmp_path):
    name = f"escape-{uuid.uuid4().hex}"
    targets = [str(REPO_ROOT / name), f"/root/{name}", str(tmp_path / name), f"/usr/{name}", f"/{name}",
               f"{sys.prefix}/{name}"]
    code = f"""
        for path in {targets!r} + ["/tmp/{name}"]:
            try:
                open(path, "w").write("x")
                print("wrote", path)
            except OSError as e:
                print("refused", path, type(e).__name__)
    """
    ex = sandboxes("bwrap").run([PY, "main.py"], _src(tmp_path, code))
    assert ex.returncode == 0, ex.stderr
    for t in targets:
        assert not os.path.exists(t)  # nothing reaches the host
        if not t.startswith("/tmp/"):  # under /tmp it may land in the private /tmp (a repo cloned under /tmp)
            assert f"refused {t}" in ex.stdout
    assert f"wrote /tmp/{name}" in ex.stdout and not os.path.exists(f"/tmp/{name}")  # a private /tmp


@needs_bwrap
def test_reads_outside_the_view_fail(sandboxes, tmp_path):
    secret = f"secret-{uuid.uuid4().hex}"
    private = tmp_path / "private"
    private.mkdir()
    (private / "key.txt").write_text(secret)
    paths = [str(private / "key.txt"), str(REPO_ROOT / "README.md"), "/etc/shadow", "/root/.bash_history",
             "/proc/1/root/etc/shadow"]
    code = f"""
        import os
        for path in {paths!r}:
            try:
                print("read", path, open(path).read())
            except OSError as e:
                print("unreadable", path, type(e).__name__)
        print("listing", os.listdir("/"))
    """
    ex = sandboxes("bwrap").run([PY, "main.py"], _src(tmp_path, code))
    assert ex.returncode == 0, ex.stderr
    for p in paths:
        assert f"unreadable {p}" in ex.stdout
    assert secret not in ex.stdout and secret not in ex.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_api_keys_do_not_leak(sandboxes, tmp_path, backend, monkeypatch):
    secrets = {"OPENAI_API_KEY": f"sk-{uuid.uuid4().hex}", "HF_TOKEN": f"hf_{uuid.uuid4().hex}"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    code = """
        import os
        print(sorted(os.environ.items()))
        for p in ("/proc/self/environ", "/proc/1/environ"):
            try:
                print(open(p, "rb").read())
            except OSError:
                pass
    """
    ex = sandboxes(backend).run([PY, "main.py"], _src(tmp_path, code), env={"MINE": "given"})
    assert ex.returncode == 0, ex.stderr
    assert "('MINE', 'given')" in ex.stdout and "PATH" in ex.stdout
    for k, v in secrets.items():
        assert k not in ex.stdout and v not in ex.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_is_truncated_head_and_tail(sandboxes, tmp_path, backend):
    code = """
        import sys
        print("HEAD" + "a" * 200000 + "TAIL")
        sys.stderr.write("E-HEAD" + "b" * 200000 + "E-TAIL")
    """
    ex = sandboxes(backend).run([PY, "main.py"], _src(tmp_path, code), limits=Limits(output_bytes=1000))
    assert ex.returncode == 0
    for text, head, tail in ((ex.stdout, "HEAD", "TAIL\n"), (ex.stderr, "E-HEAD", "E-TAIL")):
        assert text.startswith(head) and text.endswith(tail) and "bytes cut" in text and len(text) < 1100


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_are_collected_safely(tmp_path, backend):
    outside = tmp_path / "host_secret.txt"
    outside.write_text("host secret")
    code = f"""
        import os
        open("submission.csv", "w").write("id,y\\n1,2\\n")
        os.makedirs("sub")
        open("sub/metrics.json", "w").write('{{"acc": 1}}')
        os.symlink({str(outside)!r}, "evil")
        os.symlink({str(tmp_path)!r}, "evil_dir")
    """
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    box = Sandbox(backend, scratch_dir=str(scratch))
    kw = {"collect": ["submission.csv", "sub/metrics.json", "missing.txt", "evil", "evil_dir/host_secret.txt"]}
    ex = box.run([PY, "main.py"], _src(tmp_path, code), **kw)
    assert ex.files == {"submission.csv": b"id,y\n1,2\n", "sub/metrics.json": b'{"acc": 1}'}
    whole = box.run([PY, "main.py"], _src(tmp_path, code), collect=["sub", "evil_dir"])  # a directory: its files
    assert whole.files == {"sub/metrics.json": b'{"acc": 1}'}
    kept = box.run([PY, "main.py"], _src(tmp_path, code), keep=True, **kw)
    assert kept.workspace and Path(kept.workspace, "submission.csv").read_text() == "id,y\n1,2\n"
    assert os.listdir(scratch) == [os.path.basename(os.path.dirname(kept.workspace))]  # nothing else left


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_size_limit(sandboxes, tmp_path, backend):
    code = """
        with open("big.bin", "wb") as f:
            f.write(b"x" * (2 << 20))
    """
    ex = sandboxes(backend).run([PY, "main.py"], _src(tmp_path, code), limits=Limits(file_bytes=1 << 20),
                                collect=["big.bin"])
    assert ex.returncode != 0 and "File too large" in ex.stderr  # Python ignores SIGXFSZ: write gets EFBIG
    assert len(ex.files["big.bin"]) <= 1 << 20


@needs_bwrap
def test_read_only_view_and_workspace_copy(sandboxes, tmp_path):
    data = tmp_path / "public"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n")
    (tmp_path / "labels.csv").write_text("y\n")
    code = """
        print("read", open("data/train.csv").read().strip(), open("labels.csv").read().strip())
        for path in ("data/new.csv", "data/train.csv"):
            try:
                open(path, "w").write("overwritten")
                print("wrote", path)
            except OSError as e:
                print("refused", path, type(e).__name__)
        open("main.py", "w").write("changed")
    """
    src = _src(tmp_path, code)
    ex = sandboxes("bwrap").run([PY, "/workspace/main.py"], src,
                                read_only={str(data): "data", str(tmp_path / "labels.csv"): "labels.csv"})
    assert ex.returncode == 0, ex.stderr
    assert "read a,b y" in ex.stdout and "refused data/new.csv" in ex.stdout and "refused data/train.csv" in ex.stdout
    assert sorted(os.listdir(data)) == ["train.csv"] and (data / "train.csv").read_text() == "a,b\n"
    assert (src / "main.py").read_text() == textwrap.dedent(code)  # the program changed its own copy only


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_runs_from_threads(sandboxes, tmp_path, backend):
    code = """
        import os, time
        time.sleep(0.5)
        open("out.txt", "w").write(os.environ["IDX"])
    """
    src = _src(tmp_path, code)
    box = sandboxes(backend)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda i: box.run([PY, "main.py"], src, env={"IDX": str(i)}, collect=["out.txt"]),
                             range(4)))
    elapsed = time.monotonic() - start
    assert [r.files.get("out.txt") for r in runs] == [b"0", b"1", b"2", b"3"], [r.stderr for r in runs]
    assert elapsed < 1.9  # four 0.5 s sleeps overlapped
    assert _stale_cgroups() == []


def test_rlimits_fallback_warns_and_runs(tmp_path, caplog):
    data = tmp_path / "public"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n")
    with caplog.at_level(logging.WARNING):
        box = Sandbox("rlimits")
    assert "WITHOUT namespaces" in caplog.text
    code = """
        import os
        print(open("data/train.csv").read().strip(), os.getcwd() == os.environ["HOME"])
        open("result.txt", "w").write("ok")
    """
    ex = box.run([PY, "main.py"], _src(tmp_path, code), read_only={str(data): "data"}, collect=["result.txt"])
    assert ex.backend == "rlimits" and ex.returncode == 0, ex.stderr
    assert ex.stdout == "a,b True\n" and ex.files == {"result.txt": b"ok"}


def test_auto_backend_warns_without_bwrap(monkeypatch, caplog):
    monkeypatch.setitem(sandbox_process._probe, "bwrap", "bubblewrap (bwrap) is not installed")
    with caplog.at_level(logging.WARNING):
        box = Sandbox()
    assert box.backend == "rlimits"
    assert "WITHOUT isolation" in caplog.text and "apt-get install -y bubblewrap" in caplog.text
    with pytest.raises(UserError, match="apt-get install"):
        Sandbox("bwrap")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_a_one_line_user_error(sandboxes, tmp_path, backend):
    box = sandboxes(backend)
    cases = [([PY, "x.py"], tmp_path / "missing", {}), ([], tmp_path, {}), (PY, tmp_path, {}),
             (["no-such-program-xyz"], tmp_path, {}), (["./missing.sh"], tmp_path, {}),
             ([PY, "-c", "1"], tmp_path, {"collect": ["../x"]}),
             ([PY, "-c", "1"], tmp_path, {"read_only": {str(tmp_path / "nope"): "data"}}),
             ([PY, "-c", "1"], tmp_path, {"limits": Limits(wall_s=0)}),
             ([PY, "-c", "1"], tmp_path, {"read_only": {str(tmp_path): "/abs/elsewhere" if backend == "rlimits"
                                                        else "../up"}})]
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "sub").symlink_to(tmp_path)
    cases.append(([PY, "-c", "1"], linked, {"read_only": {str(tmp_path): "sub/data"}}))
    for argv, src, kw in cases:
        with pytest.raises(UserError) as err:
            box.run(argv, src, **kw)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "data").exists()  # nothing was made through the symlink
    with pytest.raises(UserError):
        Sandbox("docker")
