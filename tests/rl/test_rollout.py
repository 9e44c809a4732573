"""The host-side rollout buffer: layout, GAE, rewritten rewards, and one update from it."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from libs.rl import networks, ppo
from libs.rl.rollout import RolloutBuffer
from libs.train.errors import UserError


def obs_at(t, n=3):
    return {"crop": np.full((n, 9, 9), t, np.int32), "blstats": np.full((n, 27), t, np.float32),
            "skill": np.arange(n, dtype=np.int32), "targets": np.full((n, 16), t / 10, np.float32)}


def filled_buffer(num_steps=4, n=3):
    buf = RolloutBuffer(num_steps, n, obs_at(0, n))
    for t in range(num_steps):
        buf.add(t, obs_at(t, n), actions=np.full(n, t), logprobs=np.full(n, -1.0), values=np.full(n, 0.5),
                rewards=np.full(n, 1.0), dones=np.array([t == 1] + [False] * (n - 1)))
    return buf


def test_finish_flattens_time_major_with_gae():
    buf = filled_buffer()
    batch = buf.finish(np.full(3, 2.0), gamma=0.9, lam=0.8)
    assert batch["obs"]["crop"].shape == (12, 9, 9) and batch["actions"].shape == (12,)
    np.testing.assert_array_equal(batch["actions"], np.repeat(np.arange(4), 3))  # row t * num_envs + env
    np.testing.assert_array_equal(batch["obs"]["skill"], np.tile(np.arange(3), 4))
    adv, ret = ppo.gae(buf.rewards, buf.values, buf.dones, np.full(3, 2.0, np.float32), 0.9, 0.8)
    np.testing.assert_allclose(batch["advantages"], np.asarray(adv).reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(batch["returns"], np.asarray(ret).reshape(-1), rtol=1e-6)
    # Env 0's episode ended at t=1: its t=1 advantage is r - V = 0.5 exactly.
    assert batch["advantages"][1 * 3 + 0] == pytest.approx(0.5)


def test_rewritten_rewards_change_the_advantages_and_the_batch_is_a_copy():
    buf = filled_buffer()
    before = buf.finish(np.zeros(3), 0.9, 0.8)
    buf.rewards[3, 2] += 10.0  # an intrinsic reward on the last transition of env 2
    after = buf.finish(np.zeros(3), 0.9, 0.8)
    assert after["advantages"][3 * 3 + 2] == pytest.approx(before["advantages"][3 * 3 + 2] + 10.0)
    buf.add(0, obs_at(7), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3, bool))
    assert after["obs"]["crop"][0, 0, 0] == 0 and after["actions"][0] == 0


def test_bad_shapes_and_steps_name_the_culprit():
    with pytest.raises(UserError, match=r"obs_example\['crop'\] has shape \(2, 9, 9\)"):
        RolloutBuffer(4, 3, {"crop": np.zeros((2, 9, 9))})
    buf = RolloutBuffer(2, 3, obs_at(0))
    with pytest.raises(UserError, match="step 2 is outside 0..1"):
        buf.add(2, obs_at(0), 0, 0, 0, 0, False)


def test_one_update_from_a_host_rollout():
    config = ppo.PPOConfig(num_envs=3, num_steps=4, total_env_steps=120, num_minibatches=2, update_epochs=1)
    net = networks.NetHackActorCritic(num_actions=5, num_skills=3, glyph_dim=4, conv_channels=4, hidden=16)
    optimizer = ppo.make_optimizer(config)
    state = ppo.create_state(net, networks.nethack_obs_example(1), optimizer, seed=0)
    act = ppo.policy_step(net.apply)
    buf = RolloutBuffer(config.num_steps, config.num_envs, obs_at(0))
    key = jax.random.key(0)
    for t in range(config.num_steps):
        key, sub = jax.random.split(key)
        a, logp, v = jax.device_get(act(state["params"], obs_at(t), sub))
        buf.add(t, obs_at(t), a, logp, v, np.ones(3), np.zeros(3, bool))
    _, _, last_value = act(state["params"], obs_at(config.num_steps), key)
    batch = buf.finish(last_value, config.gamma, config.gae_lambda)
    state, metrics = ppo.make_update(net.apply, optimizer, config)(state, batch, key)
    assert int(state["step"]) == 1 and np.isfinite(float(metrics["loss"]))
    # The first minibatch sees the rollout's own policy: ratio 1, so nothing is clipped at the start.
    assert float(metrics["approx_kl"]) < 1e-3
