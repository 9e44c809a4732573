"""PPO pieces on hand-computed values; the sharded update against one device; checkpoint round-trip."""

from __future__ import annotations

import math

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.rl import networks, ppo
from libs.train import launch, sharding
from libs.train.checkpoint import Checkpointer
from libs.train.errors import ConfigError, UserError


def test_gae_hand_computed():
    # Env 0: the episode ends after t=1, so t=1 is not bootstrapped and t=0 does not see t=2.
    # Env 1: no episode end, zero values: advantages are discounted sums with gamma * lambda = 0.25.
    rewards = jnp.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    values = jnp.array([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0]])
    dones = jnp.array([[0, 0], [1, 0], [0, 0]], bool)
    adv, ret = ppo.gae(rewards, values, dones, jnp.array([2.0, 0.0]), gamma=0.5, lam=0.5)
    np.testing.assert_allclose(adv, [[1.25, 1.3125], [1.0, 1.25], [2.5, 1.0]])
    np.testing.assert_allclose(ret, [[1.75, 1.3125], [2.0, 1.25], [4.0, 1.0]])


def test_gae_with_lambda_one_gives_bootstrapped_discounted_returns():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    dones, last = rng.random((6, 3)) < 0.3, rng.normal(size=3)
    _, ret = ppo.gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(dones), jnp.asarray(last), 0.9, 1.0)
    expected, running = np.zeros_like(rewards), last
    for t in reversed(range(6)):
        running = rewards[t] + 0.9 * running * (1 - dones[t])
        expected[t] = running
    np.testing.assert_allclose(ret, expected, rtol=1e-5, atol=1e-5)


def fixed_apply(logits, values):
    """A stand-in network whose outputs ignore params and obs."""
    return lambda params, obs: (jnp.asarray(logits, jnp.float32), jnp.asarray(values, jnp.float32))


def loss_parts(ratio, advantages=(1.0, -1.0), values=(0.0, 0.0), old_values=(0.0, 0.0), returns=(0.0, 0.0),
               clip_value_loss=True, vf_coef=0.5, ent_coef=0.01):
    logits = np.log([[0.25, 0.75], [0.6, 0.4]])
    actions = np.array([1, 0])
    new_logprobs = np.log([0.75, 0.6])
    batch = {"obs": {"x": np.zeros((2, 1))}, "actions": actions, "logprobs": new_logprobs - np.log(ratio),
             "values": np.asarray(old_values), "advantages": np.asarray(advantages), "returns": np.asarray(returns)}
    return ppo.ppo_loss(None, fixed_apply(logits, values), batch, 0.2, vf_coef, ent_coef, clip_value_loss)


