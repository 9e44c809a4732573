"""Sweeps of gin bindings: axes, names, the recorded definition, the table, the executors, and one real
sweep of the smoke config that is stopped with SIGTERM and resumed."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from libs.train import rundir, sweep, sweep_report
from libs.train.errors import ConfigError, UserError
from libs.train.sweep_executors import (
    BinaryJob,
    LaunchOptions,
    LocalLauncher,
    SlurmLauncher,
    _gpu_groups,
)
from tests.conftest import REPO_ROOT, run_binary

SMOKE = "configs/speedrun/smoke.gin"


def _read(path):
    with open(path) as f:
        return f.read()


def _spec(*sweeps, **kwargs):
    return sweep.make_spec("experiments.speedrun", [SMOKE], [], list(sweeps), **kwargs)


# --- axes, points and names ---------------------------------------------------------------------------


def test_axes_parse_python_literals():
    axis = sweep.parse_axis("make_optimizer.muon_lr=[0.01, 2e-2, 4]")
    assert axis.binding == "make_optimizer.muon_lr" and axis.values == (0.01, 0.02, 4) and axis.param == "muon_lr"
    assert sweep.parse_axis("scope/GPTConfig.dtype=['float32', \"bfloat16\"]").values == ("float32", "bfloat16")
    assert sweep.parse_axis("GPTConfig.window=[(1, 2), None, True]").texts() == ["(1, 2)", "None", "True"]


@pytest.mark.parametrize("text, culprit", [
    ("make_optimizer.muon_lr", "expected 'Name.param=[v1, v2, ...]'"),
    ("muon_lr=[1, 2]", "expected 'Name.param"),
    ("make_optimizer.muon_lr=0.01", "non-empty [list]"),
    ("make_optimizer.muon_lr=[]", "non-empty [list]"),
    ("make_optimizer.muon_lr=[0.01, @foo]", "is not a list of literals"),
    ("make_optimizer.muon_lr=[0.01, 0.02", "is not a list of literals"),
    ("make_optimizer.muon_lr=[0.01, 0.01]", "0.01 appears more than once"),
])
def test_malformed_axes_are_one_line_config_errors(text, culprit):
    with pytest.raises(ConfigError) as e:
        sweep.parse_axis(text)
    assert culprit in str(e.value) and "\n" not in str(e.value)


def test_product_zip_and_seeds():
    product = _spec("A.x=[1,2,3]", "B.y=['a','b']")
    assert sweep.points(product) == [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "a"), (3, "b")]
    zipped = _spec("A.x=[1,2,3]", "B.y=['a','b','c']", mode="zip", seeds=2)
    assert sweep.points(zipped) == [(1, "a", 0), (1, "a", 1), (2, "b", 0), (2, "b", 1), (3, "c", 0), (3, "c", 1)]
    runs = sweep.expand(zipped)
    assert runs[1].bindings() == ["A.x = 1", "B.y = 'a'", "train.seed = 1"]
    assert sweep.points(_spec(seeds=3, seed_binding="make_model.seed")) == [(0,), (1,), (2,)]
    assert sweep.expand(_spec(seeds=1, seed_binding="make_model.seed"))[0].bindings() == ["make_model.seed = 0"]


@pytest.mark.parametrize("sweeps, kwargs, culprit", [
    (["A.x=[1,2,3]", "B.y=[1,2]"], {"mode": "zip"}, "--mode=zip needs axes of equal length: A.x has 3, B.y has 2"),
    (["A.x=[1,2]", "A.x=[3]"], {}, "A.x is swept twice"),
    (["train.seed=[1,2]"], {"seeds": 2}, "train.seed is swept twice (an axis and --seeds)"),
    ([], {}, "nothing to sweep"),
    (["A.x=[1]"], {"seeds": -1}, "--seeds=-1"),
])
def test_inconsistent_definitions_are_refused(sweeps, kwargs, culprit):
    with pytest.raises(ConfigError, match=re.escape(culprit)):
        _spec(*sweeps, **kwargs)


def test_run_names_are_readable_safe_unique_and_stable():
    spec = _spec("make_optimizer.muon_lr=[0.01, 0.02]", "GPTConfig.num_layers=[2, 4]", seeds=2)
    names = [r.name for r in sweep.expand(spec)]
    assert names[:3] == ["muon_lr=0.01,num_layers=2,seed=0", "muon_lr=0.01,num_layers=2,seed=1",
                         "muon_lr=0.01,num_layers=4,seed=0"]
    assert len(set(names)) == 8 and names == [r.name for r in sweep.expand(spec)]  # Stable across reruns.
    odd = [r.name for r in sweep.expand(_spec("A.path=['a/b', 'a_b', 'x y', '../up']", "B.path=[1]"))]
    assert len(set(odd)) == 4  # Sanitised names get a hash of the real values, so they stay distinct.
    for name in odd:
        assert re.fullmatch(r"[A-Za-z0-9._+=,-]+", name) and not name.startswith("."), name
        assert name.startswith("A.path=")  # Two axes named `path`: the full bindings label them.
    assert "A.path=a_b,B.path=1" in odd and sum(n.startswith("A.path=a_b,B.path=1-") for n in odd) == 1
    long = sweep.expand(_spec(f"A.x=['{'v' * 400}']"))[0].name
    assert len(long) < 200 and long.startswith("x=vvv")


def test_a_different_definition_in_the_same_folder_is_refused(tmp_path):
    spec = _spec("make_optimizer.muon_lr=[0.01, 0.02]")
    sweep.record_definition(str(tmp_path), spec)
    sweep.record_definition(str(tmp_path), spec)  # The same definition: a rerun.
    with pytest.raises(UserError) as e:
        sweep.record_definition(str(tmp_path), _spec("make_optimizer.muon_lr=[0.01, 0.04]"))
    assert "axes was make_optimizer.muon_lr=[0.01, 0.02], now make_optimizer.muon_lr=[0.01, 0.04]" in str(e.value)
    with pytest.raises(UserError, match="seeds was 0, now 2"):
        sweep.record_definition(str(tmp_path), _spec("make_optimizer.muon_lr=[0.01, 0.02]", seeds=2))


def test_the_tool_ends_bad_input_with_one_line_and_exit_2(tmp_path):
    base = ["--gin_file=" + SMOKE, f"--sweep_dir={tmp_path}"]
    bad = run_binary("tools.sweep", *base, "--sweep=make_optimizer.muon_lr=0.01", timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: --sweep=")
    unequal = run_binary("tools.sweep", *base, "--sweep=A.x=[1,2]", "--sweep=B.y=[1]", "--mode=zip", timeout=120)
    assert unequal.returncode == 2 and "equal length" in unequal.stderr.strip().splitlines()[-1]
    sweep.record_definition(str(tmp_path), _spec("A.x=[1,2]"))
    changed = run_binary("tools.sweep", *base, "--sweep=A.x=[1,3]", timeout=120)
    assert changed.returncode == 2 and "holds another sweep: axes was A.x=[1, 2], now A.x=[1, 3]" in changed.stderr
    assert not os.path.exists(tmp_path / "x=1")  # Nothing launched.


# --- the table --------------------------------------------------------------------------------------


def _fake_run(sweep_dir, name, status, result=None, log="", summary=None):
    workdir = os.path.join(sweep_dir, name)
    os.makedirs(workdir)
    fields = {"result": result} if result else {}
    if status == "failed":
        fields["error"] = "boom: the learning rate is on fire"
    rundir.RunDir(workdir).write_status(status, config="", **fields)
    if log:
        with open(os.path.join(workdir, "run.log"), "w") as f:
            f.write(log)
    if summary:
        rundir.append_jsonl(os.path.join(workdir, "metrics.jsonl"), {"step": summary["step"], "kind": "summary",
                                                                     **summary})


def test_table_csv_and_plot_from_run_folders(tmp_path):
    spec = _spec("make_optimizer.muon_lr=[0.01, 0.02]", "GPTConfig.num_layers=[2, 4]")
    runs = sweep.expand(spec)
    d = str(tmp_path)
    losses = {runs[0].name: 3.5, runs[1].name: 3.1, runs[2].name: 3.3}
    for name, loss in losses.items():
        _fake_run(d, name, "finished", {"val_loss": loss, "step": 20, "train_time_s": 1.5, "status": "complete"})
    log = "".join(f"line {i}\n" for i in range(20)) + "Traceback: it broke\n"
    _fake_run(d, runs[3].name, "failed", log=log, summary={"step": 7, "val_loss": 9.0})
    labels = sweep.axis_labels(spec.all_axes())
    points = [(r.name, tuple(v for _, v in r.values)) for r in runs]
    values = [a.values for a in spec.all_axes()]
    report = sweep_report.write_report(d, points, labels, values, {}, {runs[1].name: 12.0}, "val_loss")

    md = _read(report.table_path)
    table = [line for line in md.splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in table] == [runs[1].name, runs[2].name, runs[0].name, runs[3].name]
    assert "| 0.01 | 4 | finished | 3.1000 | 20 | 1.5 | 12 |" in table[0]
    assert "**failed** | 9.0000 | 7 |" in table[3]  # From the metrics.jsonl summary; failed runs stand out,
    tail = md.split(f"### `{runs[3].name}`: failed")[1]
    assert "error: boom: the learning rate is on fire" in tail  # ... with their error
    assert "line 16\nline 17\nline 18\nline 19\nTraceback: it broke\n```" in tail and "line 15" not in tail
    assert report.best.startswith(f"{runs[1].name} val_loss=3.1000") and report.counts == "3 finished, 1 failed"

    with open(report.csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == [runs[1].name, runs[2].name, runs[0].name, runs[3].name]
    assert rows[0]["muon_lr"] == "0.01" and rows[0]["num_layers"] == "4" and float(rows[0]["val_loss"]) == 3.1
    assert rows[3]["status"] == "failed" and "fire" in rows[3]["error"]
    with open(report.png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(report.png_path) > 5000

    flipped = sweep_report.write_report(d, points, labels, values, {}, {}, "val_loss", maximize=True)
    assert flipped.best.startswith(f"{runs[0].name} val_loss=3.5000")  # A failed run is never the best.


def test_pending_runs_and_a_missing_metric(tmp_path):
    spec = _spec("A.x=['p', 'q']")
    runs = sweep.expand(spec)
    _fake_run(str(tmp_path), runs[0].name, "finished", {"step": 5})
    report = sweep_report.write_report(str(tmp_path), [(r.name, (r.values[0][1],)) for r in runs], ["x"],
                                       [("p", "q")], {}, {}, "accuracy")
    assert report.best == "" and report.png_path is None and report.counts == "1 finished, 1 pending"
    assert "| `x=q` | q | pending |" in _read(report.table_path)


# --- executors --------------------------------------------------------------------------------------


FAKE_BINARY = r"""
import os, signal, sys, time
out = sys.argv[1]
got = []
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
open(out + ".ready", "w").close()
deadline = time.time() + 60
while not got and time.time() < deadline:
    time.sleep(0.01)
