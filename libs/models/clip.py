"""CLIP in Flax (linen), loading Hugging Face `CLIPModel` checkpoints, and a text-image scorer for guidance.

The architecture follows HF's modeling_clip.py exactly: each tower is an embedding, `num_hidden_layers` pre-LN
encoder layers [layer_norm1 -> self_attn (q/k/v/out_proj, with bias) -> residual; layer_norm2 -> mlp fc1 -> act ->
fc2 -> residual] and a final norm. The text tower is causal and pools at the end-of-text token (HF's legacy rule for
configs with eos_token_id == 2: the argmax of the ids, CLIP's end-of-text being its largest id; otherwise the first
position holding eos_token_id); the vision tower (a bias-free patch conv, a class token, pre_layrnorm [sic]) pools
the class token through post_layernorm. Bias-free `text_projection` / `visual_projection` and `logit_scale` follow.

Module and parameter names mirror HF's, so the weight mapping is mechanical: `layers.N` <-> `layers_N`, `weight` <->
`kernel` (Dense: transposed; the patch conv: OIHW <-> HWIO) / `scale` (LayerNorm) / `embedding` (Embed). Images enter
the model NHWC, already normalised; `ClipScorer` does the resizing and normalisation.

No padding mask is applied to the text tower (the OpenAI model has none): padding comes after the end-of-text
token and the causal mask keeps it from reaching the pooled position.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import gin
import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from flax import linen as nn
from flax import traverse_util
from safetensors import SafetensorError
from safetensors.numpy import load_file

from libs.train.errors import ConfigError, UserError

log = logging.getLogger(__name__)

Array = jax.Array
Params = dict[str, Any]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
STAND_IN_LABEL = "random-initialised tiny CLIP (stand-in, not a trained model)"
_ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # HF's "gelu" is the exact (erf) form
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}
# Non-persistent buffers that checkpoints saved by older transformers versions still carry.
_SKIPPED_BUFFERS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


# --- configuration ------------------------------------------------------------------------------------------------


def _check_tower(cfg: Any) -> None:
    name = type(cfg).__name__
    err = lambda field, msg: ConfigError(f"{name}.{field}={getattr(cfg, field)!r}: {msg}")
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if field.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise err(field.name, "must be a positive integer")
    if cfg.hidden_act not in _ACTIVATIONS:
        raise err("hidden_act", f"must be one of {sorted(_ACTIVATIONS)}")
    if cfg.hidden_size % cfg.num_attention_heads:
        raise err("hidden_size", f"must be divisible by num_attention_heads={cfg.num_attention_heads}")
    if not (isinstance(cfg.layer_norm_eps, (int, float)) and cfg.layer_norm_eps > 0):
        raise err("layer_norm_eps", "must be a positive number")


@dataclasses.dataclass(frozen=True)
class ClipTextConfig:
    """The text tower; the defaults are HF's (openai/clip-vit-base-patch32), used for keys a config.json omits."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_attention_heads: int = 8
    num_hidden_layers: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 49407  # 2 (OpenAI's uploads): pool at the argmax of the ids, as HF does for them

    def __post_init__(self):
        _check_tower(self)


