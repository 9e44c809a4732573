"""Next-token cross-entropy through the output head, a chunk of positions at a time.

A GPT-2 head over a 50k vocabulary makes float32 logits of 13 GB for a batch of
64 x 1024 tokens. Both functions here form them a chunk of sequence positions at
a time (every row of the batch in each chunk, so a data-parallel batch keeps all
devices busy). `fused_cross_entropy` also computes the gradients with respect to
the hidden states and the head inside that same pass (the softmax-minus-one-hot
identity), so training neither keeps nor recomputes the logits.

`Fp8Head` makes the training pass's three head matmuls FP8, as speedrun record 19 did:
hidden states and head weights are scaled and rounded to float8_e4m3fn, the logits'
gradient to float8_e5m2, each product is taken over the rounded operands and
unscaled. XLA turns these dequantise-then-dot patterns into FP8 GEMMs on GPUs that
have them (Hopper and later); elsewhere the same rounding runs in higher precision,
so the numerics match and only the speed differs.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _cap(logits: Array, softcap: float, valid_vocab: int, vocab: int) -> tuple[Array, Array | None]:
    capped = None
    if softcap > 0:
        capped = jnp.tanh(logits / softcap)
        logits = softcap * capped
    if 0 < valid_vocab < vocab:
        logits = jnp.where(jnp.arange(vocab) < valid_vocab, logits, -jnp.inf)
    return logits, capped


def logits_of(x: Array, head: Array, softcap: float = 0.0, valid_vocab: int = 0) -> tuple[Array, Array | None]:
    """Float32 logits of hidden states `x` (..., D) against `head` (V, D); also tanh(z / cap)."""
    logits = jnp.einsum("...d,vd->...v", x, head, preferred_element_type=jnp.float32)
    return _cap(logits, softcap, valid_vocab, head.shape[0])


@dataclasses.dataclass(frozen=True)
class Fp8Head:
    """Scales of the FP8 head: x * x_scale and head * w_scale in e4m3, dlogits * grad_scale in e5m2 (saturating).

    Record 19: (2, 32, 2**29); record 21: (2, 512, 2**19)."""

    x_scale: float = 2.0
    w_scale: float = 32.0
    grad_scale: float = 2.0**29


def to_fp8(a: Array, scale: float, dtype) -> Array:
    """a * scale rounded to an FP8 dtype, saturating at its largest finite value (as the record's compiled cast)."""
    top = float(jnp.finfo(dtype).max)
    return jnp.clip(a.astype(jnp.float32) * scale, -top, top).astype(dtype)


def _fp8_dot(spec: str, a8: Array, b8: Array, unscale: float) -> Array:
    """float32 product of two FP8 operands, unscaled: the dequantise-then-dot form XLA maps onto FP8 GEMMs."""
    out = jnp.einsum(spec, a8.astype(jnp.bfloat16), b8.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    return out * unscale


def num_chunks(batch: int, length: int, chunk_tokens: int) -> int:
    """The fewest chunks of the sequence axis with at most `chunk_tokens` tokens each."""
    if chunk_tokens <= 0:
        return 1
    for k in range(max(1, -(-batch * length // chunk_tokens)), length + 1):
        if length % k == 0:
            return k
    return length


def _chunked(x: Array, targets: Array, chunks: int) -> tuple[Array, Array]:
    batch, length, dim = x.shape
    size = length // chunks
    xs = jnp.moveaxis(x.reshape(batch, chunks, size, dim), 1, 0)
    ts = jnp.moveaxis(targets.reshape(batch, chunks, size), 1, 0)
    return xs, ts


def cross_entropy(x: Array, head: Array, targets: Array, softcap: float = 0.0, chunk_tokens: int = 0,
                  valid_vocab: int = 0) -> Array:
    """Mean cross-entropy of (B, T, D) hidden states; forward only (evaluation)."""
    xs, ts = _chunked(x, targets, num_chunks(*targets.shape, chunk_tokens))

    def chunk_loss(total, chunk):
        logits, _ = logits_of(chunk[0], head, softcap, valid_vocab)
        label = jnp.take_along_axis(logits, chunk[1][..., None], axis=-1)[..., 0]
        return total + jnp.sum(jax.nn.logsumexp(logits, axis=-1) - label), None

    total, _ = jax.lax.scan(chunk_loss, jnp.float32(0), (xs, ts))
    return total / targets.size


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def fused_cross_entropy(x: Array, head: Array, targets: Array, softcap: float = 0.0, chunk_tokens: int = 0,
                        valid_vocab: int = 0, fp8: Fp8Head | None = None) -> Array:
    """Mean cross-entropy of (B, T, D) hidden states, differentiable in `x` and `head` (FP8 matmuls with `fp8`)."""
    return _fused_forward(x, head, targets, softcap, chunk_tokens, valid_vocab, fp8)[0]


def _fused_forward(x, head, targets, softcap, chunk_tokens, valid_vocab, fp8=None):
    batch, length, dim = x.shape
    chunks = num_chunks(batch, length, chunk_tokens)
    xs, ts = _chunked(x, targets, chunks)
    n = targets.size
    head8 = None if fp8 is None else to_fp8(head, fp8.w_scale, jnp.float8_e4m3fn)

    def chunk_step(dhead, chunk):
        xc, tc = chunk
        if fp8 is None:
            logits, capped = logits_of(xc, head, softcap, valid_vocab)
        else:
            x8 = to_fp8(xc, fp8.x_scale, jnp.float8_e4m3fn)
            raw = _fp8_dot("btd,vd->btv", x8, head8, 1.0 / (fp8.x_scale * fp8.w_scale))
            logits, capped = _cap(raw, softcap, valid_vocab, head.shape[0])
        lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        label = jnp.take_along_axis(logits, tc[..., None], axis=-1)
        loss = jnp.sum(lse - label)
        # d(loss)/d(logits) = softmax - one_hot, then through the softcap's tanh.
        dlogits = jnp.exp(logits - lse) - jax.nn.one_hot(tc, head.shape[0], dtype=jnp.float32)
        if capped is not None:
            dlogits = dlogits * (1.0 - capped * capped)
        if fp8 is not None:
            g8 = to_fp8(dlogits / n, fp8.grad_scale, jnp.float8_e5m2)
            dx = _fp8_dot("btv,vd->btd", g8, head8, 1.0 / (fp8.grad_scale * fp8.w_scale)).astype(x.dtype)
            dhead = dhead + _fp8_dot("btv,btd->vd", g8, x8, 1.0 / (fp8.grad_scale * fp8.x_scale))
            return dhead, (loss, dx)
        dlogits = (dlogits / n).astype(x.dtype)
        dx = jnp.einsum("btv,vd->btd", dlogits, head, preferred_element_type=jnp.float32).astype(x.dtype)
        dhead = dhead + jnp.einsum("btv,btd->vd", dlogits, xc, preferred_element_type=jnp.float32)
        return dhead, (loss, dx)

    dhead, (losses, dxs) = jax.lax.scan(chunk_step, jnp.zeros(head.shape, jnp.float32), (xs, ts))
    dx = jnp.moveaxis(dxs, 0, 1).reshape(batch, length, dim)
    return jnp.sum(losses) / n, (dx, dhead.astype(head.dtype), targets)


def _fused_bwd(softcap, chunk_tokens, valid_vocab, fp8, residuals, g):
    del softcap, chunk_tokens, valid_vocab, fp8
    dx, dhead, targets = residuals
    zero_targets = np.zeros(targets.shape, dtype=jax.dtypes.float0)
    return (g * dx).astype(dx.dtype), (g * dhead).astype(dhead.dtype), zero_targets


fused_cross_entropy.defvjp(_fused_forward, _fused_bwd)
