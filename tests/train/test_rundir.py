"""The run-directory discipline: one process per workdir, status, torn JSONL, interruption, corrupt checkpoints."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from libs.train import metrics, rundir
from libs.train.errors import UserError
from tests.conftest import REPO_ROOT, run_binary

SMOKE = "--gin_file=configs/speedrun/smoke.gin"
RESUME = [SMOKE, "--gin_bindings=train.total_steps = 40", "--gin_bindings=train.log_every = 1",
          "--gin_bindings=train.eval_every = 0", "--gin_bindings=Checkpointer.every_steps = 10"]


def _losses(workdir):
    return {r["step"]: r["loss"] for r in metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "train")}


def _status(workdir):
    with open(os.path.join(workdir, "status.json")) as f:
        return json.load(f)


# --- JSONL ------------------------------------------------------------------------------------


def test_appends_never_glue_onto_a_torn_line_and_readers_skip_only_a_torn_last_line(tmp_path):
    path = str(tmp_path / "log.jsonl")
    rundir.append_jsonl(path, {"a": 1})
    with open(path, "a") as f:
        f.write('{"a": 2, "cut sh')  # A kill in the middle of a write.
    assert rundir.read_jsonl(path) == [{"a": 1}]
    rundir.append_jsonl(path, {"a": 3})
    assert rundir.read_jsonl(path) == [{"a": 1}, {"a": 3}]
    with open(path) as f:
        assert f.read() == '{"a":1}\n{"a":3}\n'
    with open(path, "w") as f:
        f.write('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(UserError, match="log.jsonl: line 2 is corrupt"):
        rundir.read_jsonl(path)


def test_a_corrupt_middle_line_of_a_search_journal_is_an_error_not_a_silent_replay(tmp_path):
    from libs.search.tree import Journal  # pylint: disable=import-outside-toplevel

    path = tmp_path / "journal.jsonl"
    path.write_text('{"event":"node","id":0}\n{"event": oops\n{"event":"node","id":1}\n')
    with pytest.raises(UserError, match="journal.jsonl: line 2 is corrupt"):
        Journal(str(path)).read()
    path.write_text('{"event":"node","id":0}\n{"event":"nod')  # A torn last line is cut away.
    assert Journal(str(path)).read() == [{"event": "node", "id": 0}] and path.read_text().endswith("}\n")


# --- the workdir -------------------------------------------------------------------------------


def test_a_second_process_on_a_workdir_gets_one_line_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from libs.train import rundir\n"
        f"with rundir.RunDir({str(tmp_path)!r}).lock():\n    print('locked', flush=True); time.sleep(60)")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = run_binary("experiments.speedrun", SMOKE, f"--workdir={tmp_path}")
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and f"is in use by pid {holder.pid}" in last and "Traceback" not in proc.stderr
        assert not os.path.exists(tmp_path / "config.gin")  # The second process wrote nothing.
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_an_unusable_workdir_is_one_line(kind, tmp_path):
    workdir = tmp_path / "a_file" if kind == "file" else "/proc/nope"
    if kind == "file":
        workdir.write_text("")
    proc = run_binary("experiments.speedrun", SMOKE, f"--workdir={workdir}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot use --workdir={workdir}")


def test_only_key_like_values_count_as_secrets():
    from libs.train.launch import _SECRET  # pylint: disable=protected-access,import-outside-toplevel

    assert _SECRET.search("LLMConfig.api_key_env = 'sk-proj-abcdefghijklmnop1234567890'")
    assert _SECRET.search('headers = {"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz"}')
    assert not _SECRET.search('run.tasks = ["task-abcdefghijklmnopqrstu"]')  # "sk-" inside a word
    assert not _SECRET.search("LLMConfig.api_key_env = 'OPENAI_API_KEY'")


def test_a_key_in_the_config_is_refused_before_any_file_is_written(tmp_path):
    proc = run_binary("experiments.lfs", "--gin_file=configs/lfs/llm.gin", f"--workdir={tmp_path / 'run'}",
                      "--gin_bindings=LLMConfig.api_key_env = 'sk-proj-abcdefghijklmnop1234567890'")
    assert proc.returncode == 2 and "looks like a secret" in proc.stderr and "abcdefghijklmnop" not in proc.stderr
    assert not os.path.exists(tmp_path / "run")


def test_rerunning_a_finished_run_reports_it_and_changes_nothing(tmp_path):
    workdir = str(tmp_path / "run")
    args = [SMOKE, "--gin_bindings=train.total_steps = 20", "--gin_bindings=train.eval_every = 10"]
    first = run_binary("experiments.speedrun", *args, f"--workdir={workdir}")
    assert first.returncode == 0, first.stderr[-2000:]
    status = _status(workdir)
    assert status["status"] == "finished" and status["result"]["status"] == "complete"
    files = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(workdir, "**"), recursive=True)}
    again = run_binary("experiments.speedrun", *args, f"--workdir={workdir}")
    assert again.returncode == 0 and "already finished" in again.stdout and "val_loss=" in again.stdout
    assert files == {p: os.path.getmtime(p) for p in glob.glob(os.path.join(workdir, "**"), recursive=True)}


# --- interruption ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_sigterm_and_ctrl_c_save_a_checkpoint_and_the_rerun_reproduces_the_losses(signum, code, tmp_path):
    ref_dir, run_dir = str(tmp_path / "ref"), str(tmp_path / "stopped")
    ref = run_binary("experiments.speedrun", *RESUME, f"--workdir={ref_dir}")
    assert ref.returncode == 0, ref.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.Popen([sys.executable, "-m", "experiments.speedrun", *RESUME, f"--workdir={run_dir}"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and max(_losses(run_dir), default=0) < 13:
        time.sleep(0.02)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in stderr, stderr[-3000:]
    stopped_at = max(_losses(run_dir))
    steps = sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(run_dir, "checkpoints", "[0-9]*")))
    assert 13 <= stopped_at < 40 and steps[-1] == stopped_at  # A checkpoint at the step it stopped.
    assert _status(run_dir)["status"] == "interrupted" and _status(run_dir)["result"]["status"] == "interrupted"
    assert os.path.getsize(glob.glob(os.path.join(run_dir, "tensorboard", "events.*"))[0]) > 0
    resumed = run_binary("experiments.speedrun", *RESUME, f"--workdir={run_dir}")
    assert resumed.returncode == 0 and f"resuming from step {stopped_at}" in resumed.stderr
    expected, got = _losses(ref_dir), _losses(run_dir)
    np.testing.assert_allclose([got[s] for s in range(1, 41)], [expected[s] for s in range(1, 41)], rtol=1e-6)


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate_arrays", "remove_state", "empty_folder"])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(damage, tmp_path):
    workdir = str(tmp_path / "run")
    args = [*RESUME[:1], "--gin_bindings=train.total_steps = 20", *RESUME[2:]]
    first = run_binary("experiments.speedrun", *args, f"--workdir={workdir}")
    assert first.returncode == 0, first.stderr[-3000:]
    latest = os.path.join(workdir, "checkpoints", "20")
    if damage == "truncate_arrays":
        for path in glob.glob(os.path.join(latest, "state", "**", "*"), recursive=True):
            if os.path.isfile(path) and os.path.getsize(path) > 1000:
                with open(path, "r+b") as f:
                    f.truncate(100)
    elif damage == "remove_state":
        shutil.rmtree(os.path.join(latest, "state"))
    else:
        shutil.rmtree(latest)
        os.makedirs(latest)
    os.remove(os.path.join(workdir, "status.json"))  # Run it again, as after a crash.
    again = run_binary("experiments.speedrun", *[a.replace("= 20", "= 30") for a in args], f"--workdir={workdir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from step 10" in again.stderr and "Traceback" not in again.stderr


def test_a_failed_asynchronous_save_stops_the_run_with_a_clear_error(tmp_path, monkeypatch):
    from libs.train import checkpoint  # pylint: disable=import-outside-toplevel

    ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=1)
    monkeypatch.setattr(ckpt._manager, "check_for_errors",  # pylint: disable=protected-access
                        lambda: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(UserError, match="saving a checkpoint to .* failed: .*No space left on device"):
        ckpt.save(5, {"x": np.zeros(3)}, {})


def test_a_shard_truncated_while_in_use_is_a_clear_error_not_a_bus_error(tmp_path):
    from libs.train import data, shards  # pylint: disable=import-outside-toplevel

    path = tmp_path / "fineweb_train_000001.bin"
    shards.write_shard(path, np.arange(5000, dtype=np.uint16))
    stream = data.TokenStream(str(path))
    assert stream.read(0, 10).tolist() == list(range(10))
    with open(path, "r+b") as f:
        f.truncate(shards.HEADER_BYTES + 2000)
    with pytest.raises(shards.ShardError, match="truncated or replaced while in use"):
        stream.read(4000, 10)
    stream.close()