@dataclasses.dataclass(frozen=True)
class ClipVisionConfig:
    """The vision tower; the defaults are HF's (openai/clip-vit-base-patch32)."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_attention_heads: int = 12
    num_hidden_layers: int = 12
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        _check_tower(self)
        if self.image_size % self.patch_size:
            raise ConfigError(f"ClipVisionConfig.image_size={self.image_size}: must be a multiple of "
                              f"patch_size={self.patch_size}")


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    """A whole CLIPModel: both towers, the shared embedding width and the initial logit scale."""

    text: ClipTextConfig = dataclasses.field(default_factory=ClipTextConfig)
    vision: ClipVisionConfig = dataclasses.field(default_factory=ClipVisionConfig)
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592

    def __post_init__(self):
        if not isinstance(self.projection_dim, int) or self.projection_dim <= 0:
            raise ConfigError(f"ClipConfig.projection_dim={self.projection_dim!r}: must be a positive integer")

    @classmethod
    def tiny(cls) -> ClipConfig:
        """A few-thousand-parameter CLIP for tests; its vocabulary fits `ByteTokenizer` (bytes, bos 256, eos 257)."""
        text = ClipTextConfig(vocab_size=ByteTokenizer.VOCAB_SIZE, hidden_size=32, intermediate_size=64,
                              num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=16,
                              eos_token_id=ByteTokenizer.EOS)
        vision = ClipVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                                  image_size=32, patch_size=8)
        return cls(text=text, vision=vision, projection_dim=16)

    @classmethod
    def from_hf(cls, config: dict[str, Any]) -> ClipConfig:
        """From the dict of an HF CLIPModel config.json; omitted keys take HF's defaults, as transformers does."""
        if config.get("model_type", "clip") != "clip":
            raise ConfigError(f"model_type={config['model_type']!r}: only 'clip' (CLIPModel) is supported")

        def tower(kind: type, key: str):
            # `*_config_dict` (older configs) overrides `*_config`, as in HF's CLIPConfig.
            merged = {**(config.get(f"{key}_config") or {}), **(config.get(f"{key}_config_dict") or {})}
            return kind(**{f.name: merged[f.name] for f in dataclasses.fields(kind) if f.name in merged})

        kwargs = {k: config[k] for k in ("projection_dim", "logit_scale_init_value") if k in config}
        return cls(text=tower(ClipTextConfig, "text"), vision=tower(ClipVisionConfig, "vision"), **kwargs)

    def to_hf(self) -> dict[str, Any]:
        """An HF config.json dict describing this model."""
        return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": self.projection_dim,
                "logit_scale_init_value": self.logit_scale_init_value,
                "text_config": dataclasses.asdict(self.text), "vision_config": dataclasses.asdict(self.vision)}


# --- modules --------------------------------------------------------------------------------------------------------


class ClipAttention(nn.Module):
    """Multi-head self-attention with biased q/k/v/out projections; `mask` (L, L) bool, True = may attend."""

    num_heads: int

    @nn.compact
    def __call__(self, x: Array, mask: Array | None) -> Array:
        n, length, dim = x.shape
        head_dim = dim // self.num_heads
        split = lambda t: t.reshape(n, length, self.num_heads, head_dim)
        q, k, v = (split(nn.Dense(dim, name=f"{p}_proj")(x)) for p in "qkv")
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) * head_dim**-0.5
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x.dtype)
        out = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, length, dim)
        return nn.Dense(dim, name="out_proj")(out)


class ClipMlp(nn.Module):
    intermediate_size: int
    hidden_act: str

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = _ACTIVATIONS[self.hidden_act](nn.Dense(self.intermediate_size, name="fc1")(x))
        return nn.Dense(x.shape[-1], name="fc2")(h)


class ClipEncoderLayer(nn.Module):
    cfg: ClipTextConfig | ClipVisionConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None) -> Array:
        eps = self.cfg.layer_norm_eps
        x = x + ClipAttention(self.cfg.num_attention_heads, name="self_attn")(
            nn.LayerNorm(epsilon=eps, name="layer_norm1")(x), mask)
        mlp = ClipMlp(self.cfg.intermediate_size, self.cfg.hidden_act, name="mlp")
        return x + mlp(nn.LayerNorm(epsilon=eps, name="layer_norm2")(x))


class ClipEncoder(nn.Module):
    cfg: ClipTextConfig | ClipVisionConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        for i in range(self.cfg.num_hidden_layers):
            x = ClipEncoderLayer(self.cfg, name=f"layers_{i}")(x, mask)
        return x


