"""The Flax CLIP: embedding shapes, an independent NumPy forward pass in HF's layouts, the safetensors round trip,
loading errors, the causal mask, EOS pooling (both rules), a BPE tokenizer, and the scorer's gradient.

Every model here is a random-initialised tiny CLIP (ClipConfig.tiny()), standing in for a trained one.
"""

import dataclasses
import json
import math
import os

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from safetensors.numpy import save_file

from libs.models import clip
from libs.train.errors import ConfigError, UserError

CFG = clip.ClipConfig.tiny()
TEXT, VISION = CFG.text, CFG.vision


MODEL = clip.ClipModel(CFG)
# Jitted once for the module: op-by-op (eager) Flax calls are slow on CPU.
_forward = jax.jit(lambda params, ids, pixels: MODEL.apply({"params": params}, ids, pixels))
_encode_text = jax.jit(lambda params, ids: MODEL.apply({"params": params}, ids, method=clip.ClipModel.encode_text))
_encode_image = jax.jit(lambda params, px: MODEL.apply({"params": params}, px, method=clip.ClipModel.encode_image))


def _perturbed_params(seed=0):
    """Random params with every leaf (LayerNorm scales and biases too) moved off its initial value."""
    rng = np.random.default_rng(seed)
    params = clip.init_params(MODEL, jax.random.key(seed))
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x) + 0.1 * rng.standard_normal(x.shape, np.float32)), params)


@pytest.fixture(scope="module")
def params():
    return _perturbed_params()


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A small BPE tokenizer trained here, with CLIP's special tokens and a bos/eos post-processor."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    tok.normalizer = tokenizers.normalizers.Lowercase()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    special = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=80, special_tokens=special)
    tok.train_from_iterator(["a stone house with a wooden door", "a tall tower of bricks", "the house is red"],
                            trainer)
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[(t, tok.token_to_id(t)) for t in special[:2]])
    return tok


def _text_ids(rows):
    return jnp.asarray(clip.ByteTokenizer(TEXT.max_position_embeddings).encode(rows))


def _images(n, size=VISION.image_size, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, size, size, 3))


def _write_folder(path, params, cfg=CFG, tokenizer=None, state=None):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg.to_hf(), f)
    save_file(clip.to_hf_state_dict(params) if state is None else state, os.path.join(path, "model.safetensors"))
    if tokenizer is not None:
        tokenizer.save(os.path.join(path, "tokenizer.json"))
    return str(path)


# --- an independent forward pass, written against HF's layouts (Linear weight (out, in), conv OIHW, NCHW) ---------


def _ln(x, sd, name, eps):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def _linear(x, sd, name):
    return x @ sd[f"{name}.weight"].T + sd.get(f"{name}.bias", 0.0)


def _encoder(x, sd, prefix, cfg, causal):
    n, length, dim = x.shape
    heads, hd = cfg.num_attention_heads, dim // cfg.num_attention_heads
    for i in range(cfg.num_hidden_layers):
        p = f"{prefix}.encoder.layers.{i}"
        h = _ln(x, sd, f"{p}.layer_norm1", cfg.layer_norm_eps)
        q, k, v = (_linear(h, sd, f"{p}.self_attn.{c}_proj").reshape(n, length, heads, hd).transpose(0, 2, 1, 3)
                   for c in "qkv")
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        if causal:
            scores = scores + np.triu(np.full((length, length), -np.inf), 1)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        x = x + _linear((w @ v).transpose(0, 2, 1, 3).reshape(n, length, dim), sd, f"{p}.self_attn.out_proj")
        h = _linear(_ln(x, sd, f"{p}.layer_norm2", cfg.layer_norm_eps), sd, f"{p}.mlp.fc1")
        x = x + _linear(h / (1 + np.exp(-1.702 * h)), sd, f"{p}.mlp.fc2")  # quick_gelu
    return x


def _reference_text(sd, ids):
    ids = np.asarray(ids)
    x = sd["text_model.embeddings.token_embedding.weight"][ids]
    x = x + sd["text_model.embeddings.position_embedding.weight"][: ids.shape[1]]
    x = _ln(_encoder(x, sd, "text_model", TEXT, causal=True), sd, "text_model.final_layer_norm", TEXT.layer_norm_eps)
    pooled = x[np.arange(len(ids)), [list(row).index(TEXT.eos_token_id) for row in ids]]
    return _linear(pooled, sd, "text_projection")


