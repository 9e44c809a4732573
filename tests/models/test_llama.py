"""The Llama 3 family: published parameter counts, the FFN rule, GQA, RoPE (3.1 scaling, both
pairings), the document mask, tied heads, config errors, and sharded training."""

import dataclasses
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.models import layers, llama, registry
from libs.train import launch, trainer
from libs.train.state import strip_boxes
from tests.conftest import REPO_ROOT, run_binary, train_losses

TINY = llama.LlamaConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2,
                         ffn_dim_multiplier=None, multiple_of=16, use_scaled_rope=False, max_seq_len=64,
                         dtype="float32", loss_chunk_tokens=0)


def _init(cfg, tokens=None):
    tokens = jnp.zeros((1, 8), jnp.int32) if tokens is None else tokens
    return strip_boxes(llama.Llama(cfg).init(jax.random.key(0), tokens)["params"])


# --- published parameter counts, from abstract shapes ---------------------------------------------

PUBLISHED = {  # Meta's model cards / HF safetensors totals; SmolLM2 from its HF config
    "llama3_1_8b": 8_030_261_248,
    "llama3_1_70b": 70_553_706_496,
    "llama3_1_405b": 405_853_388_800,
    "llama3_2_1b": 1_235_814_400,
    "llama3_2_3b": 3_212_749_824,
    "smollm2_135m": 134_515_008,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_published(name, clean_gin):
    launch.parse_config([os.path.join(REPO_ROOT, "configs", "llama", f"{name}.gin")], [])
    spec = registry.make_model()
    assert spec.family == "llama"
    shapes = jax.eval_shape(spec.module.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8), jnp.int32))
    params = strip_boxes(shapes["params"])
    assert llama.count_params(params) == PUBLISHED[name]
    flops = llama.flops_per_token(spec.cfg, params, 8192)
    assert flops > 6 * PUBLISHED[name] * (0.9 if not spec.cfg.tie_embeddings else 1.0)


def test_llama3_1_8b_shapes():
    cfg = llama.LlamaConfig()  # The defaults are Llama 3.1 8B.
    params = strip_boxes(jax.eval_shape(llama.Llama(cfg).init, jax.random.key(0),
                                        jax.ShapeDtypeStruct((1, 8), jnp.int32))["params"])
    block = params["block_0"]
    assert block["attn"]["wq"]["kernel"].shape == (4096, 4096)
    assert block["attn"]["wk"]["kernel"].shape == (4096, 8 * 128)
    assert block["mlp"]["w1"]["kernel"].shape == (4096, 14336)
    assert block["attn_norm"]["scale"].shape == (4096,) and params["head"].shape == (4096, 128256)