time.sleep(1.0)  # Saving; any further SIGTERM would be counted.
open(out, "w").write(str(len(got)))
sys.exit(143 if got else 0)
"""


def test_stopping_a_local_job_gives_the_binary_exactly_one_sigterm(tmp_path):
    out = str(tmp_path / "signals")
    launcher = LocalLauncher(str(tmp_path / "submitit"), LaunchOptions(max_parallel=2))
    job = BinaryJob((sys.executable, "-c", FAKE_BINARY, out), str(tmp_path), str(tmp_path / "run.log"))
    (handle,) = launcher.submit([("run", job)])
    deadline = time.time() + 60
    while not os.path.exists(out + ".ready") and time.time() < deadline:
        time.sleep(0.05)
    launcher.stop(handle)
    time.sleep(0.2)
    launcher.stop(handle)  # Ctrl-C and SIGTERM both reach the job: the binary still gets one.
    while not handle.done() and time.time() < deadline:
        time.sleep(0.05)
    assert handle.result() == 143 and _read(out) == "1"
    assert "sweep launch:" in _read(tmp_path / "run.log")


def test_on_slurm_the_pre_timeout_usr2_reaches_the_binary_as_one_sigterm(tmp_path):
    out = str(tmp_path / "signals")
    job = BinaryJob((sys.executable, "-c", FAKE_BINARY, out), str(tmp_path), str(tmp_path / "run.log"),
                    own_session=False, forward=(int(signal.SIGUSR2),))
    code = f"import sys; from libs.train.sweep_executors import BinaryJob; sys.exit({job!r}())"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, start_new_session=True)
    deadline = time.time() + 60
    while not os.path.exists(out + ".ready") and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGUSR2)  # As SLURM does: to every process of the job, the binary included.
    assert proc.wait(timeout=60) == 143 and _read(out) == "1"


def test_local_gpu_sets_are_disjoint(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4")
    assert _gpu_groups(2, 8) == [["0", "1"], ["2", "3"]] and _gpu_groups(1, 2) == [["0"], ["1"]]
    assert _gpu_groups(0, 4) == []
    with pytest.raises(UserError, match="only 5 GPU"):
        _gpu_groups(6, 1)


def test_slurm_jobs_are_one_array_with_the_requested_resources(tmp_path):
    from submitit.core import submission
    from submitit.slurm.test_slurm import mocked_slurm

    options = LaunchOptions(executor="slurm", max_parallel=2, timeout_min=30, gpus_per_run=1, cpus_per_run=4,
                            slurm_partition="gpu", slurm_extra=(("account", "lab"),))
    with mocked_slurm() as mock:
        launcher = SlurmLauncher(str(tmp_path / "submitit"), options, "sweep_x")
        jobs = [(f"r{i}", BinaryJob((sys.executable, "-c", f"print('run {i}')"), str(tmp_path),
                                    str(tmp_path / f"r{i}.log"), own_session=False, forward=(signal.SIGUSR2,)))
                for i in range(3)]
        handles = launcher.submit(jobs)
        sbatch = handles[0].paths.submission_file.read_text()
        for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                     "#SBATCH --cpus-per-task=4", "#SBATCH --time=30", "#SBATCH --account=lab",
                     "#SBATCH --job-name=sweep_x"):
            assert line in sbatch, (line, sbatch)
        with mock.job_context(handles[1].job_id):  # What a node runs: the pickled job.
            submission.process_job(handles[1].paths.folder)
    assert handles[1].result() == 0 and "run 1" in _read(tmp_path / "r1.log")


def test_slurm_without_a_cluster_is_one_line(tmp_path):
    code = sweep.launch_sweep(str(tmp_path), LaunchOptions(executor="slurm"), binary="experiments.speedrun",
                              gin_files=[SMOKE], gin_bindings=[], sweeps=["A.x=[1]"])
    assert code == 2 and not os.path.exists(tmp_path / "x=1")


FAKE_MODULE = r"""
import signal, sys, time
from libs.train import rundir
workdir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir="))
mode = next(a.split("= ", 1)[1] for a in sys.argv if a.startswith("--gin_bindings=A.mode"))
run = rundir.RunDir(workdir)
with run.lock():
    if mode == "'hang'":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # Never stops by itself.
        run.write_status("running")
        time.sleep(600)
    if mode == "'fail'":
        print("Traceback (most recent call last):\nValueError: fake failure", file=sys.stderr)
        run.write_status("failed", error="ValueError: fake failure")
        sys.exit(1)
    run.write_status("finished", result={"val_loss": 1.5, "step": 3, "train_time_s": 0.1})
