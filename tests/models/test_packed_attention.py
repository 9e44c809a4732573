"""Packed-document sliding-window attention: every implementation against a dense masked reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.models import packed_attention as pa

EOT = 0


def _inputs(seed, batch=2, length=256, heads=4, kv_heads=2, dim=16, vocab=24, dtype=jnp.float32):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    q = jax.random.normal(keys[0], (batch, length, heads, dim), dtype)
    k = jax.random.normal(keys[1], (batch, length, kv_heads, dim), dtype)
    v = jax.random.normal(keys[2], (batch, length, kv_heads, dim), dtype)
    tokens = jax.random.randint(keys[3], (batch, length), 0, vocab)  # about one eot in `vocab` tokens
    return q, k, v, pa.segment_ids(tokens, EOT)


def _clamp_mask(seg, window_tokens, clamp):
    """Record 15's mask written out: causal, same document, fewer than `window_tokens` tokens back and fewer
    than ceil(window_tokens / clamp) blocks of `clamp` back. seg (B, T) -> (B, T, T) bool."""
    seg = np.asarray(seg)
    batch, length = seg.shape
    mask = np.zeros((batch, length, length), bool)
    blocks = math.ceil(window_tokens / clamp)
    for b in range(batch):
        for i in range(length):
            for j in range(i + 1):
                mask[b, i, j] = seg[b, i] == seg[b, j] and i - j < window_tokens and i // clamp - j // clamp < blocks
    return mask


def _naive(q, k, v, seg, window_blocks, block, scale=None, clamp=0):
    """Softmax attention written out in numpy, one query at a time (`clamp`: record 15's block clamp)."""
    q, k, v, seg = (np.asarray(x, np.float64) for x in (q, k, v, seg))
    batch, length, heads, dim = q.shape
    group = heads // k.shape[2]
    scale = 1 / np.sqrt(dim) if scale is None else scale
    allowed = _clamp_mask(seg, window_blocks * block, clamp) if clamp else None
    out = np.zeros_like(q)
    for b in range(batch):
        for i in range(length):
            keys = [j for j in range(i + 1) if seg[b, j] == seg[b, i] and i // block - j // block < window_blocks]
            if clamp:
                keys = [j for j in keys if allowed[b, i, j]]
            for h in range(heads):
                s = np.array([q[b, i, h] @ k[b, j, h // group] for j in keys]) * scale
                p = np.exp(s - s.max())
                out[b, i, h] = (p / p.sum()) @ v[b, keys, h // group]
    return out


def test_segment_ids_open_a_document_at_each_eot():
    tokens = jnp.array([[5, 0, 3, 4, 0, 0, 7]])
    assert pa.segment_ids(tokens, 0).tolist() == [[0, 1, 1, 1, 2, 3, 3]]
    assert pa.segment_ids(tokens, -1).tolist() == [[0] * 7]


@pytest.mark.parametrize("window_blocks,block", [(3, 4), (1, 8), (1000, 1)])
def test_reference_matches_the_written_out_definition(window_blocks, block):
    q, k, v, seg = _inputs(0, batch=1, length=48, vocab=8)
    want = _naive(q, k, v, seg, window_blocks, block)
    got = pa.reference_attention(q, k, v, seg, jnp.int32(window_blocks), block)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)


@pytest.mark.parametrize("window", [1, 3, 4, 6, 9, 13])
def test_block_clamp_mask_matches_the_written_out_mask(window):
    tokens = jax.random.randint(jax.random.key(9), (2, 40), 0, 12)
    seg = pa.segment_ids(tokens, EOT)
    pos = jnp.arange(40)
    got = pa.allowed(pos[:, None], pos[None, :], seg[:, :, None], seg[:, None, :], jnp.int32(window), 1, 4)
    want = _clamp_mask(seg, window, 4)
    np.testing.assert_array_equal(np.asarray(got), want)
    plain = pa.allowed(pos[:, None], pos[None, :], seg[:, :, None], seg[:, None, :], jnp.int32(window), 1)
    # k >= q - (W - 1) puts k at most ceil(W / 4) - 1 blocks back exactly when W = 1 (mod 4); else it binds.
    assert np.array_equal(np.asarray(plain), want) == (window % 4 == 1)


def test_block_clamp_in_every_implementation():
    q, k, v, seg = _inputs(7, batch=1, length=64, vocab=30)
    want = _naive(q, k, v, seg, 6, 1, clamp=4)
    got = pa.reference_attention(q, k, v, seg, jnp.int32(6), 1, clamp_block=4)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    attn = pa.PackedAttention(block_size=1, max_window_blocks=13, chunk=16, impl="banded", clamp_block=4)
    np.testing.assert_allclose(np.asarray(attn(q, k, v, seg, 6)), want, atol=2e-5)
    assert attn.max_window == pa.PackedAttention(block_size=1, max_window_blocks=13).max_window  # same reach
    unclamped = pa.reference_attention(q, k, v, seg, jnp.int32(6), 1)
    assert not np.allclose(np.asarray(unclamped), want, atol=1e-3)
    with pytest.raises(ValueError, match="clamp_block"):
        pa.PackedAttention(clamp_block=-1)


def test_scale_in_every_implementation():
    q, k, v, seg = _inputs(8, batch=1, length=64, vocab=30)
    want = _naive(q, k, v, seg, 3, 4, scale=0.12)
    np.testing.assert_allclose(np.asarray(pa.reference_attention(q, k, v, seg, jnp.int32(3), 4, 0.12)), want,
                               atol=2e-5)
    attn = pa.PackedAttention(block_size=4, max_window_blocks=5, chunk=16, impl="banded")
    np.testing.assert_allclose(np.asarray(attn(q, k, v, seg, 3, 0.12)), want, atol=2e-5)
    np.testing.assert_allclose(np.asarray(attn(q, k, v, seg, 3)), _naive(q, k, v, seg, 3, 4), atol=2e-5)


@pytest.mark.parametrize("block,max_blocks,chunk", [(1, 100, 0), (16, 5, 64), (16, 5, 0), (32, 3, 128),
                                                    (8, 12, 32)])
def test_banded_matches_reference(block, max_blocks, chunk):
    q, k, v, seg = _inputs(1)
    attn = pa.PackedAttention(block_size=block, max_window_blocks=max_blocks, chunk=chunk, impl="banded")
    for window in (1, 2, max_blocks):
        want = pa.reference_attention(q, k, v, seg, jnp.int32(window), block)
        np.testing.assert_allclose(np.asarray(attn(q, k, v, seg, window)), np.asarray(want), atol=2e-5)


def test_window_is_clipped_to_its_range():
    q, k, v, seg = _inputs(2)
    attn = pa.PackedAttention(block_size=16, max_window_blocks=4, impl="banded")
    top = pa.reference_attention(q, k, v, seg, jnp.int32(4), 16)
    one = pa.reference_attention(q, k, v, seg, jnp.int32(1), 16)
    np.testing.assert_allclose(np.asarray(attn(q, k, v, seg, 9)), np.asarray(top), atol=2e-5)
    np.testing.assert_allclose(np.asarray(attn(q, k, v, seg, None)), np.asarray(top), atol=2e-5)
    np.testing.assert_allclose(np.asarray(attn(q, k, v, seg, 0)), np.asarray(one), atol=2e-5)
    assert not np.allclose(np.asarray(top), np.asarray(one), atol=1e-3)  # the window does change the result


def test_no_window_is_document_causal_attention():
    q, k, v, seg = _inputs(3)
    got = pa.PackedAttention(max_window_blocks=0, impl="banded")(q, k, v, seg, 1)
    want = pa.reference_attention(q, k, v, seg, jnp.int32(10**6), 1)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5)
    one_doc = jnp.zeros_like(seg)
    causal = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(np.asarray(pa.PackedAttention()(q, k, v, one_doc)), np.asarray(causal), atol=2e-5)


def test_gradients_match_reference():
    q, k, v, seg = _inputs(4, length=128)
    attn = pa.PackedAttention(block_size=8, max_window_blocks=6, chunk=32, impl="banded")
    loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))
    got = jax.grad(loss(lambda q, k, v: attn(q, k, v, seg, 3)), argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(loss(lambda q, k, v: pa.reference_attention(q, k, v, seg, jnp.int32(3), 8)),
                    argnums=(0, 1, 2))(q, k, v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=5e-5)


def test_a_traced_window_compiles_once():
    q, k, v, seg = _inputs(5, length=128)
    attn = pa.PackedAttention(block_size=8, max_window_blocks=8, impl="banded")
    traces = []

    @jax.jit
    def run(window):
        traces.append(1)
        return attn(q, k, v, seg, window)

    outs = [run(jnp.int32(w)) for w in (1, 4, 8)]
    assert len(traces) == 1
    for w, out in zip((1, 4, 8), outs):
        np.testing.assert_allclose(np.asarray(out), np.asarray(pa.reference_attention(q, k, v, seg, w, 8)),
                                   atol=2e-5)


def test_chunks_divide_the_length_in_whole_blocks():
    attn = pa.PackedAttention(block_size=128, max_window_blocks=14)
    assert attn.chunk_for(65536) == 1024 and attn.chunk_for(49152) == 1024
    assert pa.PackedAttention(block_size=1, max_window_blocks=1024).max_window == 1024  # 1023 keys, rounded up
    assert attn.max_window == 13 * 128
    assert pa.PackedAttention(block_size=128, max_window_blocks=3, chunk=384).chunk_for(1024) == 512
    assert pa.PackedAttention(block_size=16, max_window_blocks=2).chunk_for(100) == 100
    with pytest.raises(ValueError, match="impl"):
        pa.PackedAttention(impl="flash")


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="auto picks cuDNN on a GPU")
def test_auto_reads_the_whole_row_densely_when_a_band_would_read_more():
    attn = pa.PackedAttention(block_size=128, max_window_blocks=14)  # bands of 1,024 queries + 1,664 keys
    assert attn.resolved_impl(jnp.zeros((1, 1024, 4, 32))) == "reference"
    assert attn.resolved_impl(jnp.zeros((1, 2688, 4, 32))) == "reference"
    assert attn.resolved_impl(jnp.zeros((1, 4096, 4, 32))) == "banded"


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs a GPU")
def test_banded_cudnn_matches_reference_on_gpu():
    q, k, v, seg = _inputs(6, length=1024, heads=4, kv_heads=4, dim=64, vocab=300, dtype=jnp.bfloat16)
    attn = pa.PackedAttention(block_size=128, max_window_blocks=3, impl="banded_cudnn")
    want = pa.reference_attention(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), seg,
                                  jnp.int32(2), 128)
    np.testing.assert_allclose(np.asarray(attn(q, k, v, seg, 2), np.float32), np.asarray(want), atol=3e-2)