@pytest.mark.parametrize("dim, mult, multiple_of, expected", [
    (4096, 1.3, 1024, 14336), (8192, 1.3, 4096, 28672), (16384, 1.2, 4096, 53248),
    (2048, 1.5, 256, 8192), (3072, 1.0, 256, 8192), (4096, None, 256, 11008),  # Llama 2 7B
])
def test_hidden_dim_rule(dim, mult, multiple_of, expected):
    cfg = llama.LlamaConfig(model_dim=dim, num_heads=dim // 128, ffn_dim_multiplier=mult, multiple_of=multiple_of)
    assert cfg.ffn_dim == expected
    assert dataclasses.replace(cfg, hidden_dim=1536).ffn_dim == 1536


# --- attention --------------------------------------------------------------------------------------


def test_gqa_equals_full_attention_with_repeated_kv_heads():
    q = jax.random.normal(jax.random.key(0), (2, 10, 8, 16))
    k = jax.random.normal(jax.random.key(1), (2, 10, 2, 16))
    v = jax.random.normal(jax.random.key(2), (2, 10, 2, 16))
    gqa = layers.attention(q, k, v, "xla")
    full = layers.attention(q, jnp.repeat(k, 4, axis=2), jnp.repeat(v, 4, axis=2), "xla")
    np.testing.assert_allclose(gqa, full, rtol=1e-5, atol=1e-6)


def test_gqa_model_equals_mha_model_with_repeated_kv_kernels():
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, 64)
    params = _init(TINY, tokens)
    mha = dataclasses.replace(TINY, num_kv_heads=TINY.num_heads)
    group, dim = TINY.num_heads // TINY.num_kv_heads, TINY.dims_per_head

    def repeat(kernel):  # (D, K*H) -> (D, N*H), each K/V head copied to its group of query heads
        d = kernel.shape[0]
        return jnp.repeat(kernel.reshape(d, TINY.num_kv_heads, dim), group, axis=1).reshape(d, -1)

    widened = jax.tree_util.tree_map(lambda x: x, params)
    for i in range(TINY.num_layers):
        attn = dict(widened[f"block_{i}"]["attn"])
        for name in ("wk", "wv"):
            attn[name] = {"kernel": repeat(attn[name]["kernel"])}
        widened[f"block_{i}"] = {**widened[f"block_{i}"], "attn": attn}
    got = llama.Llama(TINY).apply({"params": params}, tokens)
    want = llama.Llama(mha).apply({"params": widened}, tokens)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_causal():
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, 64)
    params = _init(TINY, tokens)
    base = llama.Llama(TINY).apply({"params": params}, tokens)
    changed = llama.Llama(TINY).apply({"params": params}, tokens.at[:, 8:].set(3))
    np.testing.assert_allclose(base[:, :8], changed[:, :8], rtol=1e-5, atol=1e-5)
    assert not np.allclose(base[:, 8:], changed[:, 8:])


# --- RoPE -------------------------------------------------------------------------------------------


