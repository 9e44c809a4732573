"""The whole PPO loop for a JAX environment under one jit (purejaxrl's `make_train`).

Each update scans `num_steps` vectorised env steps (policy sampling included), computes GAE and runs
`ppo.make_update_fn`; a scan over `num_updates` such updates is the whole run. The environment is any
object with `num_actions`, `obs_shape`, `reset(key) -> (obs, state)` and an auto-resetting
`step(key, state, action) -> (obs, state, reward, done, info)` (e.g. `libs.envs.cartpole.CartPole`).
Time-limit truncation counts as an episode end (no bootstrap), as in purejaxrl.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from libs.rl import ppo


def make_train_fn(config: ppo.PPOConfig, env: Any, network: nn.Module) -> Callable[[jax.Array], dict[str, Any]]:
    """A pure `train(key) -> {"state", "metrics"}`: jittable, and vmappable over keys for seed sweeps.

    `metrics` holds one entry per update: `mean_episode_return` (of the episodes completed during that
    update's rollout; NaN when none completed), `episodes`, `env_steps` (cumulative) and the loss metrics.
    """
    optimizer = ppo.make_optimizer(config)
    update_fn = ppo.make_update_fn(network.apply, optimizer, config)
    reset = jax.vmap(env.reset)
    step = jax.vmap(env.step)
    n = config.num_envs

    def train(key):
        init_key, reset_key, loop_key = jax.random.split(key, 3)
        obs, env_state = reset(jax.random.split(reset_key, n))
        state = ppo.init_state(network, obs, optimizer, init_key)

        def env_step(carry, step_key):
            state, env_state, obs, episode_return = carry
            act_key, env_key = jax.random.split(step_key)
            logits, value = network.apply(state["params"], obs)
            action = jax.random.categorical(act_key, logits)
            next_obs, env_state, reward, done, _ = step(jax.random.split(env_key, n), env_state, action)
            episode_return = episode_return + reward
            transition = {"obs": obs, "actions": action, "logprobs": ppo.log_prob_of(logits, action),
                          "values": value, "rewards": reward, "dones": done,
                          "finished_return": jnp.where(done, episode_return, 0.0)}
            episode_return = jnp.where(done, 0.0, episode_return)
            return (state, env_state, next_obs, episode_return), transition

        def one_update(carry, update_key):
            state, env_state, obs, episode_return = carry
            rollout_key, learn_key = jax.random.split(update_key)
            (state, env_state, obs, episode_return), traj = jax.lax.scan(
                env_step, (state, env_state, obs, episode_return), jax.random.split(rollout_key, config.num_steps))
            _, last_value = network.apply(state["params"], obs)
            advantages, returns = ppo.gae(traj["rewards"], traj["values"], traj["dones"], last_value,
                                          config.gamma, config.gae_lambda)
            flat = lambda x: x.reshape(config.batch_size, *x.shape[2:])
            batch = jax.tree_util.tree_map(flat, {**traj, "advantages": advantages, "returns": returns})
            state, metrics = update_fn(state, batch, learn_key)
            episodes = traj["dones"].sum()
            metrics["episodes"] = episodes
            metrics["mean_episode_return"] = jnp.where(
                episodes > 0, traj["finished_return"].sum() / jnp.maximum(episodes, 1), jnp.nan)
            metrics["env_steps"] = state["step"] * config.batch_size
            return (state, env_state, obs, episode_return), metrics

        carry = (state, env_state, obs, jnp.zeros((n,), jnp.float32))
        (state, *_), metrics = jax.lax.scan(one_update, carry, jax.random.split(loop_key, config.num_updates))
        return {"state": state, "metrics": metrics}

    return train


def make_train(config: ppo.PPOConfig, env: Any, network: nn.Module, seed: int) -> Callable[[], dict[str, Any]]:
    """`train()`: the jitted run from `seed` (see `make_train_fn` for the output); seeds share one compile."""
    try:
        train_fn = _jitted_train_fn(config, env, network)
    except TypeError:  # an unhashable env or network (e.g. list-valued fields): compile without the cache
        train_fn = jax.jit(make_train_fn(config, env, network))
    return lambda: train_fn(jax.random.key(seed))


@functools.lru_cache(maxsize=8)
def _jitted_train_fn(config: ppo.PPOConfig, env: Any, network: nn.Module) -> Callable[[jax.Array], dict[str, Any]]:
    return jax.jit(make_train_fn(config, env, network))


def recent_return(metrics: dict[str, Any], last_env_steps: int) -> float:
    """Mean return of the episodes completed in the last `last_env_steps` env steps of a run (NaN if none)."""
    steps = np.asarray(metrics["env_steps"])
    recent = steps > steps[-1] - last_env_steps
    episodes = np.asarray(metrics["episodes"])[recent]
    returns = np.nan_to_num(np.asarray(metrics["mean_episode_return"])[recent])
    return float((returns * episodes).sum() / episodes.sum()) if episodes.sum() else float("nan")
