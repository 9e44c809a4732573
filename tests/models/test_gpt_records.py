"""GPTConfig switches of speedrun records 14-20: value-embedding layouts and mixes, attentionless layers,
half-truncated RoPE, the attention scale, the linear init scale, scalar storage, short windows, the
record-15 block clamp, and the ConfigError of each bad value."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from libs.models import gpt, layers
from libs.train import launch
from libs.train.state import strip_boxes

BASE = gpt.GPTConfig(vocab_size=64, num_layers=4, num_heads=2, model_dim=32, max_seq_len=32, dtype="float32",
                     positional="rotary", norm="rmsnorm", use_bias=False, qk_norm=True, activation="relu2",
                     init_scheme="torch")
TOKENS = jax.random.randint(jax.random.key(0), (2, 24), 0, 64)


def _init(cfg, tokens=TOKENS):
    return strip_boxes(gpt.GPT(cfg).init(jax.random.key(0), tokens)["params"])


def _apply(cfg, params, tokens=TOKENS, **kwargs):
    return gpt.GPT(cfg).apply({"params": params}, tokens, **kwargs)


def _set(params, path, value):
    """A copy of `params` with the leaf at `path` (a tuple of keys) replaced by `value`."""
    params = dict(params)
    if len(path) == 1:
        params[path[0]] = value
    else:
        params[path[0]] = _set(params[path[0]], path[1:], value)
    return params


def _attention_inputs(cfg, params, tokens=TOKENS):
    """{layer: the `ve` argument its Attention was called with}."""
    seen = {}

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, gpt.Attention) and context.method_name == "__call__":
            seen[int(context.module.scope.path[-2].split("_")[1])] = args[2]
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        _apply(cfg, params, tokens)
    return seen


# --- value embeddings -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout, n, want", [
    ("ends", 1, (0, None, None, 0)),
    ("ends", 2, (0, 1, 0, 1)),
    ("mirror", 2, (0, 1, 1, 0)),
    ("mirror", 1, (0, None, None, 0)),
    ("per_layer", 4, (0, 1, 2, 3)),
    ("ends", 0, (None,) * 4),
])
def test_each_layout_feeds_each_layer_its_table(layout, n, want):
    cfg = dataclasses.replace(BASE, value_embeddings=n, ve_layout=layout)
    assert cfg.ve_table_of_layer == want
    params = _init(cfg)
    assert sorted(k for k in params if k.startswith("value_embed_")) == [f"value_embed_{j}" for j in range(n)]
    seen = _attention_inputs(cfg, params)
    assert sorted(seen) == [0, 1, 2, 3]
    for layer, table in enumerate(want):
        if table is None:
            assert seen[layer] is None
        else:
            lookup = params[f"value_embed_{table}"]["embedding"][TOKENS]
            np.testing.assert_array_equal(seen[layer], lookup)


def test_a_perturbed_table_reaches_only_its_layers():
    cfg = dataclasses.replace(BASE, value_embeddings=2, ve_layout="mirror")  # layers 1 and 2 read table 1
    params = _init(cfg)
    table = params["value_embed_1"]["embedding"]
    perturbed = _set(params, ("value_embed_1", "embedding"), table + 1.0)
    before, after = _attention_inputs(cfg, params), _attention_inputs(cfg, perturbed)
    for layer in range(4):
        same = before[layer] is not None and np.array_equal(before[layer], after[layer])
        assert same == (layer in (0, 3)), layer


def test_value_embedding_init_std():
    n = 4
    cfg = dataclasses.replace(BASE, value_embeddings=n, ve_layout="per_layer", vocab_size=512, model_dim=64)
    tokens = jnp.zeros((1, 8), jnp.int32)
    for std, want in ((0.0, cfg.init_std), (1.0, 1.0)):
        params = _init(dataclasses.replace(cfg, ve_init_std=std), tokens)
        for j in range(n):
            assert np.std(params[f"value_embed_{j}"]["embedding"]) == pytest.approx(want, rel=0.05)  # 32k samples


def _lambdas(params, name):
    return {i: params[f"block_{i}"].get("attn", {}).get(name) for i in range(4)}


def test_sum_and_convex_mixes_add_lambdas_to_the_layers_with_a_table():
    cfg = dataclasses.replace(BASE, value_embeddings=1)  # layers 0 and 3
    lams = _lambdas(_init(cfg), "ve_lambdas")
    assert lams[1] is None and lams[2] is None
    for i in (0, 3):
        np.testing.assert_array_equal(lams[i], [1.0, 1.0])
    convex = _init(dataclasses.replace(cfg, ve_mix="convex"))
    assert all(v is None for v in _lambdas(convex, "ve_lambdas").values())
    lam = _lambdas(convex, "ve_lambda")
    assert lam[1] is None and lam[2] is None and lam[0].shape == () and float(lam[3]) == 0.5


def test_convex_mix_at_zero_is_no_value_embedding():
    cfg = dataclasses.replace(BASE, value_embeddings=4, ve_layout="per_layer", ve_mix="convex", ve_init_std=1.0)
    params = _init(cfg)
    plain_cfg = dataclasses.replace(cfg, value_embeddings=0)
    plain = {k: v for k, v in params.items() if not k.startswith("value_embed_")}
    zeroed = params
    for i in range(4):
        attn = dict(plain[f"block_{i}"]["attn"])
        del attn["ve_lambda"]
        plain = _set(plain, (f"block_{i}", "attn"), attn)
        zeroed = _set(zeroed, (f"block_{i}", "attn", "ve_lambda"), jnp.zeros(()))
    assert jax.tree_util.tree_structure(plain) == jax.tree_util.tree_structure(_init(plain_cfg))
    want = _apply(plain_cfg, plain)
    np.testing.assert_allclose(_apply(cfg, zeroed), want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(_apply(cfg, params), want, atol=1e-3)  # at 0.5 the tables do count
    # At l = 0.3 it is the "sum" mix with (0.7, 0.3).
    summed, sum_params, at = dataclasses.replace(cfg, ve_mix="sum"), params, params
    for i in range(4):
        attn = dict(sum_params[f"block_{i}"]["attn"])
        del attn["ve_lambda"]
        sum_params = _set(sum_params, (f"block_{i}", "attn"), {**attn, "ve_lambdas": jnp.array([0.7, 0.3])})
        at = _set(at, (f"block_{i}", "attn", "ve_lambda"), jnp.array(0.3))
    np.testing.assert_allclose(_apply(cfg, at), _apply(summed, sum_params), rtol=1e-5, atol=1e-6)


def test_free_mix_puts_lambdas_in_every_attention_layer():
    cfg = dataclasses.replace(BASE, value_embeddings=1, ve_mix="free", attentionless_layers=(2,))
    params = _init(cfg)
    lams = _lambdas(params, "ve_lambdas")
    assert "attn" not in params["block_2"]
    for i in (0, 1, 3):
        np.testing.assert_array_equal(lams[i], [0.5, 0.5])
        assert lams[i].dtype == cfg.scalar_storage_dtype


def test_free_mix_scales_the_values_of_layers_without_a_table():
    free = dataclasses.replace(BASE, value_embeddings=1, ve_mix="free")  # tables in layers 0 and 3
    params = _init(free)
    ones = params
    for i in range(4):
        ones = _set(ones, (f"block_{i}", "attn", "ve_lambdas"), jnp.ones(2))
    # (1, 1) everywhere: l0 v + l1 ve with a table, l0 v = v without one, which is the "sum" mix at (1, 1).
    summed = dataclasses.replace(free, ve_mix="sum")
    sum_params = ones
    for i in (1, 2):
        attn = dict(sum_params[f"block_{i}"]["attn"])
        del attn["ve_lambdas"]
        sum_params = _set(sum_params, (f"block_{i}", "attn"), attn)
    assert jax.tree_util.tree_structure(sum_params) == jax.tree_util.tree_structure(_init(summed))
    np.testing.assert_allclose(_apply(free, ones), _apply(summed, sum_params), rtol=1e-6, atol=1e-6)
    # A table-less layer's l0 scales its values; its l1 is unused.
    doubled = _set(ones, ("block_1", "attn", "ve_lambdas"), jnp.array([2.0, 1.0]))
    unused = _set(ones, ("block_1", "attn", "ve_lambdas"), jnp.array([1.0, 7.0]))
    assert not np.allclose(_apply(free, doubled), _apply(free, ones), atol=1e-4)
    np.testing.assert_array_equal(_apply(free, unused), _apply(free, ones))


# --- attentionless layers -------------------------------------------------------------------------


def test_attentionless_layer_equals_a_zero_attention_branch():
    full = dataclasses.replace(BASE, norm="layernorm", embed_skip=True, value_residual=True, unet_skips=True,
                               value_embeddings=1)
    skip = dataclasses.replace(full, attentionless_layers=(1,))
    params = _init(full)
    params = jax.tree_util.tree_map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(5), p.shape), params)
    zeroed = _set(params, ("block_1", "attn", "out", "kernel"), jnp.zeros_like(params["block_1"]["attn"]["out"]["kernel"]))
    block = {k: v for k, v in params["block_1"].items() if k not in ("attn", "Norm_0")}
    without = _set(params, ("block_1",), block)
    skip_init = _init(skip)
    assert "attn" not in skip_init["block_1"] and "Norm_0" not in skip_init["block_1"]
    assert "skip_lambdas" in skip_init["block_1"] and "mlp" in skip_init["block_1"] and "Norm_1" in skip_init["block_1"]
    assert jax.tree_util.tree_structure(without) == jax.tree_util.tree_structure(skip_init)
    np.testing.assert_allclose(_apply(skip, without), _apply(full, zeroed), rtol=1e-5, atol=1e-5)
    assert not np.allclose(_apply(full, params), _apply(full, zeroed), atol=1e-3)


def test_attentionless_layers_cut_the_attention_flops():
    cfg = dataclasses.replace(BASE, attentionless_layers=(1, 2))
    params = _init(cfg)
    full = gpt.flops_per_token(BASE, _init(BASE), 16)
    width = BASE.num_heads * BASE.dims_per_head
    matmul_gone = 6 * 4 * BASE.model_dim * width  # q, k, v and out kernels of two layers
    assert full - gpt.flops_per_token(cfg, params, 16) == pytest.approx(2 * (matmul_gone + 12 * width * 16))


# --- rotary ---------------------------------------------------------------------------------------


def test_half_truncated_frequencies():
    got = np.asarray(layers.rope_inv_freq_half_truncated(16, 1024.0))
    assert got.dtype == np.float32 and got.shape == (8,)
    want = (1 / 1024) ** np.linspace(0.0, 1.0, 4)  # torch.linspace(0, 1, d // 4) exponents
    np.testing.assert_allclose(got[:4], want, rtol=1e-6)
    assert got[0] == 1.0
    np.testing.assert_array_equal(got[4:], 0.0)
    # The record's head: 32 frequencies from 1 down to 1/1024 at exponents j/31, then 32 zeros.
    big = np.asarray(layers.rope_inv_freq_half_truncated(128, 1024.0))
    np.testing.assert_allclose(big[:32], 1024.0 ** (-np.arange(32) / 31), rtol=1e-6)
    np.testing.assert_array_equal(big[32:], 0.0)


def test_half_truncated_rotary_leaves_the_upper_pairs_unrotated():
    x = jax.random.normal(jax.random.key(1), (2, 9, 3, 16), jnp.bfloat16)
    y = np.asarray(gpt.rotary(x, 1024.0, "half_truncated"), np.float32)
    x = np.asarray(x, np.float32)
    still = np.r_[4:8, 12:16]  # pairs 4..7: dims 4-7 with 12-15
    turned = np.r_[0:4, 8:12]
    np.testing.assert_array_equal(y[..., still], x[..., still])
    np.testing.assert_array_equal(y[:, 0], x[:, 0])  # position 0 turns by 0
    assert not np.allclose(y[:, 1:, :, turned], x[:, 1:, :, turned], atol=1e-2)
    # The rotated pairs turn as the geometric rotary at those frequencies (speedrun pairing and sign).
    inv = layers.rope_inv_freq_half_truncated(16, 1024.0)
    want = layers.rotary(jnp.asarray(x), inv, style="half", clockwise=True)
    np.testing.assert_allclose(y, np.asarray(want), rtol=1e-2, atol=1e-2)


def test_rotary_freqs_change_the_model_only_when_set():
    params = _init(BASE)
    half = dataclasses.replace(BASE, rotary_freqs="half_truncated", rotary_base=1024.0)
    assert not np.allclose(_apply(half, params), _apply(dataclasses.replace(BASE, rotary_base=1024.0), params),
                           atol=1e-4)


# --- attention scale ------------------------------------------------------------------------------


@pytest.mark.parametrize("packed", [None, "reference", "banded"])
def test_attn_scale(packed):
    cfg = BASE
    if packed:
        cfg = dataclasses.replace(BASE, doc_eot_id=0, max_window_blocks=6, packed_attention_impl=packed)
    params = _init(cfg)
    default = _apply(cfg, params)
    same = dataclasses.replace(cfg, attn_scale=1 / math.sqrt(cfg.dims_per_head))
    np.testing.assert_allclose(_apply(same, params), default, rtol=1e-6, atol=1e-6)
    assert not np.allclose(_apply(dataclasses.replace(cfg, attn_scale=0.5), params), default, atol=1e-4)


def test_attention_scale_is_the_softmax_scale():
    keys = jax.random.split(jax.random.key(2), 3)
    q, k, v = (jax.random.normal(key, (2, 10, 2, 8)) for key in keys)
    got = layers.attention(q, k, v, "xla", scale=0.3)
    want = layers.attention(q * 0.3 * math.sqrt(8), k, v, "xla")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --- linear init scale ----------------------------------------------------------------------------


@pytest.mark.parametrize("fused", [False, True])
def test_linear_init_scale_bounds_the_qkv_and_fc_kernels(fused):
    cfg = dataclasses.replace(BASE, num_layers=1, model_dim=128, num_heads=2, fused_qkv=fused,
                              linear_init_scale=0.5, tie_embeddings=False)
    block = _init(cfg, jnp.zeros((1, 4), jnp.int32))["block_0"]
    scaled = [block["mlp"]["fc"]["kernel"]]
    scaled += [block["attn"]["qkv"]["kernel"]] if fused else [block["attn"][n]["kernel"] for n in ("query", "key", "value")]
    bound = 0.5 / math.sqrt(128)
    for kernel in scaled:
        assert 0.97 * bound < np.max(np.abs(kernel)) <= bound  # 16k+ draws come close to the bound
    # The output projections keep U(+-1/sqrt(fan_in)).
    assert np.max(np.abs(block["attn"]["out"]["kernel"])) > 0.97 / math.sqrt(128)
    assert np.max(np.abs(block["mlp"]["proj"]["kernel"])) > 0.97 / math.sqrt(512)


def test_linear_init_scale_leaves_zero_projections_and_the_head():
    cfg = dataclasses.replace(BASE, linear_init_scale=0.5, zero_init_proj=True, tie_embeddings=False)
    params = _init(cfg)
    ref = _init(dataclasses.replace(cfg, linear_init_scale=1.0))
    np.testing.assert_array_equal(params["block_0"]["attn"]["out"]["kernel"], 0.0)
    np.testing.assert_array_equal(params["head"], ref["head"])
    np.testing.assert_allclose(params["block_0"]["attn"]["query"]["kernel"],
                               0.5 * ref["block_0"]["attn"]["query"]["kernel"], rtol=1e-5, atol=1e-7)


# --- scalar storage -------------------------------------------------------------------------------


@pytest.mark.parametrize("embed, scalar", [("bfloat16", "float32"), ("float32", "bfloat16"), ("bfloat16", ""),
                                           ("float32", "")])
def test_scalar_param_dtype(embed, scalar):
    cfg = dataclasses.replace(BASE, positional="learned", norm="layernorm", embed_skip=True, value_residual=True,
                              unet_skips=True, value_embeddings=1, ve_mix="free", tie_embeddings=False,
                              embed_scalar_param_dtype=embed, scalar_param_dtype=scalar)
    params = _init(cfg)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    embeds = [k for k in flat if any(s in k for s in ("['embed']", "pos_embed", "value_embed_"))]
    scalars = [k for k in flat if any(s in k for s in ("lambda", "skip_weights", "LayerNorm", "final_norm"))]
    assert len(embeds) == 3 and len(scalars) > 10
    for key in embeds:
        assert flat[key].dtype == jnp.dtype(embed), key
    for key in scalars:
        assert flat[key].dtype == jnp.dtype(scalar or embed), key
    for key in set(flat) - set(embeds) - set(scalars):  # kernels and the untied head
        assert flat[key].dtype == jnp.float32, key
    assert np.isfinite(float(_apply(cfg, params, TOKENS, targets=TOKENS)))


# --- short windows --------------------------------------------------------------------------------

WINDOWED = dataclasses.replace(BASE, num_layers=2, max_seq_len=64, max_window_blocks=6, window_block_size=2,
                               packed_attention_impl="banded")
LONG = jax.random.randint(jax.random.key(7), (1, 64), 0, 64)


@pytest.mark.parametrize("window, half", [(6, 3), (5, 2), (3, 1), (1, 1), (None, 3)])
def test_short_window_layers_halve_the_window(window, half):
    params = _init(WINDOWED, LONG)
    short = dataclasses.replace(WINDOWED, short_window_layers=(0, 1))
    w = None if window is None else jnp.int32(window)
    np.testing.assert_allclose(_apply(short, params, LONG, window_blocks=w),
                               _apply(WINDOWED, params, LONG, window_blocks=jnp.int32(half)), rtol=1e-6, atol=1e-6)


def test_a_short_window_layer_has_a_smaller_receptive_field():
    cfg = dataclasses.replace(WINDOWED, short_window_layers=(1,))
    params = _init(cfg, LONG)
    apply = jax.jit(lambda c, t, w: gpt.GPT(c).apply({"params": params}, t, window_blocks=w), static_argnums=0)
    changed = LONG.at[0, 10].set((LONG[0, 10] + 1) % 64)
    diff = lambda c: np.abs(np.asarray(apply(c, changed, 6) - apply(c, LONG, 6))).max(-1)[0]
    # Layer 0 reads 6 blocks of 2: position 10 (block 5) reaches queries up to 21 (block 10). Layer 1 reads
    # 3 blocks: from 21 up to 25; with the long window up to 31.
    got = diff(cfg)
    assert got[26:].max() < 1e-5 and got[25] > 1e-4
    assert diff(WINDOWED)[26:32].min() > 1e-4 and diff(WINDOWED)[32:].max() < 1e-5
    assert gpt.flops_per_token(WINDOWED, params, 64) - gpt.flops_per_token(cfg, params, 64) == pytest.approx(
        12 * 32 * (12 - 6))


# --- window block clamp ---------------------------------------------------------------------------


def test_window_block_clamp_reaches_the_packed_attention():
    cfg = dataclasses.replace(BASE, max_window_blocks=13, window_block_clamp=4, doc_eot_id=0,
                              packed_attention_impl="reference")
    assert cfg.packed.clamp_block == 4 and BASE.packed is None
    tokens = jax.random.randint(jax.random.key(8), (1, 32), 1, 64)
    params = _init(cfg, tokens)
    clamped = _apply(cfg, params, tokens, window_blocks=jnp.int32(6))  # ceil(6 / 4) = 2 blocks of 4
    plain = _apply(dataclasses.replace(cfg, window_block_clamp=0), params, tokens, window_blocks=jnp.int32(6))
    assert not np.allclose(clamped, plain, atol=1e-4)  # the kernels' masks: tests/models/test_packed_attention.py


# --- config errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [
    ({"ve_layout": "ring"}, "GPTConfig.ve_layout='ring': expected one of"),
    ({"ve_mix": "mean"}, "GPTConfig.ve_mix='mean': expected one of"),
    ({"rotary_freqs": "linear"}, "GPTConfig.rotary_freqs='linear': expected one of"),
    ({"scalar_param_dtype": "int8"}, "GPTConfig.scalar_param_dtype='int8': expected one of"),
    ({"ve_init_std": -1.0}, "GPTConfig.ve_init_std=-1.0"),
    ({"attn_scale": -0.1}, "GPTConfig.attn_scale=-0.1"),
    ({"window_block_clamp": -1}, "GPTConfig.window_block_clamp=-1"),
    ({"value_embeddings": 3, "ve_layout": "per_layer"}, "GPTConfig.value_embeddings=3: ve_layout='per_layer'"),
    ({"value_embeddings": 3, "ve_layout": "mirror"}, "GPTConfig.value_embeddings=3: at most"),
    ({"value_embeddings": 3, "ve_layout": "ends"}, "GPTConfig.value_embeddings=3: at most"),
    ({"rotary_freqs": "half_truncated", "positional": "learned"}, "GPTConfig.rotary_freqs='half_truncated'"),
    ({"rotary_freqs": "half_truncated", "head_dim": 6}, "GPTConfig.rotary_freqs='half_truncated'"),
    ({"linear_init_scale": 0.0}, "GPTConfig.linear_init_scale=0.0: expected a positive"),
    ({"linear_init_scale": 0.5, "init_scheme": "gpt2"}, "GPTConfig.linear_init_scale=0.5: only init_scheme"),
    ({"attentionless_layers": (4,)}, "GPTConfig.attentionless_layers=(4,)"),
    ({"attentionless_layers": (-1,)}, "GPTConfig.attentionless_layers=(-1,)"),
    ({"attentionless_layers": (1, 1)}, "GPTConfig.attentionless_layers=(1, 1)"),
    ({"attentionless_layers": ("1",)}, "GPTConfig.attentionless_layers=('1',)"),
    ({"attentionless_layers": 1}, "GPTConfig.attentionless_layers=1"),
    ({"short_window_layers": (4,), "max_window_blocks": 8}, "GPTConfig.short_window_layers=(4,)"),
    ({"short_window_layers": (1,)}, "GPTConfig.short_window_layers=(1,): needs a sliding window"),
    ({"window_block_clamp": 128}, "GPTConfig.window_block_clamp=128: needs token windows"),
    ({"window_block_clamp": 128, "max_window_blocks": 14, "window_block_size": 128},
     "GPTConfig.window_block_clamp=128: needs token windows"),
])
def test_bad_values_are_config_errors(kwargs, field):
    with pytest.raises(launch.ConfigError) as info:
        dataclasses.replace(BASE, **kwargs)
    assert str(info.value).splitlines()[0].startswith(field), str(info.value)


def test_layer_lists_become_tuples():
    cfg = dataclasses.replace(BASE, attentionless_layers=[2], short_window_layers=[0, 3], max_window_blocks=4)
    assert cfg.attentionless_layers == (2,) and cfg.short_window_layers == (0, 3)
    hash(cfg)