def _reference_image(sd, pixels_nhwc):
    x = np.asarray(pixels_nhwc).transpose(0, 3, 1, 2)  # NCHW, as HF takes it
    n, c, size, _ = x.shape
    p, g = VISION.patch_size, size // VISION.patch_size
    patches = x.reshape(n, c, g, p, g, p)
    conv = np.einsum("ncaibj,dcij->ndab", patches, sd["vision_model.embeddings.patch_embedding.weight"])
    tokens = conv.reshape(n, -1, g * g).transpose(0, 2, 1)  # flatten(2).transpose(1, 2)
    cls = np.broadcast_to(sd["vision_model.embeddings.class_embedding"], (n, 1, tokens.shape[-1]))
    x = np.concatenate([cls, tokens], 1) + sd["vision_model.embeddings.position_embedding.weight"]
    x = _ln(x, sd, "vision_model.pre_layrnorm", VISION.layer_norm_eps)
    x = _encoder(x, sd, "vision_model", VISION, causal=False)
    pooled = _ln(x[:, 0], sd, "vision_model.post_layernorm", VISION.layer_norm_eps)
    return _linear(pooled, sd, "visual_projection")


# --- tests ----------------------------------------------------------------------------------------------------------


def test_embedding_shapes_and_logits(params):
    ids, pixels = _text_ids(["a house", "a tower", "x"]), _images(2)
    out = _forward(params, ids, pixels)
    assert out["text_embeds"].shape == (3, CFG.projection_dim)
    assert out["image_embeds"].shape == (2, CFG.projection_dim)
    assert out["logits_per_image"].shape == (2, 3) and out["logits_per_text"].shape == (3, 2)
    np.testing.assert_allclose(np.linalg.norm(out["image_embeds"], axis=-1), 1.0, rtol=1e-5)
    expected = np.exp(params["logit_scale"]) * out["image_embeds"] @ out["text_embeds"].T
    np.testing.assert_allclose(out["logits_per_image"], expected, rtol=1e-5)


