"""Motif / MaestroMotif intrinsic reward shaping and episodic message counts.

As in the reference learners (mklissa/maestromotif sample_factory/algorithms/appo/learner.py l.772-806,
facebookresearch/motif learner.py l.779-793):

    r = extrinsic_coef * r_env + llm_coef * 1[r_hat > eps] * r_hat / N(msg)^beta,   r_hat = (r_model - mean) / std

where eps is the `eps_threshold_quantile` quantile of the normalised dataset rewards
(`TrainedRewardModel.threshold`) and N is the episodic count of the message, this occurrence included.
Reference behaviour kept here: the empty message is a message like any other. It is counted (key = the
256 bytes, so all-zero is one key) and the model's reward applies to it, so a reward for an empty message
decays as 1/N^beta over an episode like any repeated message.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _xp(*arrays: Any):
    """jax.numpy when any input is a jax array (or tracer), else numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def shaped_reward(raw, mean: float, std: float, threshold: float | None, counts, beta: float, llm_coef: float,
                  extrinsic=None, extrinsic_coef: float = 0.0):
    """The shaped reward per transition (numpy in, numpy out; jax in, jax out; jittable).

    Args:
      raw: the reward model's raw reward per transition.
      mean, std: the model's dataset reward statistics (normalisation).
      threshold: normalised rewards at or below it become 0 (the reference keeps r_hat > eps only);
        None or -inf: no threshold.
      counts: the episodic count of each transition's message, this occurrence included (>= 1).
      beta: the count exponent (reference 3).
      llm_coef, extrinsic_coef: the weights of the intrinsic and the environment reward.
      extrinsic: the environment reward (None: no extrinsic term).
    """
    xp = _xp(raw, counts, extrinsic)
    norm = (xp.asarray(raw, dtype=xp.float32) - mean) / std
    if threshold is not None:
        norm = xp.where(norm > threshold, norm, 0.0)
    reward = llm_coef * norm / xp.power(xp.asarray(counts, dtype=xp.float32), beta)
    if extrinsic is not None:
        reward = reward + extrinsic_coef * xp.asarray(extrinsic, dtype=xp.float32)
    return reward


class MessageCounter:
    """Per-environment episodic counts of messages (the reference's MessageWrapper `msg_count`).

    Call `update` once per step with the batch of current messages; `dones_prev[i]` says env i's previous
    step ended its episode, so `messages[i]` is the first observation of a new episode and env i's counts
    start over (the reference resets its dictionary on `reset()` and counts the reset observation).
    """

    def __init__(self, num_envs: int):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self._counts: list[dict[bytes, int]] = [{} for _ in range(num_envs)]

    def update(self, messages: np.ndarray, dones_prev: np.ndarray | None = None) -> np.ndarray:
        """messages uint8 (N, 256), dones_prev bool (N,) -> counts float32 (N,), this occurrence included."""
        messages = np.asarray(messages, dtype=np.uint8)
        if messages.ndim != 2 or messages.shape[0] != self.num_envs:
            raise ValueError(f"messages must be ({self.num_envs}, 256), got {messages.shape}")
        dones = np.zeros(self.num_envs, bool) if dones_prev is None else np.asarray(dones_prev, bool)
        out = np.empty(self.num_envs, np.float32)
        for i in range(self.num_envs):
            if dones[i]:
                self._counts[i].clear()
            key = messages[i].tobytes()
            count = self._counts[i].get(key, 0) + 1
            self._counts[i][key] = count
            out[i] = count
        return out

    def reset(self, env_index: int | None = None) -> None:
        """Forgets the counts of one env (or of all)."""
        for i in range(self.num_envs) if env_index is None else [env_index]:
            self._counts[i].clear()
