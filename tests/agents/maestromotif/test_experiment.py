"""The MaestroMotif pipeline: event pooling, rewards per skill over a rollout, and the binary end to end."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from libs.agents.maestromotif import collect, training
from libs.envs.nethack import captions
from tests.conftest import REPO_ROOT, run_binary

SMOKE = "--gin_file=configs/maestromotif/smoke.gin"


def _message(text: str) -> np.ndarray:
    out = np.zeros(256, np.uint8)
    out[:len(text)] = np.frombuffer(text.encode(), np.uint8)
    return out


def test_event_pool_counts_distinct_events_and_round_trips(tmp_path):
    pool = collect.EventPool()
    wall, down = _message("It's solid stone."), _message("")
    pool.add(wall, np.zeros(5, np.float32))
    pool.add(wall, np.zeros(5, np.float32))
    pool.add(down, np.array([1, 0, 0, 0, 0], np.float32))
    assert len(pool) == 2 and pool.counts == [2, 1]
    assert pool.caption(1) == captions.caption("", np.array([1, 0, 0, 0, 0], np.float32))
    path = str(tmp_path / "events.npz")
    pool.save(path, steps_done=123)
    again, steps = collect.EventPool.load(path)
    assert steps == 123 and again.counts == [2, 1] and (again.messages[0] == wall).all()
    pairs = collect.draw_pairs(str(tmp_path), again, collect.CollectConfig(num_pairs=50))
    assert pairs.shape == (50, 2) and (pairs[:, 0] != pairs[:, 1]).all()


class _ScaledModel:
    """A reward model double: the reward is 10 x the depth change (so only descents score)."""

    mean, std = 0.0, 1.0

    def __init__(self):
        self.calls = 0

    def apply(self, messages, diffs):
        self.calls += 1
        return 10.0 * np.asarray(diffs)[:, 0]

    def threshold(self, q):
        return 0.5


def test_intrinsic_rewards_use_each_skills_model_only_on_its_own_valid_transitions():
    model = _ScaledModel()
    config = training.SkillTrainingConfig(llm_coef=0.1, beta=3.0)
    rewards = training.IntrinsicRewards({"descender": model}, config)
    t, n = 2, 3
    skill_ids = np.full((t, n), training.SKILLS.index("descender"), np.int32)
    skill_ids[0, 2] = training.SKILLS.index("discoverer")  # no model for it: no reward
    messages = np.zeros((t, n, 256), np.uint8)
    diffs = np.zeros((t, n, 5), np.float32)
    diffs[:, :, 0] = 1.0  # every transition went down a level
    valid = np.ones((t, n), bool)
    valid[1, 0] = False  # ended its episode: no model reward
    counts = np.ones((t, n), np.float32)
    counts[1, 1] = 2.0  # the second time this message was seen
    out, stats = rewards.shape(skill_ids, messages, diffs, valid, counts, np.zeros((t, n), np.float32))
    np.testing.assert_allclose(out, [[1.0, 1.0, 0.0], [0.0, 1.0 / 8, 1.0]], rtol=1e-6)
    assert stats["descender/rm_reward"] == pytest.approx(10.0)
    rewards.shape(skill_ids, messages, diffs, valid, counts, np.zeros((t, n), np.float32))
    assert model.calls == 1  # the second rollout's events were all cached


def test_bad_phase_is_a_one_line_error(tmp_path):
    proc = run_binary("experiments.maestromotif", SMOKE, "--gin_bindings=maestromotif.phases = ['colect']",
                      f"--workdir={tmp_path}")
    assert proc.returncode == 2 and "colect" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]


def test_train_before_rewards_is_a_one_line_error(tmp_path):
    proc = run_binary("experiments.maestromotif", SMOKE, "--gin_bindings=maestromotif.phases = ['train']",
                      f"--workdir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if not line.startswith(("I", "W"))]
    assert errors == [errors[0]] and "run the phases collect, annotate and rewards first" in errors[0], proc.stderr


@pytest.mark.slow
def test_smoke_run_end_to_end_then_rerun_changes_nothing(tmp_path):
    proc = run_binary("experiments.maestromotif", SMOKE, f"--workdir={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("events.npz", "pairs.npz", "annotations/descender.rule_based.jsonl",
                 "reward_models/descender.rule_based/reward_model.json", "policy/metrics.jsonl", "results.md"):
        assert (tmp_path / name).exists(), name
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["annotator"] == "rule-based stand-in annotator"
    for policy in ("descender", "random"):
        rate = results[f"descender_check/{policy}"]
        assert rate["episodes"] == 8 and 0.0 <= rate["low"] <= rate["rate"] <= rate["high"] <= 1.0
    assert "rule-based stand-in" in (tmp_path / "results.md").read_text()
    before = {p: os.path.getmtime(tmp_path / p) for p in ("results.json", "events.npz")}
    again = run_binary("experiments.maestromotif", SMOKE, f"--workdir={tmp_path}")
    assert again.returncode == 0 and "already finished" in again.stdout
    assert before == {p: os.path.getmtime(tmp_path / p) for p in before}


@pytest.mark.slow
def test_sigterm_during_training_saves_and_a_relaunch_resumes(tmp_path):
    args = [sys.executable, "-m", "experiments.maestromotif", SMOKE, f"--workdir={tmp_path}",
            "--gin_bindings=ppo.total_env_steps = 20480", "--gin_bindings=maestromotif.phases = "
            "['collect', 'annotate', 'rewards', 'train']"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "policy" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "interrupted"
    stopped_at = json.loads(metrics.read_text().splitlines()[-1])["step"]
    again = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming at update" in again.stderr
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps[-1] == 20480 // (8 * 16) and min(s for s in steps if s > stopped_at) > stopped_at
