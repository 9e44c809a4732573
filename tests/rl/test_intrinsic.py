"""Motif reward shaping on known values (numpy and jax) and episodic message counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.rl.intrinsic import MessageCounter, shaped_reward

RAW = np.array([3.0, 1.0, 5.0, 0.0, 2.0], np.float32)  # mean 1, std 2 -> normalised [1, 0, 2, -0.5, 0.5]
COUNTS = np.array([1.0, 1.0, 2.0, 1.0, 1.0], np.float32)
EXTRINSIC = np.array([1.0, 0.0, 0.0, -1.0, 0.0], np.float32)


def test_threshold_zeroes_at_or_below_and_counts_divide():
    out = shaped_reward(RAW, mean=1.0, std=2.0, threshold=0.5, counts=COUNTS, beta=3.0, llm_coef=0.1)
    # 0.5 is not above the threshold (the reference keeps r_hat > eps); count 2 divides by 2^3.
    np.testing.assert_allclose(out, [0.1, 0.0, 0.1 * 2.0 / 8.0, 0.0, 0.0], rtol=1e-6)
    assert isinstance(out, np.ndarray)


def test_no_threshold_keeps_negative_rewards_and_extrinsic_is_added():
    for threshold in (None, -np.inf):
        out = shaped_reward(RAW, 1.0, 2.0, threshold, COUNTS, beta=1.0, llm_coef=0.5, extrinsic=EXTRINSIC,
                            extrinsic_coef=10.0)
        np.testing.assert_allclose(out, 0.5 * np.array([1.0, 0.0, 1.0, -0.5, 0.5]) + 10.0 * EXTRINSIC, rtol=1e-6)
    only_env = shaped_reward(RAW, 1.0, 2.0, 0.0, COUNTS, 3.0, llm_coef=0.0, extrinsic=EXTRINSIC, extrinsic_coef=0.1)
    np.testing.assert_allclose(only_env, 0.1 * EXTRINSIC, rtol=1e-6)


def test_jax_inputs_give_the_same_values_under_jit():
    numpy_out = shaped_reward(RAW, 1.0, 2.0, 0.5, COUNTS, 3.0, 0.1, EXTRINSIC, 10.0)
    fn = jax.jit(lambda r, c, e: shaped_reward(r, 1.0, 2.0, 0.5, c, 3.0, 0.1, e, 10.0))
    jax_out = fn(jnp.asarray(RAW), jnp.asarray(COUNTS), jnp.asarray(EXTRINSIC))
    assert isinstance(jax_out, jax.Array)
    np.testing.assert_allclose(np.asarray(jax_out), numpy_out, rtol=1e-6)


def _msg(text: str) -> np.ndarray:
    out = np.zeros(256, np.uint8)
    out[:len(text)] = np.frombuffer(text.encode(), np.uint8)
    return out


def test_message_counter_counts_per_env_and_resets_at_episode_end():
    counter = MessageCounter(2)
    hello, empty, gold = _msg("Hello"), _msg(""), _msg("You see here 3 gold pieces.")
    assert counter.update(np.stack([hello, hello])).tolist() == [1, 1]  # envs count separately
    assert counter.update(np.stack([hello, empty]), np.array([False, False])).tolist() == [2, 1]
    assert counter.update(np.stack([empty, empty]), np.array([False, False])).tolist() == [1, 2]  # "" counts too
    assert counter.update(np.stack([hello, gold]), np.array([True, False])).tolist() == [1, 1]  # env 0: new episode
    assert counter.update(np.stack([empty, empty]), np.array([False, False])).tolist() == [1, 3]
    counter.reset(1)
    assert counter.update(np.stack([empty, empty])).tolist() == [2, 1]
    with pytest.raises(ValueError, match=r"\(2, 256\)"):
        counter.update(np.stack([hello]))
