"""A rollout buffer for host-side environments (NetHack workers cannot be jitted).

The caller steps its envs in Python, asks `ppo.policy_step` for actions, and records each step with
`add`; it may then rewrite `buffer.rewards` (e.g. add intrinsic rewards per transition) before
`finish` turns the (T, N) arrays into a flat PPO batch with GAE advantages and returns.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from libs.rl import ppo
from libs.train.errors import UserError

_gae = jax.jit(ppo.gae)


class RolloutBuffer:
    """Preallocated time-major (num_steps, num_envs, ...) numpy arrays for one PPO update.

    `obs_example`: one batched observation of the envs (a pytree of arrays with leading axis num_envs).
    Row t holds the observation the action was taken on, and `dones[t]` says that the episode ended
    with that transition.
    """

    def __init__(self, num_steps: int, num_envs: int, obs_example: Any):
        self.num_steps, self.num_envs = num_steps, num_envs

        def alloc(path, leaf):
            leaf = np.asarray(leaf)
            if leaf.shape[:1] != (num_envs,):
                raise UserError(f"RolloutBuffer obs_example{jax.tree_util.keystr(path)} has shape {leaf.shape}; "
                                f"expected a leading axis of num_envs={num_envs}")
            return np.zeros((num_steps, *leaf.shape), leaf.dtype)

        self.obs = jax.tree_util.tree_map_with_path(alloc, obs_example)
        self.actions = np.zeros((num_steps, num_envs), np.int32)
        self.logprobs = np.zeros((num_steps, num_envs), np.float32)
        self.values = np.zeros((num_steps, num_envs), np.float32)
        self.rewards = np.zeros((num_steps, num_envs), np.float32)
        self.dones = np.zeros((num_steps, num_envs), bool)

    def add(self, t: int, obs: Any, actions: Any, logprobs: Any, values: Any, rewards: Any, dones: Any) -> None:
        """Records step t of every env."""
        if not 0 <= t < self.num_steps:
            raise UserError(f"RolloutBuffer.add: step {t} is outside 0..{self.num_steps - 1}")

        def put(buffer, leaf):
            buffer[t] = leaf

        jax.tree_util.tree_map(put, self.obs, obs)
        self.actions[t], self.logprobs[t], self.values[t] = actions, logprobs, values
        self.rewards[t], self.dones[t] = rewards, dones

    def finish(self, last_value: Any, gamma: float, lam: float) -> dict[str, Any]:
        """The PPO batch: every array flattened to (num_steps * num_envs, ...), with advantages and returns."""
        advantages, returns = jax.device_get(_gae(
            self.rewards, self.values, self.dones, np.asarray(last_value, np.float32), gamma, lam))
        # Copies, so the next rollout may refill the buffer while an update still reads this batch.
        flat = lambda x: np.array(x).reshape(self.num_steps * self.num_envs, *x.shape[2:])
        batch = {"obs": self.obs, "actions": self.actions, "logprobs": self.logprobs, "values": self.values,
                 "rewards": self.rewards, "dones": self.dones, "advantages": advantages, "returns": returns}
        return jax.tree_util.tree_map(flat, batch)