def _meta_apply_scaling(freqs, scale_factor, low_freq_factor, high_freq_factor, old_context_len):
    """Meta's llama3 `apply_scaling` (llama_models/llama3/reference_impl/model.py), element by element."""
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    new_freqs = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            new_freqs.append(freq)
        elif wavelen > low_freq_wavelen:
            new_freqs.append(freq / scale_factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            new_freqs.append((1 - smooth) * freq / scale_factor + smooth * freq)
    return np.array(new_freqs)


@pytest.mark.parametrize("dim, factor", [(128, 8.0), (64, 32.0)])
def test_llama31_rope_scaling_matches_meta(dim, factor):
    freqs = 1.0 / (500000.0 ** (np.arange(0, dim, 2)[: dim // 2].astype(np.float32) / dim))
    want = _meta_apply_scaling(freqs.astype(np.float64), factor, 1.0, 4.0, 8192)
    got = layers.rope_inv_freq(dim, 500000.0, layers.RopeScaling(factor, 1.0, 4.0, 8192))
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-6)
    plain = np.asarray(layers.rope_inv_freq(dim, 500000.0))
    assert np.any(np.asarray(got) < plain) and np.asarray(got)[0] == plain[0]  # Low frequencies only.
    scaled = dataclasses.replace(TINY, use_scaled_rope=True, rope_scale_factor=factor)
    assert scaled.rope_scaling == layers.RopeScaling(factor, 1.0, 4.0, 8192) and TINY.rope_scaling is None


def test_rotary_turns_pairs_by_position_times_frequency():
    x = jax.random.normal(jax.random.key(0), (1, 5, 1, 4))
    inv = jnp.array([0.5, 0.1])
    out = np.asarray(layers.rotary(x, inv, "interleaved"))
    xn = np.asarray(x)
    for p in range(5):
        for i, f in enumerate((0.5, 0.1)):
            a, b = xn[0, p, 0, 2 * i], xn[0, p, 0, 2 * i + 1]
            c, s = math.cos(p * f), math.sin(p * f)
            np.testing.assert_allclose(out[0, p, 0, 2 * i: 2 * i + 2], [a * c - b * s, a * s + b * c], rtol=1e-5,
                                       atol=1e-6)


def _interleaved_to_half(kernel, heads, dim):
    """Permutes each head's output columns from (a0, b0, a1, b1, ...) to (a0, a1, ..., b0, b1, ...)
    (the permutation HF's convert_llama_weights_to_hf undoes)."""
    perm = np.concatenate([np.arange(0, dim, 2), np.arange(1, dim, 2)])
    d = kernel.shape[0]
    return kernel.reshape(d, heads, dim)[:, :, perm].reshape(d, heads * dim)


def test_interleaved_equals_half_after_permuting_qk_columns():
    cfg = dataclasses.replace(TINY, rope_style="interleaved", use_scaled_rope=True, rope_original_max_position=4)
    tokens = jax.random.randint(jax.random.key(0), (2, 16), 0, 64)
    params = jax.tree_util.tree_map(lambda x: 10 * x, _init(cfg, tokens))  # Sharp attention.
    permuted = jax.tree_util.tree_map(lambda x: x, params)
    for i in range(cfg.num_layers):
        attn = dict(permuted[f"block_{i}"]["attn"])
        attn["wq"] = {"kernel": _interleaved_to_half(attn["wq"]["kernel"], cfg.num_heads, cfg.dims_per_head)}
        attn["wk"] = {"kernel": _interleaved_to_half(attn["wk"]["kernel"], cfg.num_kv_heads, cfg.dims_per_head)}
        permuted[f"block_{i}"] = {**permuted[f"block_{i}"], "attn": attn}
    interleaved = llama.Llama(cfg).apply({"params": params}, tokens)
    half = llama.Llama(dataclasses.replace(cfg, rope_style="half")).apply({"params": permuted}, tokens)
    np.testing.assert_allclose(interleaved, half, rtol=1e-4, atol=1e-4)
    unpermuted = llama.Llama(dataclasses.replace(cfg, rope_style="half")).apply({"params": params}, tokens)
    assert not np.allclose(interleaved, unpermuted, atol=1e-2)  # The styles differ without the permutation.


# --- document mask ----------------------------------------------------------------------------------

EOT = 63


def test_document_mask_definition():
    tokens = jnp.array([[5, EOT, 7, 8, EOT, EOT, 9]])
    doc = [0, 1, 1, 1, 2, 3, 3]  # eot starts a document; tokens before the first eot are document 0
    mask = np.asarray(layers.document_mask(tokens, EOT))[0, 0]
    assert mask.shape == (7, 7)
    np.testing.assert_array_equal(mask, np.equal.outer(doc, doc))


def _per_token_logprobs(cfg, params, tokens):
    logits = llama.Llama(cfg).apply({"params": params}, tokens)
    return jax.nn.log_softmax(logits)


def test_packed_document_equals_document_alone():
    """Positions do not restart at the boundary; RoPE is relative, so the second document's
    outputs equal those of the document alone (up to rounding)."""
    cfg = dataclasses.replace(TINY, doc_mask_token=EOT)
    first = jax.random.randint(jax.random.key(1), (1, 11), 0, EOT)
    second = jnp.concatenate([jnp.array([[EOT]]), jax.random.randint(jax.random.key(2), (1, 12), 0, EOT)], axis=1)
    packed = jnp.concatenate([jnp.array([[EOT]]), first, second], axis=1)  # [eot doc1][eot doc2]
    params = _init(cfg, packed)
    alone = _per_token_logprobs(cfg, params, second)
    together = _per_token_logprobs(cfg, params, packed)[:, 12:]
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)
    unmasked = _per_token_logprobs(dataclasses.replace(cfg, doc_mask_token=-1), params, packed)[:, 12:]
    assert not np.allclose(unmasked, alone, atol=1e-3)  # Without the mask the first document leaks in.
    # Same through the loss: per-document mean losses equal.
    targets = jnp.roll(packed, -1, axis=1)
    loss = llama.Llama(cfg).apply({"params": params}, packed, targets, train=False)
    assert np.isfinite(float(loss))


# --- head, config errors, family registry ------------------------------------------------------------


def test_tied_and_untied_heads():
    tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, 64)
    tied = _init(dataclasses.replace(TINY, tie_embeddings=True), tokens)
    untied = _init(dataclasses.replace(TINY, tie_embeddings=False), tokens)
    assert "head" not in tied and untied["head"].shape == (32, 64)
    diff = llama.count_params(untied) - llama.count_params(tied)
    assert diff == 64 * 32
    # An untied head equal to the embedding's transpose gives the tied model's logits.
    untied = {**tied, "head": tied["embed"]["embedding"].T}
    a = llama.Llama(dataclasses.replace(TINY, tie_embeddings=True)).apply({"params": tied}, tokens)
    b = llama.Llama(dataclasses.replace(TINY, tie_embeddings=False)).apply({"params": untied}, tokens)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    cfg = dataclasses.replace(TINY, tie_embeddings=True)
    flops_tied = llama.flops_per_token(cfg, tied, 16)
    assert flops_tied == 6 * llama.count_params(tied) + 12 * 2 * 32 * 16  # The tied table counts once.


def test_loss_paths_agree_and_train():
    cfg = dataclasses.replace(TINY, loss_chunk_tokens=8)
    tokens = jax.random.randint(jax.random.key(0), (2, 16), 0, 64)
    targets = jax.random.randint(jax.random.key(1), (2, 16), 0, 64)
    params = _init(cfg, tokens)
    model = llama.Llama(cfg)
    fused = model.apply({"params": params}, tokens, targets)
    plain = model.apply({"params": params}, tokens, targets, train=False)
    logits = model.apply({"params": params}, tokens)
    manual = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1))
    np.testing.assert_allclose([fused, plain], [manual, manual], rtol=1e-5)
    assert logits.dtype == jnp.float32