class ClipTextEmbeddings(nn.Module):
    cfg: ClipTextConfig

    @nn.compact
    def __call__(self, input_ids: Array) -> Array:
        length = input_ids.shape[-1]
        if length > self.cfg.max_position_embeddings:
            raise ValueError(f"{length} tokens exceed max_position_embeddings={self.cfg.max_position_embeddings}")
        init = nn.initializers.normal(0.02)
        tokens = nn.Embed(self.cfg.vocab_size, self.cfg.hidden_size, embedding_init=init, name="token_embedding")
        positions = nn.Embed(self.cfg.max_position_embeddings, self.cfg.hidden_size, embedding_init=init,
                             name="position_embedding")
        return tokens(input_ids) + positions(jnp.arange(length))


def pool_positions(input_ids: Array, eos_token_id: int) -> Array:
    """Where each sequence is pooled: HF's legacy argmax of the ids when eos_token_id == 2, else the first EOS."""
    if eos_token_id == 2:
        return jnp.argmax(input_ids, axis=-1)
    return jnp.argmax(input_ids == eos_token_id, axis=-1)


class ClipTextTransformer(nn.Module):
    """(n, L) ids -> (last hidden states (n, L, D) after final_layer_norm, pooled (n, D))."""

    cfg: ClipTextConfig

    @nn.compact
    def __call__(self, input_ids: Array) -> tuple[Array, Array]:
        x = ClipTextEmbeddings(self.cfg, name="embeddings")(input_ids)
        length = input_ids.shape[-1]
        causal = jnp.tril(jnp.ones((length, length), bool))
        x = ClipEncoder(self.cfg, name="encoder")(x, causal)
        x = nn.LayerNorm(epsilon=self.cfg.layer_norm_eps, name="final_layer_norm")(x)
        pooled = jnp.take_along_axis(x, pool_positions(input_ids, self.cfg.eos_token_id)[:, None, None], axis=1)
        return x, pooled[:, 0]


class ClipVisionEmbeddings(nn.Module):
    cfg: ClipVisionConfig

    @nn.compact
    def __call__(self, pixels: Array) -> Array:
        cfg = self.cfg
        if pixels.shape[1:] != (cfg.image_size, cfg.image_size, cfg.num_channels):
            raise ValueError(f"pixels of shape {pixels.shape}; the model takes (n, {cfg.image_size}, "
                             f"{cfg.image_size}, {cfg.num_channels})")
        patches = nn.Conv(cfg.hidden_size, (cfg.patch_size,) * 2, strides=(cfg.patch_size,) * 2, padding="VALID",
                          use_bias=False, name="patch_embedding")(pixels)
        n = pixels.shape[0]
        patches = patches.reshape(n, -1, cfg.hidden_size)  # row-major over the patch grid, as HF's flatten(2)
        class_embedding = self.param("class_embedding", nn.initializers.normal(0.02), (cfg.hidden_size,))
        x = jnp.concatenate([jnp.broadcast_to(class_embedding, (n, 1, cfg.hidden_size)), patches], axis=1)
        positions = nn.Embed(x.shape[1], cfg.hidden_size, embedding_init=nn.initializers.normal(0.02),
                             name="position_embedding")
        return x + positions(jnp.arange(x.shape[1]))


class ClipVisionTransformer(nn.Module):
    """(n, S, S, 3) normalised pixels -> (last hidden states (n, 1 + patches, D), pooled class token (n, D))."""

    cfg: ClipVisionConfig

    @nn.compact
    def __call__(self, pixels: Array) -> tuple[Array, Array]:
        eps = self.cfg.layer_norm_eps
        x = ClipVisionEmbeddings(self.cfg, name="embeddings")(pixels)
        x = nn.LayerNorm(epsilon=eps, name="pre_layrnorm")(x)  # sic: HF's (and OpenAI's) spelling
        x = ClipEncoder(self.cfg, name="encoder")(x)
        return x, nn.LayerNorm(epsilon=eps, name="post_layernorm")(x[:, 0])


