"""The pure-JAX CartPole-v1 against gymnasium's, and its auto-reset."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.envs.cartpole import CartPole


def test_dynamics_and_termination_match_gymnasium():
    gym = pytest.importorskip("gymnasium")
    reference = gym.make("CartPole-v1").unwrapped
    reference.reset(seed=0)
    env = CartPole()
    rng = np.random.default_rng(0)
    start = np.array([0.01, -0.02, 0.03, 0.04])
    reference.state = start.copy()
    physics = jnp.asarray(start, jnp.float32)
    step = jax.jit(env.dynamics)
    for t in range(200):
        action = int(rng.integers(2))
        ref_obs, reward, terminated, _, _ = reference.step(action)
        physics = step(physics, action)
        np.testing.assert_allclose(np.asarray(physics), ref_obs, rtol=1e-4, atol=1e-4)
        x, theta = float(physics[0]), float(physics[2])
        ours = abs(x) > env.x_threshold or abs(theta) > env.theta_threshold
        assert ours == terminated and reward == 1.0
        if terminated:
            break
    assert terminated, "a random policy drops the pole within 200 steps"


def test_termination_auto_resets_and_truncation_at_500():
    env = CartPole()
    _, state = env.reset(jax.random.key(0))
    falling = state._replace(physics=jnp.array([0.0, 0.0, 0.2, 2.0]))  # past 12 degrees after one step
    obs, new, reward, done, info = env.step(jax.random.key(1), falling, 1)
    assert bool(done) and bool(info["terminated"]) and not bool(info["truncated"]) and float(reward) == 1.0
    assert int(new.t) == 0 and np.abs(np.asarray(obs)).max() <= 0.05
    np.testing.assert_array_equal(obs, new.physics)
    assert float(info["final_obs"][2]) > env.theta_threshold

    obs, state = env.reset(jax.random.key(2))
    step = jax.jit(env.step)
    for t in range(500):
        # Hold the pole upright by pushing towards the side it leans to.
        action = int(obs[2] + 0.5 * obs[3] > 0)
        obs, state, reward, done, info = step(jax.random.key(t), state, action)
        if t < 499:
            assert not bool(done), f"the balancing controller failed at step {t}"
    assert bool(done) and bool(info["truncated"]) and int(state.t) == 0


def test_vmapped_envs_are_independent():
    env = CartPole()
    obs, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 6))
    assert obs.shape == (6, 4) and len(np.unique(np.asarray(obs[:, 0]))) == 6
    obs, state, reward, done, _ = jax.vmap(env.step)(jax.random.split(jax.random.key(1), 6), state,
                                                     jnp.array([0, 1, 0, 1, 0, 1]))
    assert reward.shape == done.shape == (6,) and int(state.t.sum()) == 6
