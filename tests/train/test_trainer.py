"""End-to-end runs of the speedrun binary: learning, SIGKILL + resume, NaN stop."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from libs.train import metrics
from tests.conftest import REPO_ROOT, run_binary

SMOKE = "--gin_file=configs/speedrun/smoke.gin"


def _train_losses(workdir):
    return {r["step"]: r["loss"] for r in metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "train")}


def test_smoke_run_learns_and_reports(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_binary("experiments.speedrun", SMOKE, "--gin_bindings=train.total_steps = 60",
                      "--gin_bindings=train.eval_every = 20", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    val = [r["loss"] for r in metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "val")]
    assert len(val) == 4 and val[-1] < val[0] - 1.0, val  # From ~5.8 (untrained) down by well over a nat,
    assert val[-1] < val[1], val  # and still falling after the first evaluation.
    assert "step 60/60 | loss" in proc.stderr and "tok/s" in proc.stderr and "ETA" in proc.stderr
    for name in ("config.gin", "loss.png", "metrics.jsonl"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    summary = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "summary")[-1]
    assert summary["status"] == "complete" and summary["tokens_seen"] == 60 * 16 * 128


@pytest.mark.slow
def test_target_is_timed_at_its_first_crossing_and_over_the_full_schedule(tmp_path):
    workdir = str(tmp_path / "run")
    args = [SMOKE, "--gin_bindings=train.total_steps = 100", "--gin_bindings=train.eval_every = 10",
            "--gin_bindings=train.target_val_loss = 4.0"]
    proc = run_binary("experiments.speedrun", *args, f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "summary")[-1]
    assert summary["status"] == "complete" and summary["step"] == 100  # The records were timed over full runs,
    assert summary["target_step"] < 100 and 0 < summary["target_train_time_s"] < summary["train_time_s"]  # ...
    assert "target validation loss 4.0000 first reached" in proc.stderr  # ... and the first crossing is kept.
    stopped = run_binary("experiments.speedrun", *args, "--gin_bindings=train.stop_at_target = True",
                         f"--workdir={tmp_path / 'stop'}")
    summary = metrics.read_metrics(str(tmp_path / "stop" / "metrics.jsonl"), "summary")[-1]
    assert stopped.returncode == 0 and summary["status"] == "target" and summary["step"] == summary["target_step"]


PACKED = ["--gin_file=configs/speedrun/record_13.gin", "--gin_file=configs/speedrun/cpu_scale.gin",
          "--gin_bindings=GPTConfig.max_seq_len = 256", "--gin_bindings=train.val_tokens = 4096",
          "--gin_bindings=train.eval_every = 3", "--gin_bindings=train.log_every = 3"]


def test_packed_windowed_run_validates_on_longer_rows(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_binary("experiments.speedrun", *PACKED, "--gin_bindings=train.total_steps = 6",
                      "--gin_bindings=train.val_seq_len = 256", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    val = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "val")
    assert [r["step"] for r in val] == [0, 3, 6] and all(np.isfinite(r["loss"]) for r in val)
    assert "validation step 6: loss" in proc.stderr and "(1 batches)" in proc.stderr  # 4096 tokens = 16 x 256
    too_long = run_binary("experiments.speedrun", *PACKED, "--gin_bindings=train.val_seq_len = 512",
                          f"--workdir={tmp_path / 'bad'}")
    assert too_long.returncode == 2
    assert "train.val_seq_len=512 exceeds GPTConfig.max_seq_len=256" in too_long.stderr.strip().splitlines()[-1]


RESUME_ARGS = [SMOKE, "--gin_bindings=train.total_steps = 40", "--gin_bindings=train.log_every = 1",
               "--gin_bindings=train.eval_every = 0", "--gin_bindings=Checkpointer.every_steps = 10"]


def test_sigkill_and_resume_reproduce_the_uninterrupted_losses(tmp_path):
    ref_dir, run_dir = str(tmp_path / "ref"), str(tmp_path / "killed")
    ref = run_binary("experiments.speedrun", *RESUME_ARGS, f"--workdir={ref_dir}")
    assert ref.returncode == 0, ref.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, "-m", "experiments.speedrun", *RESUME_ARGS, f"--workdir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and max(_train_losses(run_dir), default=0) < 25:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # Mid-run: checkpoints 10 and 20 exist, step 25+ is in flight.
    proc.wait()
    killed_at = max(_train_losses(run_dir))
    assert 25 <= killed_at < 40, killed_at
    events = glob.glob(os.path.join(run_dir, "tensorboard", "events.*"))
    assert events and os.path.getsize(events[0]) > 1000  # Flushed per write: a SIGKILL loses at most the last.

    resumed = run_binary("experiments.speedrun", *RESUME_ARGS, f"--workdir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step" in resumed.stderr
    expected, got = _train_losses(ref_dir), _train_losses(run_dir)
    assert sorted(got) == list(range(1, 41))
    np.testing.assert_allclose([got[s] for s in range(1, 41)], [expected[s] for s in range(1, 41)], rtol=1e-6)


def test_nan_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_binary("experiments.speedrun", SMOKE, "--gin_bindings=train.total_steps = 50",
                      "--gin_bindings=train.log_every = 1", "--gin_bindings=Checkpointer.every_steps = 1",
                      "--gin_bindings=make_optimizer.adam_lr = 1e12", "--gin_bindings=make_optimizer.grad_clip = 0.0",
                      "--gin_bindings=lr_schedule.warmup_fraction = 0.0", f"--workdir={workdir}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: non-finite loss or gradient at step") and "Last good checkpoint: step" in last
    good = int(last.split("Last good checkpoint: step ")[1].split()[0])
    steps = sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(workdir, "checkpoints", "[0-9]*")))
    assert steps and steps[-1] == good
    bad = int(last.split("at step ")[1].split()[0])
    assert good < bad
