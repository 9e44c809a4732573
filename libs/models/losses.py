"""Next-token cross-entropy through the output head, a chunk of positions at a time.

A GPT-2 head over a 50k vocabulary makes float32 logits of 13 GB for a batch of
64 x 1024 tokens. Both functions here form them a chunk of sequence positions at
a time (every row of the batch in each chunk, so a data-parallel batch keeps all
devices busy). `fused_cross_entropy` also computes the gradients with respect to
the hidden states and the head inside that same pass (the softmax-minus-one-hot
identity), so training neither keeps nor recomputes the logits.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def logits_of(x: Array, head: Array, softcap: float = 0.0, valid_vocab: int = 0) -> tuple[Array, Array | None]:
    """Float32 logits of hidden states `x` (..., D) against `head` (V, D); also tanh(z / cap)."""
    logits = jnp.einsum("...d,vd->...v", x, head, preferred_element_type=jnp.float32)
    capped = None
    if softcap > 0:
        capped = jnp.tanh(logits / softcap)
        logits = softcap * capped
    if 0 < valid_vocab < head.shape[0]:
        logits = jnp.where(jnp.arange(head.shape[0]) < valid_vocab, logits, -jnp.inf)
    return logits, capped


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def fused_cross_entropy(x: Array, head: Array, targets: Array, softcap: float = 0.0, chunk_tokens: int = 0,
                        valid_vocab: int = 0) -> Array:
    """Mean cross-entropy of (B, T, D) hidden states, differentiable in `x` and `head`."""
    return _fused_forward(x, head, targets, softcap, chunk_tokens, valid_vocab)[0]


def _fused_forward(x, head, targets, softcap, chunk_tokens, valid_vocab):
    batch, length, dim = x.shape
    chunks = num_chunks(batch, length, chunk_tokens)
    xs, ts = _chunked(x, targets, chunks)
    n = targets.size

    def chunk_step(dhead, chunk):
        xc, tc = chunk
        logits, capped = logits_of(xc, head, softcap, valid_vocab)
        lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        label = jnp.take_along_axis(logits, tc[..., None], axis=-1)
        loss = jnp.sum(lse - label)
        # d(loss)/d(logits) = softmax - one_hot, then through the softcap's tanh.
        dlogits = jnp.exp(logits - lse) - jax.nn.one_hot(tc, head.shape[0], dtype=jnp.float32)
        if capped is not None:
            dlogits = dlogits * (1.0 - capped * capped)
        dlogits = (dlogits / n).astype(x.dtype)
        dx = jnp.einsum("btv,vd->btd", dlogits, head, preferred_element_type=jnp.float32).astype(x.dtype)
        dhead = dhead + jnp.einsum("btv,btd->vd", dlogits, xc, preferred_element_type=jnp.float32)
        return dhead, (loss, dx)

    dhead, (losses, dxs) = jax.lax.scan(chunk_step, jnp.zeros(head.shape, jnp.float32), (xs, ts))
    dx = jnp.moveaxis(dxs, 0, 1).reshape(batch, length, dim)
    return jnp.sum(losses) / n, (dx, dhead.astype(head.dtype), targets)


def _fused_bwd(softcap, chunk_tokens, valid_vocab, residuals, g):
    del softcap, chunk_tokens, valid_vocab
    dx, dhead, targets = residuals
    zero_targets = np.zeros(targets.shape, dtype=jax.dtypes.float0)
    return (g * dx).astype(dx.dtype), (g * dhead).astype(dhead.dtype), zero_targets


fused_cross_entropy.defvjp(
    lambda x, head, targets, softcap, chunk_tokens, valid_vocab: _fused_forward(
        x, head, targets, softcap, chunk_tokens, valid_vocab),
    _fused_bwd,
)