"""


def _fake_sweep(tmp_path, monkeypatch, modes, **options):
    (tmp_path / "fake_binary.py").write_text(FAKE_MODULE)
    monkeypatch.chdir(tmp_path)  # Runs start in the sweep's working directory, where `-m fake_binary` is.
    return sweep.launch_sweep(str(tmp_path / "sweep"), LaunchOptions(max_parallel=2, poll_s=0.1, **options),
                              binary="fake_binary", gin_files=[], gin_bindings=[], sweeps=[f"A.mode={modes}"])


def test_failed_runs_give_exit_1_and_are_flagged_in_the_table(tmp_path, monkeypatch):
    assert _fake_sweep(tmp_path, monkeypatch, "['ok', 'fail']") == 1
    md = _read(tmp_path / "sweep" / "results.md")
    assert "| `mode=ok` | ok | finished | 1.5000 | 3 |" in md and "| `mode=fail` | fail | **failed** |" in md
    assert "error: ValueError: fake failure" in md and "Traceback (most recent call last):" in md
    jobs = rundir.read_jsonl(str(tmp_path / "sweep" / "jobs.jsonl"))
    assert sorted((j["run"], j["exit_code"], j["status"]) for j in jobs) == [("mode=fail", 1, "failed"),
                                                                             ("mode=ok", 0, "finished")]


def test_a_run_that_ignores_sigterm_is_killed_after_the_stop_timeout(tmp_path, monkeypatch):
    status = tmp_path / "sweep" / "mode=hang" / "status.json"

    def stop_once_running():
        deadline = time.time() + 60
        while not status.exists() and time.time() < deadline:
            time.sleep(0.05)
        rundir.request_stop()

    threading.Thread(target=stop_once_running, daemon=True).start()
    started = time.time()
    assert _fake_sweep(tmp_path, monkeypatch, "['hang']", stop_timeout_s=1.0) == 128 + signal.SIGTERM
    assert time.time() - started < 30 and not _processes_mentioning(str(tmp_path / "sweep"))
    rundir.reset_stop()


# --- end to end: a real sweep, SIGTERM mid-way, rerun ------------------------------------------------


E2E_BINDINGS = ["GPTConfig.num_layers = 1", "train.global_batch_size = 4", "train.total_steps = 300",
                "train.log_every = 10", "train.eval_every = 150", "train.val_tokens = 2048",
                "train.val_batch_size = 4", "train.plot = False", "Checkpointer.every_steps = 0"]


def _status(workdir):
    path = os.path.join(workdir, "status.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _train_steps(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    return [r["step"] for r in rundir.read_jsonl(path) if r["kind"] == "train"] if os.path.exists(path) else []


def _processes_mentioning(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.slow
def test_sweep_stopped_by_sigterm_resumes_without_training_anything_twice(tmp_path):
    sweep_dir = str(tmp_path / "ablation")
    cmd = [sys.executable, "-m", "tools.sweep", "--binary=experiments.speedrun", "--gin_file=" + SMOKE,
           *(f"--gin_bindings={b}" for b in E2E_BINDINGS), "--sweep=make_optimizer.adam_lr=[0.003, 0.01]",
           "--seeds=2", f"--sweep_dir={sweep_dir}", "--executor=local", "--max_parallel=2", "--metric=val_loss"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    names = ["adam_lr=0.003,seed=0", "adam_lr=0.003,seed=1", "adam_lr=0.01,seed=0", "adam_lr=0.01,seed=1"]
    workdirs = {n: os.path.join(sweep_dir, n) for n in names}

    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # Stop once a run finished and another is training.
        finished = [n for n in names if (_status(workdirs[n]) or {}).get("status") == "finished"]
        training = [n for n in names if n not in finished and 20 <= max(_train_steps(workdirs[n]), default=0) < 150]
        if finished and training:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted:") and "rerun the same command" in err
    assert not _processes_mentioning(sweep_dir)  # No training process outlives the sweep.
    finished = [n for n in names if (_status(workdirs[n]) or {}).get("status") == "finished"]  # (one more may have)
    before = {n: _read(os.path.join(workdirs[n], "status.json")) for n in finished}
    stopped = {n: _status(workdirs[n]) for n in names if n not in finished and _status(workdirs[n])}
    assert training[0] in stopped and all(s["status"] == "interrupted" for s in stopped.values()), stopped
    assert stopped[training[0]]["result"]["step"] >= 20  # It saved mid-training.
    assert "results.md" in out

    rerun = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(finished)} of 4 runs already finished; skipped" in rerun.stderr
    with open(os.path.join(sweep_dir, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["run"] for r in rows) == names and all(r["status"] == "finished" for r in rows)
    losses = [float(r["val_loss"]) for r in rows]
    assert losses == sorted(losses) and all(2.0 < v < 6.0 for v in losses)
    assert f"best: {rows[0]['run']} val_loss=" in rerun.stdout
    assert os.path.getsize(os.path.join(sweep_dir, "results.png")) > 5000

    for n in finished:  # Finished before the kill: not launched again.
        assert _read(os.path.join(workdirs[n], "status.json")) == before[n]
        summaries = [r for r in rundir.read_jsonl(os.path.join(workdirs[n], "metrics.jsonl")) if r["kind"] == "summary"]
        assert len(summaries) == 1 and summaries[0]["status"] == "complete"
    for n, status in stopped.items():  # Interrupted: resumed from the checkpoint its SIGTERM saved.
        launches = _read(os.path.join(workdirs[n], "run.log")).split("sweep launch:")
        assert len(launches) == 3, n  # (text before the first header, then one part per launch)
        assert f"resuming from step {status['result']['step']} in" in launches[2], n
    for n in names:  # And no step was trained (logged) twice anywhere.
        steps = _train_steps(workdirs[n])
        assert len(steps) == len(set(steps)) and max(steps) == 300, (n, steps)