def test_matches_numpy_reference_in_hf_layout(params):
    sd = {k: v.astype(np.float64) for k, v in clip.to_hf_state_dict(params).items()}
    assert sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape == (TEXT.intermediate_size, TEXT.hidden_size)
    assert sd["vision_model.embeddings.patch_embedding.weight"].shape == (VISION.hidden_size, 3, 8, 8)
    assert sd["logit_scale"].shape == ()
    ids, pixels = _text_ids(["a stone house", "door"]), _images(2)
    text, image = _encode_text(params, ids), _encode_image(params, pixels)
    np.testing.assert_allclose(text, _reference_text(sd, ids), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(image, _reference_image(sd, pixels), rtol=1e-4, atol=1e-4)


def test_safetensors_round_trip(tmp_path, params, bpe_tokenizer):
    folder = _write_folder(tmp_path / "clip", params, tokenizer=bpe_tokenizer)
    model, loaded, tokenizer = clip.load_clip(folder)
    assert model.cfg == CFG
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
    ids, pixels = jnp.asarray(tokenizer.encode(["a red house", "a door", "x"])), _images(2)
    np.testing.assert_array_equal(_forward(loaded, ids, pixels)["logits_per_image"],
                                  _forward(params, ids, pixels)["logits_per_image"])


def test_old_checkpoint_buffers_are_ignored(tmp_path, params, bpe_tokenizer):
    state = clip.to_hf_state_dict(params)
    state["text_model.embeddings.position_ids"] = np.arange(TEXT.max_position_embeddings)[None]
    folder = _write_folder(tmp_path / "clip", params, tokenizer=bpe_tokenizer, state=state)
    jax.tree.map(np.testing.assert_array_equal, clip.load_clip(folder)[1], params)


@pytest.mark.parametrize("change, culprit", [
    ("drop", "text_model.encoder.layers.1.self_attn.k_proj.bias"),
    ("extra", "text_model.encoder.layers.2.mlp.fc1.weight"),
    ("reshape", "vision_model.embeddings.position_embedding.weight"),
])
def test_bad_tensor_is_named(tmp_path, params, bpe_tokenizer, change, culprit):
    state = clip.to_hf_state_dict(params)
    if change == "drop":
        del state[culprit]
    elif change == "extra":
        state[culprit] = np.zeros((2, 2), np.float32)
    else:
        state[culprit] = state[culprit][:-1]
    folder = _write_folder(tmp_path / "clip", params, tokenizer=bpe_tokenizer, state=state)
    with pytest.raises(UserError, match=culprit.replace(".", r"\.")):
        clip.load_clip(folder)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file_is_named(tmp_path, params, bpe_tokenizer, missing):
    folder = _write_folder(tmp_path / "clip", params, tokenizer=bpe_tokenizer)
    os.remove(os.path.join(folder, missing))
    with pytest.raises(UserError, match=os.path.join(folder, missing)):
        clip.load_clip(folder)


def test_config_from_hf_defaults_overrides_and_errors(tmp_path):
    default = clip.ClipConfig.from_hf({"model_type": "clip"})
    assert (default.text.hidden_size, default.vision.hidden_size, default.vision.patch_size) == (512, 768, 32)
    legacy = clip.ClipConfig.from_hf({"text_config": {"eos_token_id": 2, "hidden_size": 64},
                                      "text_config_dict": {"hidden_size": 128}, "projection_dim": 32})
    assert (legacy.text.eos_token_id, legacy.text.hidden_size, legacy.projection_dim) == (2, 128, 32)
    hf = CFG.to_hf()
    hf["vision_config"]["hidden_act"] = "swish"
    (tmp_path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(UserError, match=r"config\.json.*hidden_act"):
        clip.load_config(str(tmp_path))
    with pytest.raises(ConfigError, match="image_size"):
        dataclasses.replace(VISION, image_size=30)


def test_causal_mask_and_pooled_position(params):
    text_model = jax.jit(lambda ids: MODEL.apply({"params": params}, ids, method=lambda m, x: m.text_model(x)))
    ids = _text_ids(["a stone house", "wall"])
    i = 5
    changed = ids.at[:, i + 1:].set((ids[:, i + 1:] + 7) % 256)
    (a, pooled), (b, _) = text_model(ids), text_model(changed)
    np.testing.assert_array_equal(a[:, : i + 1], b[:, : i + 1])
    assert np.abs(a[:, i + 1:] - b[:, i + 1:]).min() > 1e-4  # every later position saw the change
    np.testing.assert_array_equal(pooled, a[np.arange(2), [14, 5]])  # the end-of-text tokens


@pytest.mark.parametrize("eos_token_id, position", [(2, 4), (9, 2)])
def test_pooling_rule(eos_token_id, position):
    # Legacy configs (eos_token_id == 2) pool at the largest id (200, position 4); others at the first EOS.
    ids = jnp.asarray([[1, 5, 9, 3, 200, 9, 4, 2, 0, 0, 0]])
    assert int(clip.pool_positions(ids, eos_token_id)[0]) == position


def test_bpe_tokenizer_pads_and_truncates(tmp_path, params, bpe_tokenizer):
    folder = _write_folder(tmp_path / "clip", params, tokenizer=bpe_tokenizer)
    tokenizer = clip.load_clip(folder)[2]
    bos, eos = bpe_tokenizer.token_to_id("<|startoftext|>"), bpe_tokenizer.token_to_id("<|endoftext|>")
    length = TEXT.max_position_embeddings
    short, long = tokenizer.encode(["A stone house", " ".join(["tower"] * 40)])
    words = bpe_tokenizer.encode("a stone house", add_special_tokens=False).ids
    assert list(short) == [bos, *words, eos] + [eos] * (length - len(words) - 2)  # pads with <|endoftext|>
    assert long.shape == (length,) and long[0] == bos and long[-1] == eos


def test_scorer_stand_in_is_differentiable(caplog):
    with caplog.at_level("WARNING"):
        scorer = clip.ClipScorer(None, "a stone house")
    assert scorer.is_stand_in and scorer.label == "random-initialised tiny CLIP (stand-in, not a trained model)"
    assert "stand-in" in caplog.text
    images = jax.random.uniform(jax.random.key(3), (2, 20, 24, 3))  # any size: resized to image_size

    def total_and_scores(x, params):  # as a training step would call it: inside jit, weights as an argument
        scores = scorer.score_with(params, x)
        return scores.sum(), scores

    (_, scores), grad = jax.jit(jax.value_and_grad(total_and_scores, has_aux=True))(images, scorer.params)
    np.testing.assert_allclose(scorer.score(images), scores, rtol=1e-5, atol=1e-6)
    assert scores.shape == (2,) and np.all(np.abs(scores) <= 1 + 1e-6)
    # The same cosine, computed by hand from the model's pieces.
    pixels = np.asarray(jax.image.resize(images, (2, 32, 32, 3), "bilinear"))
    pixels = (pixels - np.asarray(clip.CLIP_MEAN)) / np.asarray(clip.CLIP_STD)
    image = _encode_image(scorer.params, jnp.asarray(pixels, jnp.float32))
    text = _encode_text(scorer.params, _text_ids(["a stone house", "x"]))[0]
    expected = image @ text / (np.linalg.norm(image, axis=-1) * np.linalg.norm(text))
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    assert grad.shape == images.shape and np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_scorer_loads_folder_through_gin(tmp_path, params, bpe_tokenizer, clean_gin):
    folder = _write_folder(tmp_path / "clip", params, tokenizer=bpe_tokenizer)
    gin.parse_config([f"ClipScorer.model_dir = '{folder}'", "ClipScorer.prompt = 'a red house'"])
    scorer = clip.ClipScorer()
    assert not scorer.is_stand_in and folder in scorer.label
    text = _encode_text(params, jnp.asarray(scorer.tokenizer.encode(["a red house", "x"])))[0]
    np.testing.assert_allclose(scorer.text_embedding, text / np.linalg.norm(text), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="prompt"):
        clip.ClipScorer(None, "  ")
    gin.clear_config()
    with pytest.raises(ConfigError, match="model_dir is not set"):  # the stand-in is never chosen by omission
        clip.ClipScorer(prompt="a red house")
