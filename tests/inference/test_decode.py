"""Cached decoding: the KV cache gives the full forward pass's logits, generation equals a naive loop,
sampling honours temperature, top-p, masks and seeds, and shapes come in a few compiled buckets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.inference import decode
from libs.models import layers, llama
from libs.train.state import strip_boxes

TINY = llama.LlamaConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2,
                         ffn_dim_multiplier=None, multiple_of=16, use_scaled_rope=False, max_seq_len=64,
                         dtype="float32", loss_chunk_tokens=0)


def _model(cfg=TINY, seed=0):
    model = llama.Llama(cfg)
    params = strip_boxes(model.init(jax.random.key(seed), jnp.zeros((1, 8), jnp.int32))["params"])
    # A larger init than training's 0.02, so that logits are far from uniform and greedy paths differ.
    params = jax.tree.map(lambda p: p * 8.0 if p.ndim == 2 else p, params)
    return model, params


@pytest.mark.parametrize("rope_style", ["half", "interleaved"])
def test_cached_logits_equal_the_full_forward_pass(rope_style):
    cfg = dataclasses.replace(TINY, rope_style=rope_style)
    model, params = _model(cfg)
    tokens = jax.random.randint(jax.random.key(1), (2, 14), 0, cfg.vocab_size)
    full = model.apply({"params": params}, tokens, train=False)
    cache = layers.KVCache.zeros(cfg.num_layers, 3, 32, cfg.num_kv_heads, cfg.dims_per_head, jnp.float32)
    lengths, width, pad = [5, 7], 8, 32  # prompts right-padded to 8; padding positions (32) write nothing
    prompt = np.zeros((2, width), np.int32)
    positions = np.full((2, width), pad, np.int32)
    for row, n in enumerate(lengths):
        prompt[row, :n], positions[row, :n] = tokens[row, :n], np.arange(n)
    slots = jnp.array([2, 0])  # rows go to slots 2 and 0; slot 1 stays untouched
    logits, cache = model.apply({"params": params}, jnp.asarray(prompt), train=False, cache=cache,
                                call=layers.CachedCall(jnp.asarray(positions), slots, 16), logits_at=jnp.array([4, 6]))
    np.testing.assert_allclose(logits, full[jnp.arange(2), jnp.array([4, 6])], atol=2e-5)
    for step in range(6):  # then one token at a time
        at = np.array(lengths) + step
        step_tokens = tokens[jnp.arange(2), jnp.asarray(at)][:, None]
        logits, cache = model.apply({"params": params}, step_tokens, train=False, cache=cache,
                                    call=layers.CachedCall(jnp.asarray(at)[:, None], slots, 16),
                                    logits_at=jnp.zeros(2, jnp.int32))
        np.testing.assert_allclose(logits, full[jnp.arange(2), jnp.asarray(at)], atol=2e-5)
    assert not np.any(cache.k[0][1])  # slot 1 untouched


def _naive_greedy(model, params, prompt, n, width=64):
    """Greedy decoding by full forward passes, no cache. Each pass sees the sequence zero-padded to `width`
    (a causal model's logits at real positions ignore what follows), so one program serves every step."""
    forward = _FORWARDS.setdefault(id(model), jax.jit(lambda p, t: model.apply({"params": p}, t, train=False)))
    seq = list(prompt)
    for _ in range(n):
        logits = forward(params, jnp.asarray([seq + [0] * (width - len(seq))]))
        seq.append(int(jnp.argmax(logits[0, len(seq) - 1])))
    return seq[len(prompt):]


_FORWARDS: dict = {}


def test_generation_equals_a_naive_greedy_loop():
    model, params = _model()
    decoder = decode.Decoder(TINY, params, slots=4, max_len=64, prefill_chunks=(4, 8), attend_step=16)
    # Prompts of different lengths; the 19-token one is prefilled in three chunks of 8.
    prompts = [[1, 2, 3], list(range(5, 24)), [7]]
    outputs = decode.generate(decoder, prompts, decode.SamplingParams(max_tokens=12))
    for prompt, output in zip(prompts, outputs):
        assert output == _naive_greedy(model, params, prompt, 12)
    # A handful of programs: prefill chunk widths and decode steps per attended-length bucket.
    assert {shape[:2] for shape in decoder.compiled_shapes} <= {(1, 4), (1, 8), (4, 1)}
    assert {shape[2] for shape in decoder.compiled_shapes} <= set(decoder.attend_buckets)


def test_stop_tokens_and_the_context_end_stop_generation():
    model, params = _model()
    decoder = decode.Decoder(TINY, params, slots=2, max_len=32, prefill_chunks=(8,), attend_step=16)
    free = decode.generate(decoder, [[1, 2, 3]], decode.SamplingParams(max_tokens=10))[0]
    stopped = decode.generate(decoder, [[1, 2, 3]], decode.SamplingParams(max_tokens=10), frozenset({free[4]}))[0]
    assert stopped == free[:free.index(free[4])]
    long = decode.generate(decoder, [list(range(1, 29))], decode.SamplingParams(max_tokens=50))[0]
    assert len(long) == 32 - 28  # positions 28..31: the context is full


def _sample(logits, allowed=None, temperature=0.0, top_p=1.0, seed=0, counter=0):
    logits = jnp.asarray(logits, jnp.float32)
    b = logits.shape[0]
    allowed = jnp.ones(logits.shape, bool) if allowed is None else jnp.asarray(allowed)
    return np.asarray(_SAMPLE(logits, allowed, jnp.full(b, temperature), jnp.full(b, top_p),
                              jnp.full(b, seed, jnp.uint32), jnp.full(b, counter, jnp.int32)))


_SAMPLE = jax.jit(decode.sample)  # as the decoder runs it; op by op, 750 draws took minutes


def test_sampling_rules():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert _sample(logits)[0] == 0  # greedy
    assert _sample(logits, allowed=[[False, True, True, True]])[0] == 1  # the mask wins over the argmax
    draws = np.array([_sample(logits, temperature=1.0, seed=7, counter=c)[0] for c in range(400)])
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.07)
    # top_p 0.75: the nucleus is {0, 1} (0.5 + 0.3 >= 0.75); never 2 or 3.
    nucleus = {int(_sample(logits, temperature=1.0, top_p=0.75, seed=7, counter=c)[0]) for c in range(200)}
    assert nucleus == {0, 1}
    assert {int(_sample(logits, temperature=1.0, top_p=1e-6, counter=c)[0]) for c in range(50)} == {0}
    masked = {int(_sample(logits, allowed=[[False, False, True, True]], temperature=1.0, counter=c)[0])
              for c in range(100)}
    assert masked == {2, 3}
    # Seeded: the same (seed, step) draws the same token, whatever shares the batch.
    row = _sample(logits, temperature=1.0, seed=11, counter=3)[0]
    batch = _sample(np.concatenate([np.zeros((1, 4)), logits]), temperature=1.0, seed=11, counter=3)
    assert batch[1] == row


def test_sampling_params_are_checked():
    for bad in (dict(max_tokens=0), dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            decode.SamplingParams(**bad)


def test_only_busy_rows_are_decoded_and_results_are_unchanged():
    model, params = _model()
    decoder = decode.Decoder(TINY, params, slots=8, max_len=64, prefill_chunks=(8,), attend_step=16)
    prompts = [[1, 2, 3], [4, 5], [9, 8, 7, 6]]
    outputs = decode.generate(decoder, prompts, decode.SamplingParams(max_tokens=6))
    for prompt, output in zip(prompts, outputs):
        assert output == _naive_greedy(model, params, prompt, 6)
    assert {shape[0] for shape in decoder.compiled_shapes if shape[1] == 1} == {4}  # 3 busy rows -> 4, not 8