def test_remat_and_bf16_give_the_same_function():
    tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, 64)
    params = _init(TINY, tokens)
    base = llama.Llama(TINY).apply({"params": params}, tokens, tokens)
    remat = llama.Llama(dataclasses.replace(TINY, remat=True)).apply({"params": params}, tokens, tokens)
    np.testing.assert_allclose(remat, base, rtol=1e-6)
    bf16 = llama.Llama(dataclasses.replace(TINY, dtype="bfloat16")).apply({"params": params}, tokens, tokens)
    np.testing.assert_allclose(bf16, base, rtol=2e-2)


@pytest.mark.parametrize("kwargs, field", [
    ({"num_heads": 4, "num_kv_heads": 3}, "LlamaConfig.num_kv_heads=3: must divide num_heads 4"),
    ({"num_kv_heads": 0}, "LlamaConfig.num_kv_heads=0"),
    ({"model_dim": 30}, "LlamaConfig.num_heads=4: model_dim 30"),
    ({"head_dim": 7}, "LlamaConfig.head_dim=7: RoPE needs an even"),
    ({"rope_style": "neox"}, "LlamaConfig.rope_style='neox': expected one of"),
    ({"attention_impl": "flash"}, "LlamaConfig.attention_impl='flash'"),
    ({"dtype": "fp8"}, "LlamaConfig.dtype='fp8'"),
    ({"param_dtype": "float16"}, "LlamaConfig.param_dtype='float16'"),
    ({"ffn_dim_multiplier": 0.0}, "LlamaConfig.ffn_dim_multiplier=0.0"),
    ({"multiple_of": 0}, "LlamaConfig.multiple_of=0"),
    ({"hidden_dim": -1}, "LlamaConfig.hidden_dim=-1"),
    ({"norm_eps": 0.0}, "LlamaConfig.norm_eps=0.0"),
    ({"rope_theta": -1.0}, "LlamaConfig.rope_theta=-1.0"),
    ({"rope_high_freq_factor": 1.0}, "LlamaConfig.rope_high_freq_factor=1.0: must exceed"),
    ({"rope_scale_factor": 0.0}, "LlamaConfig.rope_scale_factor=0.0"),
    ({"logit_vocab_size": 65}, "LlamaConfig.logit_vocab_size=65"),
    ({"doc_mask_token": 64}, "LlamaConfig.doc_mask_token=64"),
    ({"doc_mask_token": -2}, "LlamaConfig.doc_mask_token=-2"),
    ({"vocab_size": 0}, "LlamaConfig.vocab_size=0"),
])
def test_bad_values_are_config_errors(kwargs, field):
    with pytest.raises(launch.ConfigError) as info:
        dataclasses.replace(TINY, **kwargs)
    assert str(info.value).splitlines()[0].startswith(field), str(info.value)