def test_policy_loss_unclipped_ratio_one():
    _, m = loss_parts(ratio=[1.0, 1.0], advantages=[3.0, 1.0])
    # Normalised advantages are [1, -1]: policy loss -mean(adv) = 0, no clipping, no divergence.
    assert float(m["policy_loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(m["clip_fraction"]) == 0.0
    assert float(m["approx_kl"]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("ratio", [1.5, 0.5])
def test_policy_loss_clipped(ratio):
    # Advantages [1, -1]; ratio 1.5: min(1.5, 1.2) = 1.2 and min(-1.5, -1.2) = -1.5 -> loss 0.15;
    # ratio 0.5: min(0.5, 0.8) = 0.5 and min(-0.5, -0.8) = -0.8 -> loss 0.15 (pessimistic bound both ways).
    _, m = loss_parts(ratio=[ratio, ratio])
    assert float(m["policy_loss"]) == pytest.approx(0.15, abs=1e-5)
    assert float(m["clip_fraction"]) == 1.0
    assert float(m["approx_kl"]) == pytest.approx((ratio - 1) - math.log(ratio), rel=1e-4)


def test_policy_loss_inside_the_clip_range():
    _, m = loss_parts(ratio=[1.1, 0.9])  # -mean(1.1 * 1, 0.9 * -1) = -0.1
    assert float(m["policy_loss"]) == pytest.approx(-0.1, abs=1e-5)
    assert float(m["clip_fraction"]) == 0.0


def test_value_loss_clipped_and_unclipped():
    kw = {"ratio": [1.0, 1.0], "values": [1.0, 3.0], "old_values": [0.0, 0.0], "returns": [1.0, 1.0]}
    _, plain = loss_parts(clip_value_loss=False, **kw)
    _, clipped = loss_parts(clip_value_loss=True, **kw)
    assert float(plain["value_loss"]) == pytest.approx(0.5 * (0.0 + 4.0) / 2)
    # Clipped predictions are [0.2, 0.2]: max(0, 0.64) and max(4, 0.64).
    assert float(clipped["value_loss"]) == pytest.approx(0.5 * (0.64 + 4.0) / 2, rel=1e-5)


def test_entropy_of_uniform_logits_and_total_loss():
    batch = {"obs": np.zeros((3, 1)), "actions": np.array([0, 3, 6]), "logprobs": np.full(3, -math.log(7)),
             "values": np.zeros(3), "advantages": np.array([1.0, 2.0, 3.0]), "returns": np.ones(3)}
    loss, m = ppo.ppo_loss(None, fixed_apply(np.zeros((3, 7)), np.zeros(3)), batch, 0.2, 0.5, 0.01)
    assert float(m["entropy"]) == pytest.approx(math.log(7), rel=1e-6)
    assert float(m["value_loss"]) == pytest.approx(0.5)
    assert float(loss) == pytest.approx(float(m["policy_loss"]) + 0.5 * 0.5 - 0.01 * math.log(7), rel=1e-5)
    assert ppo.categorical_entropy(jnp.array([[0.0, -jnp.inf]]))[0] == 0.0  # masked actions do not give NaN


def random_batch(config: ppo.PPOConfig, obs_dim: int = 4, num_actions: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = config.batch_size
    return {"obs": rng.normal(size=(n, obs_dim)).astype(np.float32),
            "actions": rng.integers(0, num_actions, n).astype(np.int32),
            "logprobs": np.full(n, -math.log(num_actions), np.float32),
            "values": rng.normal(size=n).astype(np.float32), "advantages": rng.normal(size=n).astype(np.float32),
            "returns": rng.normal(size=n).astype(np.float32), "rewards": np.zeros(n, np.float32)}


TINY = {"num_envs": 4, "num_steps": 16, "total_env_steps": 640, "num_minibatches": 2, "update_epochs": 2}


def tiny_setup(mesh=None):
    config = ppo.PPOConfig(**TINY)
    network = networks.MLPActorCritic(3, hidden=(16, 16))
    optimizer = ppo.make_optimizer(config)
    state = ppo.create_state(network, np.zeros((1, 4), np.float32), optimizer, seed=0, mesh=mesh)
    return config, network, optimizer, state


def test_update_changes_params_and_reports_metrics():
    config, network, optimizer, state = tiny_setup()
    before = jax.tree_util.tree_map(np.array, state["params"])
    update = ppo.make_update(network.apply, optimizer, config)
    state, metrics = update(state, random_batch(config), jax.random.key(1))
    assert int(state["step"]) == 1
    assert set(metrics) >= {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "loss"}
    # purejaxrl's 0.01-scaled policy head starts near uniform.
    assert float(metrics["entropy"]) == pytest.approx(math.log(3), rel=0.01)
    moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state["params"], before)
    assert all(v > 0 for v in jax.tree_util.tree_leaves(moved))


def test_sharded_update_matches_one_device():
    assert jax.device_count() == 8
    config, network, optimizer, state1 = tiny_setup()
    init = jax.tree_util.tree_map(np.array, state1["params"])
    batch, key = random_batch(config), jax.random.key(3)
    single, m1 = ppo.make_update(network.apply, optimizer, config)(state1, batch, key)
    mesh = sharding.make_mesh()
    _, _, _, state8 = tiny_setup(mesh)
    update8 = ppo.make_update(network.apply, optimizer, config, mesh=mesh)
    multi, m8 = update8(state8, batch, key)
    assert multi["params"]["params"]["Dense_0"]["kernel"].sharding.is_fully_replicated
    assert len(multi["params"]["params"]["Dense_0"]["kernel"].sharding.device_set) == 8
    # Compare what the update changed (params move by ~1e-3 in 4 Adam steps) and the optimizer state.
    delta = lambda s: jax.tree_util.tree_map(lambda p, p0: np.asarray(p) - p0, s["params"], init)
    for a, b in zip(jax.tree_util.tree_leaves(delta(single)), jax.tree_util.tree_leaves(delta(multi))):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-8)
    for a, b in zip(jax.tree_util.tree_leaves(single["opt_state"]), jax.tree_util.tree_leaves(multi["opt_state"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-9)
    for k in m1:
        np.testing.assert_allclose(float(m1[k]), float(m8[k]), rtol=1e-4, atol=1e-6)
    # A second call reuses the compiled function (the donated state is replaced by the returned one).
    multi, _ = update8(multi, batch, key)
    assert int(multi["step"]) == 2


def test_sharded_update_rejects_minibatch_not_dividing_over_devices():
    config = ppo.PPOConfig(num_envs=3, num_steps=4, total_env_steps=12, num_minibatches=2)
    with pytest.raises(ConfigError, match="minibatch size 6"):
        ppo.make_update(lambda p, o: None, ppo.make_optimizer(config), config, mesh=sharding.make_mesh())


def test_update_rejects_a_batch_of_the_wrong_size():
    config, network, optimizer, state = tiny_setup()
    batch = random_batch(ppo.PPOConfig(num_envs=2, num_steps=16, total_env_steps=640, num_minibatches=2))
    with pytest.raises(UserError, match=r"batch\['actions'\] has shape \(32,\)"):
        ppo.make_update(network.apply, optimizer, config)(state, batch, jax.random.key(0))
    with pytest.raises(UserError, match="missing \\['returns'\\]"):
        ppo.make_update(network.apply, optimizer, config)(state, {k: v for k, v in batch.items() if k != "returns"},
                                                          jax.random.key(0))


def test_policy_step_samples_from_the_logits():
    logits = np.log(np.array([[0.7, 0.2, 0.1]] * 4000))
    act, logp, value = ppo.policy_step(fixed_apply(logits, np.arange(4000)))(None, None, jax.random.key(0))
    assert act.shape == (4000,) and act.dtype == jnp.int32
    np.testing.assert_allclose(np.bincount(np.asarray(act), minlength=3) / 4000, [0.7, 0.2, 0.1], atol=0.03)
    np.testing.assert_allclose(logp, np.log(np.array([0.7, 0.2, 0.1]))[np.asarray(act)], rtol=1e-5)
    np.testing.assert_array_equal(value, np.arange(4000))


def test_annealed_learning_rate_reaches_zero_at_the_last_update():
    config = ppo.PPOConfig(**TINY)  # 10 updates of 4 optimizer steps
    params = {"w": jnp.ones(())}
    opt = ppo.make_optimizer(config)
    opt_state = opt.init(params)
    steps = config.num_updates * config.update_epochs * config.num_minibatches
    for _ in range(steps - 1):
        _, opt_state = opt.update({"w": jnp.ones(())}, opt_state, params)
    updates, _ = opt.update({"w": jnp.ones(())}, opt_state, params)
    assert abs(float(updates["w"])) < 0.11 * config.lr  # the last update runs at 1/10 of the rate
    assert abs(float(updates["w"])) > 0.0


def test_checkpoint_round_trips_the_ppo_state(tmp_path):
    config, network, optimizer, state = tiny_setup()
    state, _ = ppo.make_update(network.apply, optimizer, config)(state, random_batch(config), jax.random.key(1))
    saved = jax.tree_util.tree_map(np.array, state)
    ckpt = Checkpointer(str(tmp_path), every_steps=1, async_save=False)
    ckpt.save(1, state, {"env_steps": config.batch_size})
    ckpt.wait()
    abstract = ppo.abstract_state(network, np.zeros((1, 4), np.float32), optimizer)
    step, restored, meta = ckpt.restore_latest(abstract)
    ckpt.close()
    assert step == 1 and meta == {"env_steps": config.batch_size}
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(saved)
    for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(a, np.asarray(b))
    # The restored state trains on: same update from saved and restored states.
    update = ppo.make_update(network.apply, optimizer, config)
    again, _ = update(restored, random_batch(config, seed=5), jax.random.key(2))
    assert int(again["step"]) == 2


def test_config_from_gin_and_its_errors(clean_gin):
    launch.parse_config([], ["ppo.num_envs = 8", "ppo.lr = 1e-3"])
    config = ppo.PPOConfig()
    assert (config.num_envs, config.lr, config.batch_size, config.num_updates) == (8, 1e-3, 1024, 488)
    gin.clear_config()
    with pytest.raises(ConfigError, match="ppo.num_minibatches=3 does not divide"):
        ppo.PPOConfig(num_minibatches=3)
    with pytest.raises(ConfigError, match="ppo.gamma=1.5"):
        ppo.PPOConfig(gamma=1.5)
    with pytest.raises(ConfigError, match="ppo.total_env_steps=100 is less than one update"):
        ppo.PPOConfig(total_env_steps=100)
