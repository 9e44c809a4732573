"""Building blocks shared by the model families (libs/models/gpt.py, libs/models/llama.py).

RMSNorm (parameter-free or with a learned scale), rotary position embeddings (the
inverse frequencies, Llama 3.1's long-context scaling of them, and both pairings of
the rotated dimensions), the attention call (implementation choice, causal and
document masks, grouped-query K/V), initialisers, parameter and FLOP counting.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import struct

Array = jax.Array
constrain = nn.with_logical_constraint

ROPE_STYLES = ("half", "interleaved")
ATTENTION_IMPLS = ("auto", "xla", "cudnn")

# --- initialisers ------------------------------------------------------------------------------------

# PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
FAN_IN_UNIFORM = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def symmetric_uniform(limit: float):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -limit, limit)


def stored_as(init, dtype):
    """`init` sampled in float32, then stored in `dtype` (PyTorch's init followed by .bfloat16())."""
    if dtype == jnp.float32:
        return init
    return lambda key, shape, _dtype=None: init(key, shape, jnp.float32).astype(dtype)


# --- normalisation -----------------------------------------------------------------------------------


def rms_norm(x: Array, eps: float = 1e-6, scale: Array | None = None) -> Array:
    """RMSNorm computed in float32, returned in x's dtype; times `scale` (cast to x's dtype) if given.

    Without a scale this is the speedrun's parameter-free norm; with one it is Meta's
    Llama `RMSNorm` (normalise in float32, cast back, then multiply by the weight).
    """
    x32 = x.astype(jnp.float32)
    out = (x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)).astype(x.dtype)
    if scale is not None:
        out = out * scale.astype(x.dtype)
    return out


class RMSNorm(nn.Module):
    """RMSNorm with a learned per-channel scale (initialised to one, logical axis `embed`)."""

    eps: float = 1e-5
    dtype: Any = jnp.float32  # the output's dtype
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (x.shape[-1],), self.param_dtype)
        return rms_norm(x.astype(self.dtype), self.eps, scale)


