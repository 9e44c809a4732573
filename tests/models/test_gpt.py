"""The GPT model: loss chunking, causality, switches, FLOP counting."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from libs.models import gpt, losses
from libs.train import launch
from libs.train.state import strip_boxes

TINY = gpt.GPTConfig(vocab_size=64, num_layers=2, num_heads=2, model_dim=32, max_seq_len=16, dtype="float32")


def _init(cfg, tokens):
    return strip_boxes(gpt.GPT(cfg).init(jax.random.key(0), tokens)["params"])


@pytest.mark.parametrize("softcap, valid_vocab, chunk_tokens", [(0.0, 0, 0), (30.0, 0, 16), (5.0, 45, 8)])
def test_fused_loss_matches_plain_autodiff(softcap, valid_vocab, chunk_tokens):
    x = jax.random.normal(jax.random.key(1), (4, 8, 16))
    head = jax.random.normal(jax.random.key(2), (50, 16))
    targets = jax.random.randint(jax.random.key(3), (4, 8), 0, valid_vocab or 50)

    def plain(x, head):  # Whole-batch logits, differentiated by JAX.
        logits, _ = losses.logits_of(x, head, softcap, valid_vocab)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1))

    fused = lambda x, head: losses.fused_cross_entropy(x, head, targets, softcap, chunk_tokens, valid_vocab)
    forward = losses.cross_entropy(x, head, targets, softcap, chunk_tokens, valid_vocab)
    np.testing.assert_allclose(fused(x, head), plain(x, head), rtol=1e-5)
    np.testing.assert_allclose(forward, plain(x, head), rtol=1e-5)
    for got, want in zip(jax.grad(fused, (0, 1))(x, head), jax.grad(plain, (0, 1))(x, head)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_loss_chunks_split_the_sequence_axis():
    assert losses.num_chunks(64, 1024, 8192) == 8  # 64 rows x 128 positions per chunk
    assert losses.num_chunks(4, 12, 10) == 6  # 5 chunks would not divide 12
    assert losses.num_chunks(4, 12, 0) == 1


def test_masked_padding_rows_take_no_probability():
    cfg = dataclasses.replace(TINY, logit_vocab_size=50)
    tokens = jnp.zeros((1, 8), jnp.int32)
    logits = gpt.GPT(cfg).apply({"params": _init(cfg, tokens)}, tokens)
    assert jnp.all(jnp.isneginf(logits[..., 50:])) and jnp.all(jnp.isfinite(logits[..., :50]))


ALL_SWITCHES = dataclasses.replace(
    TINY, positional="rotary", norm="rmsnorm", use_bias=False, activation="relu2", qk_norm=True,
    zero_init_proj=True, tie_embeddings=False, embed_norm=True, logit_softcap=15.0, embed_skip=True,
    value_residual=True, unet_skips=True, value_embeddings=1, init_scheme="torch",
)


@pytest.mark.parametrize("cfg", [TINY, ALL_SWITCHES], ids=["baseline", "all_switches"])
def test_causal(cfg):
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, 64)
    params = _init(cfg, tokens)
    if cfg.zero_init_proj:  # Zero projections make every position trivially independent.
        params = jax.tree_util.tree_map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(5), p.shape), params)
    model = gpt.GPT(cfg)
    base = model.apply({"params": params}, tokens)
    changed = model.apply({"params": params}, tokens.at[:, 8:].set(3))
    np.testing.assert_allclose(base[:, :8], changed[:, :8], rtol=1e-5, atol=1e-5)
    assert not np.allclose(base[:, 8:], changed[:, 8:])


def test_softcap_bounds_logits():
    cfg = dataclasses.replace(TINY, logit_softcap=2.0)
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = jax.tree_util.tree_map(lambda p: p * 100.0, _init(cfg, tokens))
    logits = gpt.GPT(cfg).apply({"params": params}, tokens)
    assert float(jnp.max(jnp.abs(logits))) <= 2.0


def test_switches_add_their_parameters():
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = _init(ALL_SWITCHES, tokens)
    assert "head" in params and "pos_embed" not in params and "skip_weights" in params
    assert "value_embed_0" in params
    attn = params["block_1"]["attn"]
    assert "value_lambda" in attn and "bias" not in attn["query"]
    np.testing.assert_array_equal(params["block_0"]["mlp"]["proj"]["kernel"], 0.0)


def test_bad_switch_value_is_rejected():
    with pytest.raises(launch.ConfigError, match="GPTConfig.activation"):
        gpt.GPTConfig(activation="swish")


def test_flops_per_token_of_gpt2_small():
    cfg = gpt.GPTConfig()
    params = jax.eval_shape(gpt.GPT(cfg).init, jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"]
    n = gpt.count_params(params)
    pos = cfg.max_seq_len * cfg.model_dim
    expected = 6 * (n - pos) + 12 * 12 * 768 * 1024
    assert gpt.flops_per_token(cfg, params, 1024) == expected


# --- fused QKV, residual dtype, bf16 storage, config errors ----------------------------------------


def _fused_from_separate(separate):
    """The fused-QKV params whose kernel (and bias) is the concatenation [Q | K | V] of `separate`."""

    def convert(tree):
        if isinstance(tree, dict) and "query" in tree:
            tree = dict(tree)
            parts = [tree.pop(name) for name in ("query", "key", "value")]
            tree["qkv"] = {leaf: jnp.concatenate([p[leaf] for p in parts], axis=-1) for leaf in parts[0]}
            return tree
        return {k: convert(v) for k, v in tree.items()} if isinstance(tree, dict) else tree

    return convert(separate)


@pytest.mark.parametrize("cfg", [TINY, ALL_SWITCHES], ids=["baseline", "all_switches"])
def test_fused_qkv_matches_separate_kernels(cfg):
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, 64)
    separate = _init(cfg, tokens)
    if cfg.zero_init_proj:
        separate = jax.tree_util.tree_map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(5), p.shape), separate)
    fused_cfg = dataclasses.replace(cfg, fused_qkv=True)
    fused = _fused_from_separate(separate)
    want = jax.tree_util.tree_structure(_init(fused_cfg, tokens))
    assert jax.tree_util.tree_structure(fused) == want  # Same names and nesting as the model's own init.
    assert "query" not in fused["block_0"]["attn"] and fused["block_0"]["attn"]["qkv"]["kernel"].shape == (32, 96)
    got = gpt.GPT(fused_cfg).apply({"params": fused}, tokens)
    np.testing.assert_allclose(got, gpt.GPT(cfg).apply({"params": separate}, tokens), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", ["gpt2", "torch"])
def test_fused_qkv_init_and_axes_match_separate_kernels(scheme):
    base = dataclasses.replace(TINY, model_dim=128, num_heads=4, init_scheme=scheme, use_bias=True)
    tokens = jnp.zeros((1, 8), jnp.int32)
    boxed_sep = gpt.GPT(base).init(jax.random.key(0), tokens)["params"]
    boxed_fused = gpt.GPT(dataclasses.replace(base, fused_qkv=True)).init(jax.random.key(0), tokens)["params"]
    spec_sep = nn.get_partition_spec(boxed_sep)["block_0"]["attn"]
    spec_fused = nn.get_partition_spec(boxed_fused)["block_0"]["attn"]
    assert spec_fused["qkv"] == spec_sep["query"]  # ("embed", "heads") kernel, ("heads",) bias
    fused = strip_boxes(boxed_fused)["block_0"]["attn"]["qkv"]
    separate = strip_boxes(boxed_sep)["block_0"]["attn"]
    np.testing.assert_array_equal(fused["bias"], 0.0)
    for i, name in enumerate(("query", "key", "value")):
        block = np.asarray(fused["kernel"][:, i * 128 : (i + 1) * 128])
        ref = np.asarray(separate[name]["kernel"])
        assert block.shape == ref.shape
        assert np.std(block) == pytest.approx(np.std(ref), rel=0.05)  # 16k samples each: ~1% noise
        assert np.max(np.abs(block)) <= (np.max(np.abs(ref)) * 1.05 if scheme == "gpt2" else 128**-0.5)


def test_residual_dtype_float32_keeps_the_stream_in_float32():
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, 64)
    base = dataclasses.replace(ALL_SWITCHES, dtype="bfloat16", zero_init_proj=False)
    params = _init(base, tokens)
    outs = {}
    for residual in ("bfloat16", "float32"):
        cfg = dataclasses.replace(base, residual_dtype=residual)
        logits, state = gpt.GPT(cfg).apply({"params": params}, tokens, capture_intermediates=True)
        inter = state["intermediates"]
        stream = inter["block_0"]["__call__"][0][0]  # The block's output: the residual stream.
        assert stream.dtype == jnp.dtype(residual)
        assert inter["block_0"]["attn"]["query"]["__call__"][0].dtype == jnp.bfloat16  # Matmuls stay bf16.
        assert inter["block_1"]["mlp"]["fc"]["__call__"][0].dtype == jnp.bfloat16
        assert inter["embed"]["__call__"][0].dtype == jnp.dtype(residual)
        outs[residual] = logits
    assert not np.allclose(outs["float32"], outs["bfloat16"], atol=1e-3)
    np.testing.assert_allclose(outs["float32"], outs["bfloat16"], atol=0.5)  # Same function, other rounding.
    # A float32 compute dtype keeps a float32 stream whatever residual_dtype says (no silent downcast).
    assert dataclasses.replace(TINY, residual_dtype="bfloat16").residual_stream_dtype == jnp.float32


def test_bf16_storage_of_embeddings_and_scalars():
    tokens = jnp.zeros((1, 8), jnp.int32)
    cfg = dataclasses.replace(ALL_SWITCHES, positional="learned", norm="layernorm", use_bias=True)
    ref = _init(cfg, tokens)
    params = _init(dataclasses.replace(cfg, embed_scalar_param_dtype="bfloat16"), tokens)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    small = [k for k in flat if any(s in k for s in ("'embed'", "pos_embed", "value_embed_", "lambda",
                                                     "skip_weights", "LayerNorm", "final_norm"))]
    assert any("'embed'" in k for k in small) and any("lambda" in k for k in small) and any("Norm" in k for k in small)
    for key, leaf in flat.items():
        assert leaf.dtype == (jnp.bfloat16 if key in small else jnp.float32), key
    # The same draws as the float32 init, rounded (PyTorch's init followed by .bfloat16()).
    np.testing.assert_array_equal(params["embed"]["embedding"], ref["embed"]["embedding"].astype(jnp.bfloat16))
    assert params["head"].dtype == jnp.float32 and params["block_0"]["mlp"]["fc"]["bias"].dtype == jnp.float32
    loss = gpt.GPT(dataclasses.replace(cfg, embed_scalar_param_dtype="bfloat16")).apply(
        {"params": params}, tokens, tokens)
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("kwargs, field", [
    ({"dtype": "fp8"}, "GPTConfig.dtype='fp8': expected one of"),
    ({"residual_dtype": "float16"}, "GPTConfig.residual_dtype='float16'"),
    ({"embed_scalar_param_dtype": "int8"}, "GPTConfig.embed_scalar_param_dtype='int8'"),
    ({"activation": "swish"}, "GPTConfig.activation='swish'"),
    ({"model_dim": 30, "num_heads": 4}, "GPTConfig.num_heads=4: model_dim 30"),
    ({"num_heads": 0}, "GPTConfig.num_heads=0"),
    ({"num_layers": -1}, "GPTConfig.num_layers=-1"),
    ({"head_dim": 5, "positional": "rotary"}, "GPTConfig.positional='rotary': needs an even head dimension"),
    ({"value_embeddings": 2}, "GPTConfig.value_embeddings=2"),
    ({"num_layers": 1, "unet_skips": True}, "GPTConfig.unet_skips=True"),
    ({"logit_vocab_size": 100}, "GPTConfig.logit_vocab_size=100"),
    ({"logit_softcap": -1.0}, "GPTConfig.logit_softcap=-1.0"),
    ({"rotary_base": 0.0}, "GPTConfig.rotary_base=0.0"),
    ({"packed_attention_impl": "flash"}, "GPTConfig.packed_attention_impl='flash'"),
    ({"max_window_blocks": -1}, "GPTConfig.max_window_blocks=-1"),
    ({"window_block_size": 0}, "GPTConfig.window_block_size=0"),
])
def test_bad_values_are_config_errors(kwargs, field):
    with pytest.raises(launch.ConfigError) as info:
        dataclasses.replace(TINY, **kwargs)
    assert str(info.value).splitlines()[0].startswith(field), str(info.value)  # The launcher prints line 1.


def test_rotary_from_the_shared_layers_keeps_the_speedrun_formula_bit_for_bit():
    """gpt.rotary now calls layers.rotary (clockwise, halves paired); this is the formula it replaced."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 3, 8), jnp.bfloat16)

    def before(x, base):
        _, length, _, dim = x.shape
        inv_freq = 1.0 / (base ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
        angles = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]
        cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
        x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
        return jnp.concatenate([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], axis=-1).astype(x.dtype)

    for base in (10000.0, 1024.0):
        got = jax.jit(gpt.rotary, static_argnums=1)(x, base)
        np.testing.assert_array_equal(got, jax.jit(before, static_argnums=1)(x, base))


