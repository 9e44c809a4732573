"""The jitted PPO loop: CartPole-v1 solved with purejaxrl's defaults (the known-answer check)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from libs.envs.cartpole import CartPole
from libs.rl import networks, ppo, purejax


def test_cartpole_solved_with_purejaxrl_defaults():
    # 500k env steps, 4 envs x 128 steps, 4 epochs x 4 minibatches, LR 2.5e-4 annealed: ~3 s a seed on CPU.
    config, env = ppo.PPOConfig(), CartPole()
    assert (config.total_env_steps, config.num_envs, config.num_steps, config.lr) == (500_000, 4, 128, 2.5e-4)
    train = jax.jit(purejax.make_train_fn(config, env, networks.MLPActorCritic(env.num_actions)))
    for seed in (0, 1):
        metrics = jax.device_get(train(jax.random.key(seed))["metrics"])
        assert metrics["env_steps"][-1] == config.num_updates * config.batch_size
        early = purejax.recent_return({k: v[:20] for k, v in metrics.items()}, 10_240)
        assert early < 100  # it starts unsolved (a random policy averages ~22)
        assert purejax.recent_return(metrics, 25_000) >= 475, f"seed {seed}"


def test_make_train_is_deterministic_in_its_seed():
    config = ppo.PPOConfig(num_envs=2, num_steps=8, total_env_steps=64, num_minibatches=2, update_epochs=1)
    env = CartPole(max_steps=5)
    net = networks.MLPActorCritic(env.num_actions, hidden=(8,))
    a, b = purejax.make_train(config, env, net, seed=3)(), purejax.make_train(config, env, net, seed=3)()
    c = purejax.make_train(config, env, net, seed=4)()
    np.testing.assert_array_equal(a["metrics"]["loss"], b["metrics"]["loss"])
    assert not np.array_equal(a["metrics"]["loss"], c["metrics"]["loss"])
    # With a 5-step limit every episode lasts at most 5 steps and returns its length.
    returns = np.asarray(a["metrics"]["mean_episode_return"])
    assert np.all((returns[~np.isnan(returns)] >= 1) & (returns[~np.isnan(returns)] <= 5))
    assert int(a["metrics"]["episodes"].sum()) >= 64 // 5


def test_recent_return_weights_by_episodes():
    metrics = {"env_steps": np.array([10, 20, 30]), "episodes": np.array([1, 3, 1]),
               "mean_episode_return": np.array([100.0, 10.0, 50.0])}
    assert purejax.recent_return(metrics, 20) == pytest.approx((30 + 50) / 4)
    assert np.isnan(purejax.recent_return({**metrics, "episodes": np.zeros(3)}, 20))
