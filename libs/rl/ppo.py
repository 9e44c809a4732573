"""Proximal Policy Optimisation (Schulman et al. 2017) as pure functions, after purejaxrl's ppo.py.

The pieces: `gae` (time-major advantages), `ppo_loss` (clipped surrogate + value + entropy terms),
`make_update_fn` (epochs x shuffled minibatches in one `lax.scan`) and its jitted, optionally sharded
wrapper `make_update`, `policy_step` for host-side rollouts, and the train state, a plain dict
{"step", "params", "opt_state", "rng"} that `libs.train.checkpoint.Checkpointer` saves as is.

A network's `apply_fn(params, obs) -> (logits (B, A), values (B,))`, with `params` the variables dict that
`network.init` returns (so `apply_fn = network.apply`); `obs` may be any pytree with a leading batch axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any

import gin
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from libs.train import sharding
from libs.train.errors import ConfigError, UserError
from libs.train.launch import NON_NEGATIVE, POSITIVE

BATCH_KEYS = ("obs", "actions", "logprobs", "values", "advantages", "returns")
ApplyFn = Callable[[Any, Any], tuple[jax.Array, jax.Array]]


@gin.configurable("ppo")
@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; the defaults are purejaxrl's CartPole-v1 settings.

    One update consumes `num_envs x num_steps` transitions and makes `update_epochs x num_minibatches`
    optimizer steps. `total_env_steps` fixes the number of updates, which the linear learning-rate
    anneal (`anneal_lr`) runs to zero over. `clip_value_loss`: clip the value prediction to within
    `clip_eps` of the rollout's value, as purejaxrl and PPO2 do.
    """

    lr: Annotated[float, POSITIVE] = 2.5e-4
    num_envs: Annotated[int, POSITIVE] = 4
    num_steps: Annotated[int, POSITIVE] = 128  # env steps per env per update
    total_env_steps: Annotated[int, POSITIVE] = 500_000
    update_epochs: Annotated[int, POSITIVE] = 4
    num_minibatches: Annotated[int, POSITIVE] = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: Annotated[float, POSITIVE] = 0.2
    clip_value_loss: bool = True
    vf_coef: Annotated[float, NON_NEGATIVE] = 0.5
    ent_coef: Annotated[float, NON_NEGATIVE] = 0.01
    max_grad_norm: Annotated[float, POSITIVE] = 0.5
    anneal_lr: bool = True

    def __post_init__(self):
        for name in ("lr", "num_envs", "num_steps", "total_env_steps", "update_epochs", "num_minibatches",
                     "clip_eps", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"ppo.{name}={getattr(self, name)!r}: expected a positive value")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"ppo.{name}={getattr(self, name)!r}: expected a value in [0, 1]")
        if self.batch_size % self.num_minibatches:
            raise ConfigError(f"ppo.num_minibatches={self.num_minibatches} does not divide the batch "
                              f"num_envs x num_steps = {self.batch_size}")
        if self.num_updates < 1:
            raise ConfigError(f"ppo.total_env_steps={self.total_env_steps} is less than one update "
                              f"({self.batch_size} env steps)")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_env_steps // self.batch_size


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    """Global-norm clipping then Adam (eps 1e-5), the rate annealed linearly to 0 over the updates."""
    steps_per_update = config.update_epochs * config.num_minibatches

    def schedule(count):
        return config.lr * (1.0 - (count // steps_per_update) / config.num_updates)

    lr = schedule if config.anneal_lr else config.lr
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))


def gae(
    rewards: jax.Array, values: jax.Array, dones: jax.Array, last_value: jax.Array, gamma: float, lam: float
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and returns, time-major (T, N).

    `dones[t]` says the episode ended with transition t (so t+1 starts a new one and is not bootstrapped);
    `last_value` (N,) is the value of the observation after the last step.
    """
    not_done = 1.0 - dones.astype(jnp.float32)

    def backward(carry, step):
        advantage, next_value = carry
        reward, value, live = step
        delta = reward + gamma * next_value * live - value
        advantage = delta + gamma * lam * live * advantage
        return (advantage, value), advantage

    init = (jnp.zeros_like(last_value, jnp.float32), last_value.astype(jnp.float32))
    _, advantages = jax.lax.scan(backward, init, (rewards.astype(jnp.float32), values, not_done), reverse=True)
    return advantages, advantages + values


def categorical_entropy(logits: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits)
    probs = jnp.exp(log_probs)
    return -jnp.sum(jnp.where(probs > 0, probs * log_probs, 0.0), axis=-1)


def log_prob_of(logits: jax.Array, actions: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(log_probs, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def ppo_loss(
    params: Any,
    apply_fn: ApplyFn,
    batch: dict[str, Any],
    clip_eps: float,
    vf_coef: float,
    ent_coef: float,
    clip_value_loss: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The PPO loss of one minibatch and its parts; advantages are normalised within the minibatch."""
    logits, values = apply_fn(params, batch["obs"])
    log_ratio = log_prob_of(logits, batch["actions"]) - batch["logprobs"]
    ratio = jnp.exp(log_ratio)
    adv = batch["advantages"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv).mean()

    value_losses = jnp.square(values - batch["returns"])
    if clip_value_loss:
        clipped = batch["values"] + jnp.clip(values - batch["values"], -clip_eps, clip_eps)
        value_losses = jnp.maximum(value_losses, jnp.square(clipped - batch["returns"]))
    value_loss = 0.5 * value_losses.mean()
    entropy = categorical_entropy(logits).mean()

    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    metrics = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": ((ratio - 1.0) - log_ratio).mean(),  # the low-variance k3 estimator
        "clip_fraction": (jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32).mean(),
    }
    return loss, metrics