class ClipModel(nn.Module):
    """HF's CLIPModel. `__call__(input_ids, pixels)` returns the normalised embeddings and the scaled logits."""

    cfg: ClipConfig

    def setup(self):
        self.text_model = ClipTextTransformer(self.cfg.text)
        self.vision_model = ClipVisionTransformer(self.cfg.vision)
        self.text_projection = nn.Dense(self.cfg.projection_dim, use_bias=False)
        self.visual_projection = nn.Dense(self.cfg.projection_dim, use_bias=False)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(self.cfg.logit_scale_init_value), ())

    def encode_text(self, input_ids: Array) -> Array:
        """(n, L) ids -> (n, projection_dim) unnormalised text embeddings (HF's get_text_features)."""
        return self.text_projection(self.text_model(input_ids)[1])

    def encode_image(self, pixels: Array) -> Array:
        """(n, S, S, 3) normalised pixels -> (n, projection_dim) unnormalised embeddings (get_image_features)."""
        return self.visual_projection(self.vision_model(pixels)[1])

    def __call__(self, input_ids: Array, pixels: Array) -> dict[str, Array]:
        text = _normalise(self.encode_text(input_ids))
        image = _normalise(self.encode_image(pixels))
        logits_per_image = jnp.exp(self.logit_scale) * image @ text.T
        return {"text_embeds": text, "image_embeds": image, "logits_per_image": logits_per_image,
                "logits_per_text": logits_per_image.T}


def _normalise(x: Array) -> Array:
    # The floor keeps the gradient finite for an all-zero embedding.
    return x / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), 1e-24))


def init_params(model: ClipModel, key: Array) -> Params:
    """Random parameters (Flax's initialisers, not HF's) for `model`."""
    return _jitted_init(model.cfg)(key)


@functools.lru_cache(maxsize=8)
def _jitted_init(cfg: ClipConfig):
    ids = jnp.zeros((1, cfg.text.max_position_embeddings), jnp.int32)
    pixels = jnp.zeros((1, cfg.vision.image_size, cfg.vision.image_size, cfg.vision.num_channels), jnp.float32)
    return jax.jit(lambda key: ClipModel(cfg).init(key, ids, pixels)["params"])


# --- tokenizers -----------------------------------------------------------------------------------------------------


class ClipTokenizer:
    """A `tokenizers.Tokenizer` (with its own bos/eos post-processor) giving fixed-length rows of ids.

    Texts are truncated to `length` ids, special tokens included (the tokenizer keeps the end-of-text token), and
    padded with `pad_id`.
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, length: int, pad_id: int):
        self.tokenizer = tokenizers.Tokenizer.from_str(tokenizer.to_str())  # a copy: truncation is set on it
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(length)
        self.length, self.pad_id = length, pad_id

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), length) int32 ids."""
        rows = np.full((len(texts), self.length), self.pad_id, np.int32)
        for row, encoding in zip(rows, self.tokenizer.encode_batch(list(texts))):
            row[: len(encoding.ids)] = encoding.ids
        return rows


class ByteTokenizer:
    """A trivial stand-in tokenizer for tests (no trained vocabulary): UTF-8 bytes between bos 256 and eos 257."""

    BOS, EOS, VOCAB_SIZE = 256, 257, 258

    def __init__(self, length: int):
        self.length, self.pad_id = length, self.EOS

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), length) int32 ids: bos, bytes (truncated), eos, then eos padding."""
        rows = np.full((len(texts), self.length), self.pad_id, np.int32)
        for row, text in zip(rows, texts):
            ids = [self.BOS, *text.encode("utf-8")[: self.length - 2], self.EOS]
            row[: len(ids)] = ids
        return rows


def _pad_id(tokenizer: tokenizers.Tokenizer, eos_token_id: int) -> int:
    """The tokenizer's own padding id, else `<|endoftext|>` (what OpenAI's CLIP pads with), else the config's EOS."""
    if tokenizer.padding is not None:
        return int(tokenizer.padding["pad_id"])
    end_of_text = tokenizer.token_to_id("<|endoftext|>")
    return eos_token_id if end_of_text is None else end_of_text


# --- weights --------------------------------------------------------------------------------------------------------