def test_unknown_family_is_a_config_error(clean_gin):
    with pytest.raises(launch.ConfigError, match="make_model.family='bert'"):
        registry.make_model("bert")
    assert registry.make_model().family == "gpt"  # The trainer's default stays the GPT.


def test_kv_heads_must_divide_the_tensor_axis(clean_gin):
    launch.parse_config([], ["make_model.family = 'llama'", "LlamaConfig.num_layers = 1",
                             "LlamaConfig.model_dim = 32", "LlamaConfig.num_heads = 4",
                             "LlamaConfig.num_kv_heads = 2", "LlamaConfig.vocab_size = 64",
                             "make_mesh.data = 2", "make_mesh.tensor = 4"])
    with pytest.raises(launch.UserError, match="LlamaConfig.num_kv_heads=2 does not divide by the 4-way"):
        trainer.build(total_steps=2, seq_len=16, global_batch_size=8, microbatches=1)


# --- sharded training (8 fake CPU devices) and the binary --------------------------------------------

SHARD_TINY = [
    "make_model.family = 'llama'",
    "LlamaConfig.dtype = 'float32'",
    "LlamaConfig.vocab_size = 320",
    "LlamaConfig.num_layers = 2",
    "LlamaConfig.model_dim = 64",
    "LlamaConfig.num_heads = 8",
    "LlamaConfig.num_kv_heads = 4",
    "LlamaConfig.ffn_dim_multiplier = None",
    "LlamaConfig.multiple_of = 32",
    "LlamaConfig.max_seq_len = 32",
    "LlamaConfig.tie_embeddings = False",
    "LlamaConfig.doc_mask_token = 256",
    "LlamaConfig.loss_chunk_tokens = 128",
    "make_optimizer.adam_lr = 3e-3",
]
STEPS, BATCH, SEQ = 4, 16, 32


def _losses(mesh_bindings):
    losses, state, exp = train_losses([], SHARD_TINY + mesh_bindings, STEPS, BATCH, SEQ)
    assert isinstance(exp.model, llama.Llama)
    return losses, state


@pytest.mark.parametrize("mesh", [
    ["make_mesh.data = 1", "make_mesh.fsdp = 2", "make_mesh.tensor = 4"],
    ["make_mesh.data = 1", "make_mesh.fsdp = 4", "make_mesh.tensor = 2"],
], ids=["fsdp2_tensor4", "fsdp4_tensor2"])
def test_sharded_training_matches_one_device(mesh, clean_gin):
    assert jax.device_count() == 8
    expected, _ = _losses(["make_mesh.data = 1", "make_mesh.fsdp = 1", "make_mesh.tensor = 1"])
    losses, state = _losses(mesh)
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(losses, expected, rtol=2e-5)
    for path in (("block_0", "attn", "wk", "kernel"), ("block_0", "mlp", "w1", "kernel"), ("head",)):
        leaf = state["params"]
        for key in path:
            leaf = leaf[key]
        assert len({str(s.index) for s in leaf.addressable_shards}) == 8, (path, leaf.sharding)


def test_speedrun_binary_trains_llama3_tiny(tmp_path):
    proc = run_binary("experiments.speedrun", "--gin_file=configs/speedrun/llama3_tiny.gin",
                      "--gin_bindings=train.total_steps = 30", "--gin_bindings=train.eval_every = 15",
                      "--gin_bindings=train.val_tokens = 16384", f"--workdir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r["loss"] for r in rows if r["kind"] == "val"]
    assert len(val) >= 2 and val[-1] < val[0] - 0.5, rows
