"""tools/ppo_cartpole: a short run's report, and a bad config in one line."""

from __future__ import annotations

from tests.conftest import run_binary


def test_short_run_reports_each_seed_and_fails_the_target():
    out = run_binary("tools.ppo_cartpole", "--seeds=0,1", "--gin_bindings=ppo.total_env_steps = 4096",
                     "--window=2048")
    assert out.returncode == 1, out.stderr[-2000:]  # 4k steps are far too few to solve CartPole
    assert "ppo_cartpole: 4,096 env steps per seed" in out.stdout
    assert out.stdout.count("seed ") == 2 and "FAIL (target 475)" in out.stdout


def test_bad_binding_is_one_line():
    out = run_binary("tools.ppo_cartpole", "--gin_bindings=ppo.num_minibatches = 3")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "error: ppo.num_minibatches=3 does not divide the batch num_envs x num_steps = 512")
