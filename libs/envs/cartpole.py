"""CartPole-v1 in pure JAX: gymnasium's dynamics, thresholds and 500-step limit, functional and vmappable.

`reset(key) -> (obs, state)`; `step(key, state, action) -> (obs, state, reward, done, info)`. A step that
ends an episode (pole fallen, cart out of bounds, or the time limit) returns the *first observation of the
next episode* and a fresh state (auto-reset), with `done=True`; `info` says which of `terminated` /
`truncated` it was. Reward is 1.0 for every step, the last one included (gymnasium's default).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any, NamedTuple

import gin
import jax
import jax.numpy as jnp

from libs.train.launch import POSITIVE


class CartPoleState(NamedTuple):
    physics: jax.Array  # float32 (4,): x, x_dot, theta, theta_dot
    t: jax.Array  # int32: steps taken in this episode


@gin.configurable("cartpole")
@dataclasses.dataclass(frozen=True)
class CartPole:
    """CartPole-v1 (Barto, Sutton & Anderson 1983) with gymnasium's constants and Euler integration."""

    max_steps: Annotated[int, POSITIVE] = 500
    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    half_length: float = 0.5
    force_mag: float = 10.0
    tau: float = 0.02  # seconds per step
    theta_threshold: float = 12 * 2 * math.pi / 360  # radians
    x_threshold: float = 2.4
    num_actions: int = 2
    obs_shape: tuple[int, ...] = (4,)

    def reset(self, key: jax.Array) -> tuple[jax.Array, CartPoleState]:
        physics = jax.random.uniform(key, (4,), jnp.float32, -0.05, 0.05)
        return physics, CartPoleState(physics, jnp.zeros((), jnp.int32))

    def dynamics(self, physics: jax.Array, action: jax.Array) -> jax.Array:
        """One Euler step of the cart-pole equations (no termination, no reset)."""
        x, x_dot, theta, theta_dot = physics
        total_mass = self.masspole + self.masscart
        polemass_length = self.masspole * self.half_length
        force = jnp.where(action == 1, self.force_mag, -self.force_mag)
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.half_length * (4.0 / 3.0 - self.masspole * cos**2 / total_mass)
        )
        x_acc = temp - polemass_length * theta_acc * cos / total_mass
        return jnp.stack([
            x + self.tau * x_dot,
            x_dot + self.tau * x_acc,
            theta + self.tau * theta_dot,
            theta_dot + self.tau * theta_acc,
        ])

    def step(
        self, key: jax.Array, state: CartPoleState, action: jax.Array
    ) -> tuple[jax.Array, CartPoleState, jax.Array, jax.Array, dict[str, Any]]:
        physics = self.dynamics(state.physics, action)
        t = state.t + 1
        x, theta = physics[0], physics[2]
        terminated = (jnp.abs(x) > self.x_threshold) | (jnp.abs(theta) > self.theta_threshold)
        truncated = (t >= self.max_steps) & ~terminated
        done = terminated | truncated
        _, reset_state = self.reset(key)
        next_state = jax.tree_util.tree_map(
            lambda fresh, cont: jnp.where(done, fresh, cont), reset_state, CartPoleState(physics, t)
        )
        info = {"terminated": terminated, "truncated": truncated, "final_obs": physics}
        return next_state.physics, next_state, jnp.ones((), jnp.float32), done, info