def init_state(network: nn.Module, obs_example: Any, optimizer: optax.GradientTransformation,
               key: jax.Array) -> dict[str, Any]:
    """A fresh train state (traceable); `obs_example` is one batch of observations."""
    init_key, state_key = jax.random.split(key)
    params = network.init(init_key, obs_example)
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params),
            "rng": jax.random.key_data(state_key)}


def create_state(network: nn.Module, obs_example: Any, optimizer: optax.GradientTransformation, seed: int,
                 mesh: Mesh | None = None) -> dict[str, Any]:
    """`init_state` from an integer seed, replicated over `mesh` when one is given."""
    out = sharding.replicated(mesh) if mesh is not None else None
    fn = jax.jit(lambda key: init_state(network, obs_example, optimizer, key), out_shardings=out)
    return fn(jax.random.key(seed))


def abstract_state(network: nn.Module, obs_example: Any, optimizer: optax.GradientTransformation,
                   mesh: Mesh | None = None) -> Any:
    """The state's shapes, dtypes and shardings, for `Checkpointer.restore`."""
    shapes = jax.eval_shape(lambda key: init_state(network, obs_example, optimizer, key), jax.random.key(0))
    where = sharding.replicated(mesh) if mesh is not None else jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=where), shapes)


def make_update_fn(
    apply_fn: ApplyFn,
    optimizer: optax.GradientTransformation,
    config: PPOConfig,
    minibatch_sharding: NamedSharding | None = None,
) -> Callable[[dict[str, Any], dict[str, Any], jax.Array], tuple[dict[str, Any], dict[str, jax.Array]]]:
    """A pure PPO update: (state, batch, key) -> (state, metrics averaged over all minibatch steps).

    `batch` holds BATCH_KEYS with a leading axis of `config.batch_size` transitions.
    """

    def loss_fn(params, minibatch):
        return ppo_loss(params, apply_fn, minibatch, config.clip_eps, config.vf_coef, config.ent_coef,
                        config.clip_value_loss)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        (loss, metrics), grads = grad_fn(params, minibatch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}

    def update(state, batch, key):
        batch = _checked_batch(batch, config.batch_size)

        def epoch(carry, epoch_key):
            order = jax.random.permutation(epoch_key, config.batch_size)
            split = lambda x: jnp.take(x, order, axis=0).reshape(
                config.num_minibatches, config.minibatch_size, *x.shape[1:])
            minibatches = jax.tree_util.tree_map(split, batch)
            if minibatch_sharding is not None:
                minibatches = jax.lax.with_sharding_constraint(minibatches, minibatch_sharding)
            return jax.lax.scan(minibatch_step, carry, minibatches)

        keys = jax.random.split(key, config.update_epochs)
        (params, opt_state), metrics = jax.lax.scan(epoch, (state["params"], state["opt_state"]), keys)
        new_state = {**state, "step": state["step"] + 1, "params": params, "opt_state": opt_state}
        return new_state, jax.tree_util.tree_map(jnp.mean, metrics)

    return update


def _checked_batch(batch: dict[str, Any], batch_size: int) -> dict[str, Any]:
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise UserError(f"PPO batch is missing {missing}; it needs {list(BATCH_KEYS)}")
    batch = {k: batch[k] for k in BATCH_KEYS}
    for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
        if leaf.shape[:1] != (batch_size,):
            raise UserError(f"PPO batch{jax.tree_util.keystr(path)} has shape {leaf.shape}; expected a leading "
                            f"axis of num_envs x num_steps = {batch_size}")
    return batch


def make_update(
    apply_fn: ApplyFn,
    optimizer: optax.GradientTransformation,
    config: PPOConfig,
    mesh: Mesh | None = None,
    rules: Any = None,
) -> Callable[[dict[str, Any], dict[str, Any], jax.Array], tuple[dict[str, Any], dict[str, jax.Array]]]:
    """`make_update_fn` jitted once, the state donated.

    With a mesh the batch's leading (sample) axis is split over the mesh axes that the logical rules
    (`libs.train.sharding`, default `logical_rules()`) give `act_batch`, while params and optimizer state
    are replicated; gradients are then averaged across devices by XLA. The state must be replicated on
    `mesh` (`create_state(..., mesh=mesh)` or a restore into `abstract_state(..., mesh)`).
    """
    if mesh is None:
        return jax.jit(make_update_fn(apply_fn, optimizer, config), donate_argnums=(0,))
    rules = sharding.logical_rules() if rules is None else rules
    ways = sharding.batch_axis_size(mesh, rules)
    if config.minibatch_size % ways:
        raise ConfigError(f"ppo minibatch size {config.minibatch_size} (num_envs x num_steps / num_minibatches) "
                          f"does not divide over the {ways} devices of the mesh's batch axes")
    batch_axes = nn.logical_to_mesh_axes(("act_batch",), rules)[0]
    batch_sh = NamedSharding(mesh, PartitionSpec(batch_axes))
    minibatch_sh = NamedSharding(mesh, PartitionSpec(None, batch_axes))
    replicated = sharding.replicated(mesh)
    jitted = jax.jit(
        make_update_fn(apply_fn, optimizer, config, minibatch_sh),
        in_shardings=(replicated, batch_sh, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )

    def update(state, batch, key):
        batch = jax.device_put(_checked_batch(batch, config.batch_size), batch_sh)
        return jitted(state, batch, jax.device_put(key, replicated))

    return update


def policy_step(apply_fn: ApplyFn) -> Callable[[Any, Any, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
    """A jitted `(params, obs, key) -> (actions, logprobs, values)` sampling one action per observation."""

    @jax.jit
    def step(params, obs, key):
        logits, values = apply_fn(params, obs)
        actions = jax.random.categorical(key, logits).astype(jnp.int32)
        return actions, log_prob_of(logits, actions), values

    return step