PACKED = dataclasses.replace(TINY, positional="rotary", max_seq_len=64, doc_eot_id=0, packed_attention_impl="banded")


def test_document_masking_hides_earlier_documents():
    tokens = jax.random.randint(jax.random.key(4), (1, 64), 1, 64).at[0, 30].set(0)  # a document opens at 30
    model = gpt.GPT(PACKED)
    params = _init(PACKED, tokens)
    changed = tokens.at[0, 5].set(7).at[0, 20].set(9)  # edits inside the first document
    before, after = model.apply({"params": params}, tokens), model.apply({"params": params}, changed)
    np.testing.assert_allclose(after[0, 30:], before[0, 30:], atol=1e-5)
    assert not np.allclose(after[0, 20:30], before[0, 20:30], atol=1e-3)


@pytest.mark.parametrize("block", [1, 4])
def test_sliding_window_bounds_the_receptive_field(block):
    cfg = dataclasses.replace(PACKED, doc_eot_id=-1, max_window_blocks=12 // block, window_block_size=block)
    tokens = jax.random.randint(jax.random.key(5), (1, 64), 0, 64)
    model = gpt.GPT(cfg)
    params = _init(cfg, tokens)
    apply = jax.jit(lambda t, w: model.apply({"params": params}, t, window_blocks=w))
    changed = tokens.at[0, 10].set((tokens[0, 10] + 1) % 64)
    for window in (1, 12 // block):
        reach = 2 * window * block  # two layers, each reading at most window * block positions back
        diff = np.abs(np.asarray(apply(changed, window) - apply(tokens, window))).max(-1)[0]
        assert diff[10 + reach:].max() < 1e-5 and diff[10] > 1e-3
    assert not np.allclose(apply(tokens, 1), apply(tokens, 12 // block), atol=1e-3)


def test_packed_attention_without_windows_or_documents_is_plain_causal():
    tokens = jax.random.randint(jax.random.key(6), (2, 64), 1, 64)  # no end-of-text token: one document
    plain = dataclasses.replace(PACKED, doc_eot_id=-1)
    params = _init(plain, tokens)
    np.testing.assert_allclose(gpt.GPT(PACKED).apply({"params": params}, tokens),
                               gpt.GPT(plain).apply({"params": params}, tokens), atol=1e-5)


def test_window_caps_the_attention_flops():
    params = _init(TINY, jnp.zeros((1, 16), jnp.int32))
    windowed = dataclasses.replace(TINY, max_window_blocks=2, window_block_size=4)
    width = TINY.num_heads * TINY.dims_per_head
    full, capped = gpt.flops_per_token(TINY, params, 16), gpt.flops_per_token(windowed, params, 16)
    assert full - capped == pytest.approx(12 * TINY.num_layers * width * (16 - 8))
