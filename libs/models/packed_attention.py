"""Causal attention over packed documents with a sliding window (speedrun records 12-21).

Records 12 on train on one long sequence per device (64K tokens, later 48K) into which documents are packed,
each starting with the end-of-text token. A query at position q may read the key at position k when

    k <= q  and  segment(k) == segment(q)  and  q // b - k // b < window_blocks

with `segment` counting the end-of-text tokens up to each position (`segment_ids`) and `b` the window's block
size: 1 for the token windows of records 12-15, 128 for the block windows of FlexAttention's block masks in
records 16-21 (whose count-based block selection reaches the same key blocks). `window_blocks` is a traced
integer, so a window schedule changes it during training without recompiling; a static `max_window_blocks`
bounds it. Record 15 also kept only keys fewer than ceil(window / c) blocks of c = 128 tokens back
(`clamp_block`), on top of its token window.

Implementations (`PackedAttention.impl`):
- "reference": the dense (T, T) mask above, through XLA. Exact and O(T^2): tests and small shapes.
- "banded": each chunk of `chunk` queries attends to its own chunk plus the (max_window_blocks - 1) * b keys
  before it, so work and memory grow as T * (chunk + window) instead of T^2. The chunk-local attention runs
  through `jax.nn.dot_product_attention` with an explicit mask, in XLA ("banded") or cuDNN ("banded_cudnn";
  GPU, bf16/fp16).
- "auto": "banded_cudnn" on a GPU for 16-bit inputs; elsewhere "banded", or "reference" where one band would
  read at least the whole row (short rows, such as the CPU proxy's 1,024 tokens).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

Array = jax.Array
IMPLS = ("auto", "reference", "banded", "banded_cudnn")
# Queries per band. On an H200 (docs/benchmarks.md, "Packed-document attention") 1024 was fastest for both
# kernels at the records' windows: 1024 and 1792 tokens.
DEFAULT_CHUNK = 1024


def segment_ids(tokens: Array, eot_id: int) -> Array:
    """(..., T) int32 document number of each token: the end-of-text tokens at or before it.

    The corpus writes each document as `[eot] + doc`, so an end-of-text token opens its document.
    A negative `eot_id` puts every token in document 0."""
    if eot_id < 0:
        return jnp.zeros(tokens.shape, jnp.int32)
    return jnp.cumsum(tokens == eot_id, axis=-1, dtype=jnp.int32)


def allowed(q_pos: Array, k_pos: Array, q_seg: Array, k_seg: Array, window_blocks: Array,
            block_size: int, clamp_block: int = 0) -> Array:
    """Where query positions q_pos (..., Q, 1) may read key positions k_pos (..., 1, K): causal, same
    document, and fewer than `window_blocks` blocks of `block_size` back (negative key positions: padding).
    `clamp_block` c > 0 also requires q // c - k // c < ceil(window_blocks * block_size / c)."""
    mask = ((k_pos <= q_pos) & (k_pos >= 0) & (q_seg == k_seg)
            & (q_pos // block_size - k_pos // block_size < window_blocks))
    if clamp_block > 0:
        clamp_blocks = (window_blocks * block_size + clamp_block - 1) // clamp_block
        mask &= q_pos // clamp_block - k_pos // clamp_block < clamp_blocks
    return mask


@dataclasses.dataclass(frozen=True)
class PackedAttention:
    """Static settings of packed-document sliding-window attention; call it with (q, k, v, segments, window).

    block_size: the window's unit in tokens. max_window_blocks: the largest window (0: no window, full causal
    attention within documents; "banded" then falls back to "reference"). chunk: queries per band
    (0: DEFAULT_CHUNK), rounded up to whole blocks and to a divisor of the length. clamp_block: see `allowed`
    (0: off); it only removes keys, so the bands' reach is unchanged."""

    block_size: int = 128
    max_window_blocks: int = 0
    chunk: int = 0
    impl: str = "auto"
    clamp_block: int = 0

    def __post_init__(self):
        if self.impl not in IMPLS:
            raise ValueError(f"packed attention impl {self.impl!r}: expected one of {IMPLS}")
        if self.block_size < 1 or self.max_window_blocks < 0 or self.chunk < 0 or self.clamp_block < 0:
            raise ValueError(f"packed attention: block_size >= 1, max_window_blocks >= 0, chunk >= 0 and "
                             f"clamp_block >= 0 needed, got {self.block_size}, {self.max_window_blocks}, "
                             f"{self.chunk}, {self.clamp_block}")

    @property
    def max_window(self) -> int:
        """Keys before each band: what the largest window reaches before a query's own block, (max_window_blocks
        - 1) * block_size, rounded up to a multiple of 128 (cuDNN's flash attention wants such key lengths)."""
        return -(-(self.max_window_blocks - 1) * self.block_size // 128) * 128

    def chunk_for(self, length: int) -> int:
        """Queries per band for a sequence of `length` tokens (a divisor of it, whole blocks)."""
        want = self.chunk or DEFAULT_CHUNK
        want = -(-want // self.block_size) * self.block_size
        for chunk in range(want, length, self.block_size):
            if length % chunk == 0:
                return chunk
        return length

    def resolved_impl(self, q: Array) -> str:
        impl = self.impl
        if impl == "auto":
            gpu = jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
            length = q.shape[1]
            dense_is_cheaper = length <= self.chunk_for(length) + self.max_window
            impl = "banded_cudnn" if gpu else "reference" if dense_is_cheaper else "banded"
        if impl != "reference" and self.max_window_blocks == 0:
            return "reference"
        return impl

    def __call__(self, q: Array, k: Array, v: Array, segments: Array, window_blocks: Array | int | None = None,
                 scale: float | None = None) -> Array:
        """q (B, T, N, H); k, v (B, T, K, H) with K dividing N; segments (B, T) int; window_blocks a scalar
        (None: the largest), clipped to [1, max_window_blocks]; scale multiplies q.k (None: 1/sqrt(H)).
        Returns (B, T, N, H)."""
        if self.max_window_blocks == 0:
            window = jnp.asarray(q.shape[1] + self.block_size, jnp.int32)  # never binds
        else:
            top = self.max_window_blocks
            window = jnp.clip(jnp.asarray(top if window_blocks is None else window_blocks, jnp.int32), 1, top)
        impl = self.resolved_impl(q)
        if impl == "reference":
            return reference_attention(q, k, v, segments, window, self.block_size, scale, self.clamp_block)
        return banded_attention(q, k, v, segments, window, self.block_size, self.max_window,
                                self.chunk_for(q.shape[1]), "cudnn" if impl == "banded_cudnn" else "xla", scale,
                                self.clamp_block)


def reference_attention(q: Array, k: Array, v: Array, segments: Array, window_blocks: Array,
                        block_size: int, scale: float | None = None, clamp_block: int = 0) -> Array:
    """The dense masked definition, through XLA: the ground truth the other implementations are tested on."""
    pos = jnp.arange(q.shape[1])
    mask = allowed(pos[:, None], pos[None, :], segments[:, :, None], segments[:, None, :], window_blocks,
                   block_size, clamp_block)
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=scale, implementation="xla")


def _bands(x: Array, chunk: int, reach: int, fill) -> Array:
    """(B, T, ...) -> (B, T // chunk, reach + chunk, ...): each chunk preceded by the `reach` entries before it
    (`fill` before the sequence start)."""
    batch, length = x.shape[:2]
    n = length // chunk
    padded = jnp.concatenate([jnp.full((batch, reach) + x.shape[2:], fill, x.dtype), x], axis=1)
    starts = jnp.arange(n) * chunk  # chunk i's band is padded[i*chunk : i*chunk + reach + chunk]
    idx = starts[:, None] + jnp.arange(reach + chunk)[None, :]
    return padded[:, idx]


def banded_attention(q: Array, k: Array, v: Array, segments: Array, window_blocks: Array, block_size: int,
                     reach: int, chunk: int, inner: str = "xla", scale: float | None = None,
                     clamp_block: int = 0) -> Array:
    """Chunked attention: queries [s, s + chunk) read keys [s - reach, s + chunk) under the `allowed` mask.

    Exact whenever `reach` covers the window, (window_blocks - 1) * block_size <= reach, and chunk starts are
    whole blocks. `inner`: the chunk-local kernel of jax.nn.dot_product_attention ("xla" | "cudnn")."""
    batch, length, heads, dim = q.shape
    if length % chunk or (chunk < length and chunk % block_size):
        raise ValueError(f"banded attention: chunk {chunk} must divide the length {length} and be whole "
                         f"blocks of {block_size}")
    n = length // chunk
    k_band, v_band = _bands(k, chunk, reach, 0), _bands(v, chunk, reach, 0)
    seg_band = _bands(segments, chunk, reach, -1)
    q_pos = jnp.arange(length).reshape(n, chunk)
    k_pos = jnp.arange(n)[:, None] * chunk - reach + jnp.arange(reach + chunk)[None, :]
    mask = allowed(q_pos[None, :, :, None], k_pos[None, :, None, :], segments.reshape(batch, n, chunk, 1),
                   seg_band[:, :, None, :], window_blocks, block_size, clamp_block)
    fold = lambda x: x.reshape((batch * n,) + x.shape[2:])
    out = jax.nn.dot_product_attention(fold(q.reshape(batch, n, chunk, heads, dim)), fold(k_band), fold(v_band),
                                       mask=fold(mask)[:, None], scale=scale, implementation=inner)
    return out.reshape(batch, length, heads, dim)
