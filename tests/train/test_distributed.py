"""Multi-process runs: topology detection, 2 CPU processes on 127.0.0.1 against 1, failure, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from libs.train import distributed
from libs.train.errors import UserError
from tools import launch_local

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_ARGS = ["-m", "experiments.speedrun", "--gin_file=configs/speedrun/smoke.gin",
              "--gin_bindings=train.total_steps = 16", "--gin_bindings=train.log_every = 1",
              "--gin_bindings=train.eval_every = 8", "--gin_bindings=train.plot = False",
              "--gin_bindings=Checkpointer.every_steps = 4"]


# --- topology ------------------------------------------------------------------------------------------------


def test_no_launcher_means_one_process():
    assert not distributed.detect(environ={}).multi_process


def test_topology_from_this_projects_variables():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    topology = distributed.detect(environ=env)
    assert (topology.coordinator_address, topology.num_processes, topology.process_id) == ("10.0.0.1:1234", 4, 3)
    assert topology.multi_process


def test_explicit_settings_win_over_the_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    topology = distributed.detect("host:99", 2, 1, environ=env)
    assert (topology.coordinator_address, topology.num_processes, topology.process_id, topology.source) == (
        "host:99", 2, 1, "flags")


def test_cluster_launchers_are_left_to_jax():
    assert distributed.detect(environ={"SLURM_STEP_NUM_TASKS": "8"}).source.startswith("cluster launcher")
    assert distributed.detect(environ={"OMPI_COMM_WORLD_SIZE": "2"}).multi_process
    assert distributed.detect(environ={"TPU_WORKER_HOSTNAMES": "a,b,c,d"}).source == "TPU pod slice (4 hosts)"
    assert not distributed.detect(environ={"SLURM_STEP_NUM_TASKS": "1"}).multi_process
    assert not distributed.detect(environ={"TPU_WORKER_HOSTNAMES": "localhost"}).multi_process


def test_one_process_count_is_single_process():
    assert not distributed.detect(environ={"JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}).multi_process


@pytest.mark.parametrize("env, culprit", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2", "JAX_COORDINATOR_ADDRESS": "h:1"}, "process_id=2"),
    ({"JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES='two'"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "coordinator"),
])
def test_bad_topology_is_one_clear_error(env, culprit):
    with pytest.raises(UserError, match=culprit):
        distributed.detect(environ=env)


def test_launch_helper_gives_each_process_its_id():
    env = launch_local.process_env(1, 2, 4321, devices=3)
    assert (env["JAX_COORDINATOR_ADDRESS"], env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"]) == (
        "127.0.0.1:4321", "2", "1")
    assert env["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=3")


# --- real processes ------------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "XLA_FLAGS"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _losses(workdir) -> dict[tuple[str, int], float]:
    """(kind, step) -> loss of every train and validation record (the last one where a resume repeats it)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return {(r["kind"], r["step"]): r["loss"] for r in records if r["kind"] in ("train", "val")}


def _launch(workdir, *extra, timeout=240):
    command = [sys.executable, "-m", "tools.launch_local", "--processes=2", f"--logs={workdir}/logs", "--",
               sys.executable, *TRAIN_ARGS, f"--workdir={workdir}", *extra]
    return subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    """The reference: one process with 2 (fake CPU) devices, the same global batch and mesh shape."""
    workdir = tmp_path_factory.mktemp("one_process")
    proc = subprocess.run([sys.executable, *TRAIN_ARGS, f"--workdir={workdir}"], cwd=REPO, capture_output=True,
                          text=True, timeout=240, check=False,
                          env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _losses(workdir)


def test_two_processes_train_like_one(one_process_run, tmp_path):
    proc = _launch(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    two = _losses(tmp_path)
    assert sorted(two) == sorted(one_process_run) and len(two) == 16 + 3  # 16 steps, 3 validations
    for step, loss in one_process_run.items():
        assert two[step] == pytest.approx(loss, rel=2e-5, abs=2e-5), step
    # Only process 0 writes: one status, one metrics file, one config; process 1 holds its own lock.
    assert sorted(os.listdir(tmp_path)) == [".lock", ".lock.1", "checkpoints", "config.gin", "logs",
                                            "metrics.jsonl", "status.json", "tensorboard"]
    with open(tmp_path / "logs" / "process_1.log") as f:
        assert "step 16/16" not in f.read()  # its progress lines are silenced


@pytest.mark.slow
def test_interrupted_two_process_run_resumes_from_its_checkpoint(one_process_run, tmp_path):
    command = [sys.executable, "-m", "tools.launch_local", "--processes=2", f"--logs={tmp_path}/logs", "--",
               sys.executable, *TRAIN_ARGS, f"--workdir={tmp_path}"]
    proc = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    for line in proc.stdout:  # process 0's lines: stop once a few steps are done
        if "step 5/16" in line:
            proc.send_signal(signal.SIGTERM)
            break
    proc.stdout.read()
    assert proc.wait(timeout=120) == 143
    with open(tmp_path / "status.json") as f:
        stopped_at = json.load(f)["result"]["step"]
    assert 5 <= stopped_at < 16
    rerun = _launch(tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"resuming from step {stopped_at}" in rerun.stdout + rerun.stderr
    losses = _losses(tmp_path)
    for step in range(stopped_at + 1, 17):  # the resumed steps are those of the uninterrupted run
        key = ("train", step)
        assert losses[key] == pytest.approx(one_process_run[key], rel=2e-5, abs=2e-5), step


def _start(workdir, process_id: int, port: int, *extra: str) -> subprocess.Popen:
    env = _env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(process_id))
    args = [sys.executable, *TRAIN_ARGS, "--gin_bindings=train.total_steps = 5000",
            "--gin_bindings=train.eval_every = 0", f"--workdir={workdir}", *extra]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("victim", [pytest.param(0, marks=pytest.mark.slow), 1])
def test_a_dead_process_stops_the_other_with_one_line(tmp_path, victim):
    port = launch_local.free_port()
    procs = [_start(tmp_path, i, port, "--gin_bindings=timeouts.heartbeat_timeout_s = 20") for i in (0, 1)]
    for line in procs[0].stdout:
        if "step 3/5000" in line:
            break
    procs[victim].kill()
    t0 = time.monotonic()
    survivor = procs[1 - victim]
    output = survivor.communicate(timeout=60)[0]
    assert survivor.returncode == 1, output[-2000:]
    assert time.monotonic() - t0 < 30
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "another process of this 2-process run failed" in errors[0], output[-2000:]
    assert "Traceback" not in output
    procs[victim].communicate()


def test_a_process_that_never_joins_is_named_within_the_bound(tmp_path):
    proc = _start(tmp_path, 1, launch_local.free_port(), "--gin_bindings=timeouts.join_timeout_s = 4")
    t0 = time.monotonic()
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1
    assert 4 <= time.monotonic() - t0 < 30
    assert output.strip().splitlines()[-1].startswith("error: could not join the 2-process run"), output[-2000:]


def test_launch_helper_names_a_command_it_cannot_start(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.launch_local", f"--logs={tmp_path}", "--", "/nonexistent/x"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: cannot start")
