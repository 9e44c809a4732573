"""The actor-critic networks: shapes, the NetHack observation contract, the blstats scaling."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import linen as nn

from libs.rl import networks, ppo


def test_mlp_actor_critic_shapes():
    net = networks.MLPActorCritic(2)
    params = net.init(jax.random.key(0), np.zeros((1, 4), np.float32))
    logits, value = net.apply(params, np.ones((5, 4), np.float32))
    assert logits.shape == (5, 2) and value.shape == (5,)


def test_glyph_and_condition_constants_match_nle():
    nethack = pytest.importorskip("nle.nethack")
    assert networks.MAX_GLYPH == nethack.MAX_GLYPH
    assert networks.NUM_CONDITION_BITS == nethack.BL_MASK_BITS
    assert (networks.BL_HP, networks.BL_GOLD, networks.BL_CONDITION, networks.BL_ALIGN) == (
        nethack.NLE_BL_HP, nethack.NLE_BL_GOLD, nethack.NLE_BL_CONDITION, nethack.NLE_BL_ALIGN)


def nethack_obs(batch, seed=0):
    rng = np.random.default_rng(seed)
    obs = networks.nethack_obs_example(batch)
    obs["crop"] = rng.integers(0, networks.MAX_GLYPH + 1, (batch, 9, 9)).astype(np.int16)
    obs["blstats"][:, networks.BL_HP] = 12
    obs["blstats"][:, networks.BL_HPMAX] = 16
    return obs


def test_nethack_actor_critic_shapes_and_skill_conditioning():
    net = networks.NetHackActorCritic(num_actions=23, num_skills=5)
    obs = nethack_obs(6)
    params = net.init(jax.random.key(0), networks.nethack_obs_example(1))
    logits, value = net.apply(params, obs)
    assert logits.shape == (6, 23) and value.shape == (6,)
    assert np.isfinite(np.asarray(logits)).all() and np.isfinite(np.asarray(value)).all()
    other = dict(obs, skill=np.full(6, 3, np.int32))
    _, value3 = net.apply(params, other)
    assert not np.allclose(value, value3)  # the skill reaches the output
    padded = dict(obs, crop=np.full((6, 9, 9), networks.PAD_GLYPH, np.int32))
    assert np.isfinite(np.asarray(net.apply(params, padded)[0])).all()


def test_blstats_features_are_order_one_on_a_real_nethack_state():
    nle = pytest.importorskip("nle")  # noqa: F841  (registers the NetHack envs)
    import gymnasium as gym

    env = gym.make("NetHackScore-v0", observation_keys=("blstats",))
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(20):
            obs, *_ = env.step(env.action_space.sample())
    finally:
        env.close()
    features = np.asarray(networks.normalise_blstats(obs["blstats"][None].astype(np.float32)))
    assert features.shape == (1, 39)
    assert np.isfinite(features).all() and np.abs(features).max() <= 3.0


def test_normalise_blstats_known_values():
    b = np.zeros((1, 27), np.float32)
    b[0, networks.BL_HP], b[0, networks.BL_HPMAX] = 5, 20
    b[0, networks.BL_DEPTH], b[0, networks.BL_GOLD] = 10, np.e ** 10 - 1
    b[0, networks.BL_CONDITION] = 1 | 4  # stoned, strangled
    f = np.asarray(networks.normalise_blstats(b))[0]
    hp_ratio, depth, gold = f[10], f[12], f[13]  # the feature order of normalise_blstats
    assert (hp_ratio, depth, gold) == pytest.approx((0.25, 0.2, 1.0), rel=1e-5)
    np.testing.assert_array_equal(f[-13:], [1, 0, 1] + [0] * 10)


def test_policy_step_on_nethack_obs():
    net = networks.make_nethack_network(num_actions=23, num_skills=5)
    params = net.init(jax.random.key(0), networks.nethack_obs_example(1))
    actions, logprobs, values = ppo.policy_step(net.apply)(params, nethack_obs(64), jax.random.key(1))
    assert actions.shape == logprobs.shape == values.shape == (64,)
    assert int(actions.min()) >= 0 and int(actions.max()) < 23
    assert np.all(np.asarray(logprobs) <= 0)


def test_patch_conv_equals_a_valid_3x3_convolution():
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype(np.float32)
    patch = networks.PatchConv3x3(4)
    params = patch.init(jax.random.key(0), x)
    kernel, bias = params["params"]["Dense_0"]["kernel"], params["params"]["Dense_0"]["bias"]
    conv = nn.Conv(4, (3, 3), padding="VALID")
    expected = conv.apply({"params": {"kernel": kernel.reshape(3, 3, 3, 4), "bias": bias}}, x)
    np.testing.assert_allclose(patch.apply(params, x), expected, rtol=1e-5, atol=1e-5)


def test_nethack_actor_critic_with_convolutions():
    net = networks.make_nethack_network(num_actions=23, num_skills=5, conv_layers=2, conv_channels=8, hidden=32)
    params = net.init(jax.random.key(0), networks.nethack_obs_example(1))
    assert params["params"]["PatchConv3x3_1"]["Dense_0"]["kernel"].shape == (9 * 8, 8)
    logits, value = jax.jit(net.apply)(params, nethack_obs(4))
    assert logits.shape == (4, 23) and value.shape == (4,)