def _hf_name(path: tuple[str, ...]) -> str:
    """HF's name for the Flax parameter at `path`."""
    parts = [f"layers.{p[len('layers_'):]}" if re.fullmatch(r"layers_\d+", p) else p for p in path[:-1]]
    leaf = "weight" if path[-1] in ("kernel", "scale", "embedding") else path[-1]
    return ".".join([*parts, leaf])


def _to_hf(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel":  # Dense (in, out) -> Linear (out, in); conv HWIO -> OIHW
        return value.T if value.ndim == 2 else value.transpose(3, 2, 0, 1)
    return value


def _from_hf(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel":
        return value.T if value.ndim == 2 else value.transpose(2, 3, 1, 0)
    return value


def to_hf_state_dict(params: Params) -> dict[str, np.ndarray]:
    """HF CLIPModel names -> float arrays in HF's layouts (the inverse of the mapping `load_clip` applies)."""
    flat = traverse_util.flatten_dict(params)
    return {_hf_name(path): np.array(_to_hf(path, np.asarray(value)), order="C") for path, value in flat.items()}


def params_from_hf(cfg: ClipConfig, state: dict[str, np.ndarray], source: str = "state dict") -> Params:
    """Flax params for `cfg` from an HF state dict; a missing, unexpected or wrong-shaped tensor is a UserError."""
    model = ClipModel(cfg)
    cfg_ids = jax.ShapeDtypeStruct((1, cfg.text.max_position_embeddings), jnp.int32)
    cfg_pixels = jax.ShapeDtypeStruct((1, cfg.vision.image_size, cfg.vision.image_size, cfg.vision.num_channels),
                                      jnp.float32)
    shapes = traverse_util.flatten_dict(jax.eval_shape(model.init, jax.random.key(0), cfg_ids, cfg_pixels)["params"])
    expected = {_hf_name(path): path for path in shapes}
    state = {k: v for k, v in state.items() if k not in _SKIPPED_BUFFERS}
    for names, what in ((sorted(set(expected) - set(state)), "missing tensor"),
                        (sorted(set(state) - set(expected)), "unexpected tensor")):
        if names:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            raise UserError(f"{source}: {what} {names[0]}{more}")
    flat = {}
    for name, path in expected.items():
        value = state[name]
        want = _to_hf(path, np.empty(shapes[path].shape, np.float32)).shape
        if value.shape != want:
            raise UserError(f"{source}: tensor {name} has shape {tuple(value.shape)}, the config needs {want}")
        flat[path] = jnp.asarray(_from_hf(path, np.asarray(value, np.float32)))
    return traverse_util.unflatten_dict(flat)


def _require(path: str) -> str:
    if not os.path.isfile(path):
        raise UserError(f"{path} not found (a CLIP folder needs {CONFIG_FILE}, {WEIGHTS_FILE}, {TOKENIZER_FILE})")
    return path


def load_config(model_dir: str) -> ClipConfig:
    """The ClipConfig of an HF CLIP folder's config.json."""
    path = _require(os.path.join(model_dir, CONFIG_FILE))
    try:
        with open(path) as f:
            return ClipConfig.from_hf(json.load(f))
    except (OSError, ValueError, TypeError, AttributeError) as e:  # ConfigError is a ValueError
        raise UserError(f"{path}: {e}") from None


def load_tokenizer(model_dir: str, cfg: ClipConfig) -> ClipTokenizer:
    """The folder's tokenizer.json, producing max_position_embeddings ids per text."""
    path = _require(os.path.join(model_dir, TOKENIZER_FILE))
    try:
        tokenizer = tokenizers.Tokenizer.from_file(path)
    except Exception as e:  # noqa: BLE001 - the Rust side raises plain Exceptions
        raise UserError(f"{path}: not a readable tokenizers file ({e})") from None
    if tokenizer.get_vocab_size() > cfg.text.vocab_size:
        raise UserError(f"{path}: {tokenizer.get_vocab_size()} tokens, more than the model's vocab_size="
                        f"{cfg.text.vocab_size}")
    return ClipTokenizer(tokenizer, cfg.text.max_position_embeddings, _pad_id(tokenizer, cfg.text.eos_token_id))


def load_clip(model_dir: str) -> tuple[ClipModel, Params, ClipTokenizer]:
    """(model, float32 params, tokenizer) from an HF CLIP folder: config.json, model.safetensors, tokenizer.json."""
    cfg = load_config(model_dir)
    tokenizer = load_tokenizer(model_dir, cfg)
    path = _require(os.path.join(model_dir, WEIGHTS_FILE))
    try:
        state = load_file(path)
    except (OSError, SafetensorError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None
    return ClipModel(cfg), params_from_hf(cfg, state, path), tokenizer


# --- scoring --------------------------------------------------------------------------------------------------------


def preprocess_images(images: Array, image_size: int) -> Array:
    """(n, H, W, 3) floats in [0, 1] -> (n, S, S, 3) CLIP pixels: bilinear resize (stretching, no crop), normalise."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images of shape {images.shape}; expected (n, H, W, 3)")
    images = jnp.asarray(images, jnp.float32)
    if images.shape[1:3] != (image_size, image_size):
        images = jax.image.resize(images, (images.shape[0], image_size, image_size, 3), method="bilinear")
    return (images - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)


@functools.lru_cache(maxsize=8)
def _compiled(cfg: ClipConfig):
    """(encode_text, score) jitted for `cfg`, shared by every scorer of that config (one compilation)."""
    model = ClipModel(cfg)

    def encode_text(params: Params, input_ids: Array) -> Array:
        return _normalise(model.apply({"params": params}, input_ids, method=ClipModel.encode_text))

    def score(params: Params, text_embedding: Array, images: Array) -> Array:
        pixels = preprocess_images(images, cfg.vision.image_size)
        image = model.apply({"params": params}, pixels, method=ClipModel.encode_image)
        return _normalise(image) @ text_embedding

    return jax.jit(encode_text), jax.jit(score)


_UNSET = "<unset>"  # ClipScorer.model_dir must be chosen: real weights or, explicitly, the stand-in (None)


@gin.configurable
class ClipScorer:
    """Cosine similarity between images and one prompt under a CLIP model.

    `model_dir` is an HF CLIP folder; None builds a random-initialised tiny CLIP with a byte tokenizer, a stand-in
    for tests only (`is_stand_in`, `label` and a logged warning say so).
    """

    def __init__(self, model_dir: str | None = _UNSET, prompt: str = "", seed: int = 0):
        if model_dir is _UNSET:
            raise ConfigError("ClipScorer.model_dir is not set: point it at a Hugging Face CLIP folder, or set it to "
                              "None for the random-initialised stand-in (tests only)")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"ClipScorer.prompt={prompt!r}: must be a non-empty text")
        self.prompt = prompt
        self.is_stand_in = model_dir is None
        if self.is_stand_in:
            self.model = ClipModel(ClipConfig.tiny())
            self.params = init_params(self.model, jax.random.key(seed))
            self.tokenizer: ClipTokenizer | ByteTokenizer = ByteTokenizer(self.model.cfg.text.max_position_embeddings)
            self.label = STAND_IN_LABEL
            log.warning("ClipScorer: no model_dir, using a %s; its scores carry no meaning", STAND_IN_LABEL)
        else:
            self.model, self.params, self.tokenizer = load_clip(model_dir)
            self.label = f"CLIP from {model_dir}"
        self.cfg = self.model.cfg
        encode_text, self._score = _compiled(self.cfg)
        self.text_embedding = encode_text(self.params, jnp.asarray(self.tokenizer.encode([prompt])))[0]

    def score(self, images: Array) -> Array:
        """(n, H, W, 3) floats in [0, 1] -> (n,) cosine similarities with the prompt; differentiable in images."""
        return self._score(self.params, self.text_embedding, images)

    def score_with(self, params: Params, images: Array) -> Array:
        """`score` under explicit params: inside your own jit, pass `scorer.params` as an argument through this so
        the weights are not baked into the compiled program as constants."""
        return self._score(params, self.text_embedding, images)