# --- rotary position embeddings ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's frequency-dependent RoPE scaling (Meta's `apply_scaling`).

    Wavelengths shorter than original_max_position / high_freq_factor keep their
    frequency, those longer than original_max_position / low_freq_factor are divided
    by `factor`, and those between are interpolated smoothly.
    """

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192


def rope_inv_freq(dim: int, theta: float, scaling: RopeScaling | None = None) -> Array:
    """float32 inverse frequencies theta^(-2i/dim), i < dim/2, optionally with the 3.1 scaling."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    if scaling is None:
        return inv_freq
    old = float(scaling.original_max_position)
    low_wavelen = old / scaling.low_freq_factor
    high_wavelen = old / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    smooth = (old / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    mid = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    out = jnp.where(wavelen < high_wavelen, inv_freq, jnp.where(wavelen > low_wavelen, inv_freq / scaling.factor, mid))
    return out.astype(jnp.float32)


def rope_inv_freq_half_truncated(dim: int, base: float) -> Array:
    """float32 inverse frequencies of the speedrun's "half-truncated" RoPE (records 17+), dim/2 of them.

    The first dim/4 are (1/base) ** linspace(0, 1, dim/4), from 1 down to 1/base; the other dim/4 are 0,
    so those pairs are not rotated. The exponents follow torch.linspace's float32 arithmetic (step =
    1/(n-1); the upper half of the entries counted back from the end)."""
    n = dim // 4
    step = np.float32(1.0) / np.float32(max(n - 1, 1))
    i = np.arange(n)
    exps = np.where(i < n // 2, i.astype(np.float32) * step, np.float32(1.0) - (n - 1 - i).astype(np.float32) * step)
    exps = exps if n > 1 else np.zeros(n, np.float32)  # torch.linspace(0, 1, 1) is [0]
    inv_freq = jnp.float32(1.0 / base) ** jnp.asarray(exps, jnp.float32)
    return jnp.concatenate([inv_freq, jnp.zeros(dim // 2 - n, jnp.float32)])


def rotary(x: Array, inv_freq: Array, style: str = "half", positions: Array | None = None,
           clockwise: bool = False) -> Array:
    """Rotary embedding over the last axis of a (batch, length, heads, dim) array.

    style "half": dimension i pairs with i + dim/2 (HF transformers' rotate_half);
    "interleaved": dimension 2i pairs with 2i + 1 (Meta's reference code, GGUF/llama.cpp).
    Each pair (a, b) at position p turns by +p * inv_freq: (a cos - b sin, a sin + b cos);
    `clockwise` turns the other way (the speedrun GPT's convention, kept bit for bit).
    `positions` (length,) or (batch, length): default 0..length-1.
    """
    length = x.shape[1]
    if positions is None:
        positions = jnp.arange(length, dtype=jnp.float32)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # (..., length, dim/2)
    if angles.ndim == 2:
        angles = angles[None]
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]
    x32 = x.astype(jnp.float32)
    if style == "half":
        x1, x2 = jnp.split(x32, 2, axis=-1)
    elif style == "interleaved":
        x1, x2 = x32[..., 0::2], x32[..., 1::2]
    else:
        raise ValueError(f"rotary style {style!r}: expected one of {ROPE_STYLES}")
    if clockwise:
        y1, y2 = x1 * cos + x2 * sin, -x1 * sin + x2 * cos
    else:
        y1, y2 = x1 * cos - x2 * sin, x1 * sin + x2 * cos
    if style == "half":
        out = jnp.concatenate([y1, y2], axis=-1)
    else:
        out = jnp.stack([y1, y2], axis=-1).reshape(x.shape)
    return out.astype(x.dtype)


# --- attention ---------------------------------------------------------------------------------------


def document_mask(tokens: Array, eot_id: int) -> Array:
    """(batch, 1, length, length) bool: True where query i may attend key j (causality not included).

    Documents are delimited by the end-of-text token that *starts* each of them (the
    corpus is written `[eot] + doc` per document, as modded-nanogpt's shards are):
    token i's document number is the count of eot tokens at positions <= i, so a
    token attends only to tokens at or after the last eot at or before it (the eot
    itself included; tokens before the first eot form document 0).
    """
    doc = jnp.cumsum(tokens == eot_id, axis=-1)
    return (doc[:, :, None] == doc[:, None, :])[:, None]


def attention_impl(choice: str, q: Array, masked: bool = False) -> str | None:
    """jax.nn.dot_product_attention's `implementation` for `choice` ("auto" | "xla" | "cudnn").

    "auto" takes cuDNN's fused kernel on a GPU for bf16/fp16 heads up to 128 wide
    without an explicit mask, else XLA.
    """
    if choice == "xla":
        return None
    if choice == "cudnn":
        return "cudnn"
    usable = (jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] <= 128
              and not masked)
    return "cudnn" if usable else None


def attention(q: Array, k: Array, v: Array, impl: str = "auto", mask: Array | None = None,
              scale: float | None = None) -> Array:
    """Causal attention of (B, T, N, H) queries over (B, T, K, H) keys/values; K divides N (GQA).
    `scale` multiplies q.k (None: 1/sqrt(H))."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale, is_causal=True,
                                        implementation=attention_impl(impl, q, mask is not None))


# --- cached decoding ---------------------------------------------------------------------------------


@struct.dataclass
class KVCache:
    """Keys and values of every layer for `slots` sequences of up to `max_len` positions.

    k[i], v[i]: (slots, kv_heads, max_len, head_dim) for layer i: heads before positions, so that attention
    contracts a slot's keys in place, without a transposed copy. A call writes the keys and values of its
    tokens at their positions and attends over the first `attend_len` positions of its rows' slots (a
    static bucket, so a step compiles once per bucket, not per request).
    """

    k: tuple[Array, ...]
    v: tuple[Array, ...]

    @classmethod
    def zeros(cls, num_layers: int, slots: int, max_len: int, kv_heads: int, head_dim: int, dtype) -> KVCache:
        shape = (slots, kv_heads, max_len, head_dim)
        return cls(tuple(jnp.zeros(shape, dtype) for _ in range(num_layers)),
                   tuple(jnp.zeros(shape, dtype) for _ in range(num_layers)))

    @property
    def max_len(self) -> int:
        return self.k[0].shape[2]


@struct.dataclass
class CachedCall:
    """Where a cached forward pass reads and writes: `tokens` (B, T) of rows `slots` (B,) (None: all
    slots in order) at `positions` (B, T). A position of max_len or more marks padding: nothing is
    written for it. `attend_len` (static) bounds the positions attended (> every real position)."""

    positions: Array
    slots: Array | None = None
    attend_len: int = struct.field(pytree_node=False, default=0)


def cached_attention(q: Array, k: Array, v: Array, cache_k: Array, cache_v: Array,
                     call: CachedCall) -> tuple[Array, Array, Array]:
    """Writes k, v (B, T, K, H) into the cache at `call.positions`, then lets each query (B, T, N, H)
    attend to the cached positions at or before its own. Returns (output (B, T, N, H), cache_k, cache_v)."""
    batch, length, heads, dim = q.shape
    kv_heads, positions = cache_k.shape[1], call.positions
    rows = jnp.arange(cache_k.shape[0]) if call.slots is None else call.slots
    cache_k = cache_k.at[rows[:, None], :, positions].set(k.astype(cache_k.dtype), mode="drop")
    cache_v = cache_v.at[rows[:, None], :, positions].set(v.astype(cache_v.dtype), mode="drop")
    span = call.attend_len or cache_k.shape[2]
    keys, values = cache_k[:, :, :span], cache_v[:, :, :span]
    if call.slots is not None:
        keys, values = keys[call.slots], values[call.slots]
    group = heads // kv_heads  # query head n reads K/V head n // group
    qg = q.reshape(batch, length, kv_heads, group, dim).transpose(0, 2, 3, 1, 4).reshape(batch, kv_heads, -1, dim)
    scores = jnp.einsum("bkqh,bklh->bkql", qg, keys.astype(q.dtype), preferred_element_type=jnp.float32)
    query_pos = jnp.broadcast_to(positions[:, None, :], (batch, group, length)).reshape(batch, 1, -1, 1)
    scores = jnp.where(jnp.arange(span) <= query_pos, scores * dim ** -0.5, -jnp.inf)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    out = jnp.einsum("bkql,bklh->bkqh", probs, values.astype(q.dtype))
    out = out.reshape(batch, kv_heads, group, length, dim).transpose(0, 3, 1, 2, 4).reshape(batch, length, heads, dim)
    return out, cache_k, cache_v


# --- counting ----------------------------------------------------------------------------------------


def count_params(params: Any) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))


def matmul_flops_per_token(params: Any, lookup_only: tuple[str, ...], num_layers: int, attn_width: int,
                           seq_len: int) -> float:
    """6 * (parameters outside the lookup-only top-level entries) + 12 * layers * attn_width * context.

    A name in `lookup_only` ending in "_" matches every top-level entry it prefixes.
    """
    matmul = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        top = str(getattr(path[0], "key", path[0]))
        if not any(top == name or (name.endswith("_") and top.startswith(name)) for name in lookup_only):
            matmul += leaf.size
    return 6.0 * matmul + 12.0 * num_layers * attn_width * seq_len
