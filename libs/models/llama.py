"""The Llama 3 model family (Llama 3 / 3.1 / 3.2, and Llama-architecture models such as SmolLM2).

A pre-norm decoder: token embedding -> `num_layers` x [RMSNorm -> grouped-query
attention with RoPE -> residual; RMSNorm -> SwiGLU MLP w2(silu(w1 x) * w3 x) ->
residual] -> RMSNorm -> head (tied to the embedding or not). No biases. Parameter
names follow Meta's reference code (wq, wk, wv, wo, w1, w2, w3) so that converted
weights map one to one.

`Llama` has the GPT's call interface (libs/models/gpt.py): `__call__(tokens,
targets=None, train=True)` returns the mean loss (the fused chunked loss when
training) or, without targets, float32 logits; so libs/train/trainer.py trains
either family (`make_model.family`, libs/models/registry.py).

Positions and the document mask: with `doc_mask_token` set, a token attends only
to tokens of its own document (see `layers.document_mask`: the end-of-text token
starts a document). Positions do NOT restart at a document boundary (as in Meta's
pre-training code): RoPE makes attention scores depend only on the distance between
query and key, and a masked token sees only its own document, so a document packed
after others gets the same outputs as that document alone, up to float rounding.

Every bad value raises `ConfigError` naming its field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gin
import jax
import jax.numpy as jnp
from flax import linen as nn

from libs.models import layers, losses
from libs.train.launch import ConfigError

Array = jax.Array
_constrain = layers.constrain


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Architecture of one Llama model; the defaults are Llama 3.1 8B (configs/llama/ has the rest)."""

    vocab_size: int = 128256
    logit_vocab_size: int = 0  # >0: logits of ids at or above this are masked out (a padded table)
    num_layers: int = 32
    model_dim: int = 4096
    num_heads: int = 32
    num_kv_heads: int = 8  # grouped-query attention: num_heads / num_kv_heads query heads share a K/V head
    head_dim: int = 0  # 0: model_dim // num_heads
    # The SwiGLU width, as Meta computes it: int(2 * 4 * model_dim / 3), times ffn_dim_multiplier
    # (None: 1), rounded up to a multiple of multiple_of; hidden_dim > 0 sets it directly.
    ffn_dim_multiplier: float | None = 1.3
    multiple_of: int = 1024
    hidden_dim: int = 0
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_style: str = "half"  # "half": HF rotate-half pairs (i, i + d/2) | "interleaved": Meta / GGUF (2i, 2i + 1)
    # Llama 3.1's RoPE scaling (Meta's apply_scaling; HF rope_type "llama3").
    use_scaled_rope: bool = True
    rope_scale_factor: float = 8.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_position: int = 8192
    max_seq_len: int = 131072  # the longest context trained or evaluated (there is no position table)
    tie_embeddings: bool = False  # the head reuses the token embedding (3.2 1B / 3B, SmolLM2)
    dtype: str = "bfloat16"  # activations, matmuls and the residual stream
    param_dtype: str = "float32"  # storage of every parameter (master weights)
    init_std: float = 0.02  # N(0, init_std) everywhere; wo and w2 also divided by sqrt(2 * num_layers)
    doc_mask_token: int = -1  # -1: off; else the end-of-text id that starts each packed document
    attention_impl: str = "auto"  # "auto" (cuDNN on GPU without a document mask) | "xla" | "cudnn"
    remat: bool = False  # rematerialise each block in the backward pass
    loss_chunk_tokens: int = 8192  # the head's logits are formed about this many tokens at a time (0: all)

    def __post_init__(self):
        """Every bad value is a `ConfigError` naming its field, before any array is made."""
        err = lambda field, msg: ConfigError(f"LlamaConfig.{field}={getattr(self, field)!r}: {msg}")
        choices = {
            "rope_style": layers.ROPE_STYLES,
            "attention_impl": layers.ATTENTION_IMPLS,
            "dtype": ("bfloat16", "float32", "float16"),
            "param_dtype": ("float32", "bfloat16"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise err(name, f"expected one of {allowed}")
        for name in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "multiple_of",
                     "max_seq_len", "rope_original_max_position"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise err(name, "expected a positive integer")
        for name in ("logit_vocab_size", "head_dim", "hidden_dim", "loss_chunk_tokens", "init_std"):
            if not getattr(self, name) >= 0:
                raise err(name, "expected 0 or more")
        for name in ("norm_eps", "rope_theta", "rope_scale_factor", "rope_low_freq_factor"):
            if not getattr(self, name) > 0:
                raise err(name, "expected a positive number")
        if self.ffn_dim_multiplier is not None and not self.ffn_dim_multiplier > 0:
            raise err("ffn_dim_multiplier", "expected a positive number or None")
        if not self.rope_high_freq_factor > self.rope_low_freq_factor:
            raise err("rope_high_freq_factor", f"must exceed rope_low_freq_factor {self.rope_low_freq_factor}")
        if self.num_heads % self.num_kv_heads:
            raise err("num_kv_heads", f"must divide num_heads {self.num_heads}")
        if self.model_dim % self.num_heads and not self.head_dim:
            raise err("num_heads", f"model_dim {self.model_dim} is not divisible by it (or set LlamaConfig.head_dim)")
        if self.dims_per_head % 2:
            raise err("head_dim", f"RoPE needs an even head dimension, got {self.dims_per_head}")
        if self.logit_vocab_size > self.vocab_size:
            raise err("logit_vocab_size", f"exceeds vocab_size {self.vocab_size}")
        if not -1 <= self.doc_mask_token < self.vocab_size:
            raise err("doc_mask_token", f"expected -1 (off) or a token id below vocab_size {self.vocab_size}")

    @property
    def dims_per_head(self) -> int:
        return self.head_dim or self.model_dim // self.num_heads

    @property
    def ffn_dim(self) -> int:
        """The SwiGLU hidden width (Meta's FeedForward rule unless hidden_dim is set)."""
        if self.hidden_dim:
            return self.hidden_dim
        hidden = int(2 * (4 * self.model_dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def params_dtype(self):
        return jnp.dtype(self.param_dtype)

    @property
    def rope_scaling(self) -> layers.RopeScaling | None:
        if not self.use_scaled_rope:
            return None
        return layers.RopeScaling(self.rope_scale_factor, self.rope_low_freq_factor, self.rope_high_freq_factor,
                                  self.rope_original_max_position)


def _dense(cfg: LlamaConfig, features: int, axes: tuple[str, str], name: str, residual: bool = False):
    std = cfg.init_std / ((2 * cfg.num_layers) ** 0.5 if residual else 1.0)
    return nn.Dense(
        features,
        use_bias=False,
        dtype=cfg.compute_dtype,
        param_dtype=cfg.params_dtype,
        kernel_init=nn.with_logical_partitioning(layers.stored_as(nn.initializers.normal(std), cfg.params_dtype),
                                                 axes),
        name=name,
    )


def _norm(cfg: LlamaConfig, name: str) -> layers.RMSNorm:
    return layers.RMSNorm(cfg.norm_eps, cfg.compute_dtype, cfg.params_dtype, name=name)


class Attention(nn.Module):
    """Grouped-query causal self-attention with RoPE (K/V heads shared by groups of query heads)."""

    cfg: LlamaConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, cache: tuple[Array, Array] | None = None,
                 call: layers.CachedCall | None = None) -> tuple[Array, tuple[Array, Array] | None]:
        cfg = self.cfg
        batch, length, _ = x.shape
        heads, kv_heads, dim = cfg.num_heads, cfg.num_kv_heads, cfg.dims_per_head
        q = _dense(cfg, heads * dim, ("embed", "heads"), "wq")(x).reshape(batch, length, heads, dim)
        k = _dense(cfg, kv_heads * dim, ("embed", "kv_heads"), "wk")(x).reshape(batch, length, kv_heads, dim)
        v = _dense(cfg, kv_heads * dim, ("embed", "kv_heads"), "wv")(x).reshape(batch, length, kv_heads, dim)
        inv_freq = layers.rope_inv_freq(dim, cfg.rope_theta, cfg.rope_scaling)
        positions = None if call is None else call.positions
        q = layers.rotary(q, inv_freq, cfg.rope_style, positions)
        k = layers.rotary(k, inv_freq, cfg.rope_style, positions)
        q = _constrain(q, ("act_batch", "act_len", "act_heads", None))
        k, v = (_constrain(t, ("act_batch", "act_len", "act_kv_heads", None)) for t in (k, v))
        if cache is None:
            out = layers.attention(q, k, v, cfg.attention_impl, mask)
        else:
            out, *cache = layers.cached_attention(q, k, v, *cache, call)
            cache = tuple(cache)
        out = out.reshape(batch, length, heads * dim)
        return _dense(cfg, cfg.model_dim, ("heads", "embed"), "wo", residual=True)(out), cache


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    cfg: LlamaConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        gate = _dense(cfg, cfg.ffn_dim, ("embed", "mlp"), "w1")(x)
        up = _dense(cfg, cfg.ffn_dim, ("embed", "mlp"), "w3")(x)
        h = _constrain(jax.nn.silu(gate) * up, ("act_batch", "act_len", "act_mlp"))
        return _dense(cfg, cfg.model_dim, ("mlp", "embed"), "w2", residual=True)(h)


class Block(nn.Module):
    cfg: LlamaConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, cache=None, call=None):
        h, cache = Attention(self.cfg, name="attn")(_norm(self.cfg, "attn_norm")(x), mask, cache, call)
        x = x + h
        x = x + FeedForward(self.cfg, name="mlp")(_norm(self.cfg, "mlp_norm")(x))
        return _constrain(x, ("act_batch", "act_len", "act_embed")), cache


class Llama(nn.Module):
    """Llama decoder. `__call__(tokens, targets)` returns the mean loss (`train=False`: forward only,
    for evaluation); without targets it returns float32 logits.

    Cached decoding (libs/inference/decode.py): `__call__(tokens, cache=KVCache, call=CachedCall)`
    writes the tokens' keys and values into the cache, attends over it, and returns
    (float32 logits, updated cache); `logits_at` (B,) keeps only each row's logits at that index.
    """

    cfg: LlamaConfig

    @nn.compact
    def __call__(self, tokens: Array, targets: Array | None = None, train: bool = True,
                 cache: layers.KVCache | None = None, call: layers.CachedCall | None = None,
                 logits_at: Array | None = None):
        cfg = self.cfg
        embed = nn.Embed(
            cfg.vocab_size,
            cfg.model_dim,
            dtype=cfg.compute_dtype,
            param_dtype=cfg.params_dtype,
            embedding_init=nn.with_logical_partitioning(
                layers.stored_as(nn.initializers.normal(cfg.init_std), cfg.params_dtype), ("vocab", "embed")),
            name="embed",
        )
        x = _constrain(embed(tokens), ("act_batch", "act_len", "act_embed"))
        mask = layers.document_mask(tokens, cfg.doc_mask_token) if cfg.doc_mask_token >= 0 else None
        block_cls = nn.remat(Block) if cfg.remat else Block
        new_k, new_v = [], []
        for i in range(cfg.num_layers):
            layer_cache = None if cache is None else (cache.k[i], cache.v[i])
            x, layer_cache = block_cls(cfg, name=f"block_{i}")(x, mask, layer_cache, call)
            if cache is not None:
                new_k.append(layer_cache[0])
                new_v.append(layer_cache[1])
        x = _norm(cfg, "final_norm")(x)
        if logits_at is not None:
            x = jnp.take_along_axis(x, logits_at[:, None, None], axis=1)[:, 0]
        if cfg.tie_embeddings:
            head = embed.embedding
        else:
            init = layers.stored_as(nn.initializers.normal(cfg.init_std), cfg.params_dtype)
            head = self.param("head", nn.with_logical_partitioning(init, ("embed", "vocab")),
                              (cfg.model_dim, cfg.vocab_size), cfg.params_dtype).T
        head = head.astype(cfg.compute_dtype)  # (vocab, embed)
        if targets is None:
            logits = losses.logits_of(x, head, 0.0, cfg.logit_vocab_size)[0]
            return logits if cache is None else (logits, layers.KVCache(tuple(new_k), tuple(new_v)))
        loss_args = (0.0, cfg.loss_chunk_tokens, cfg.logit_vocab_size)
        if train:
            return losses.fused_cross_entropy(x, head, targets, *loss_args)
        return losses.cross_entropy(x, head, targets, *loss_args)


count_params = layers.count_params


def flops_per_token(cfg: LlamaConfig, params: Any, seq_len: int) -> float:
    """Training FLOPs per token, gpt.flops_per_token's convention: 6 * (matmul parameters) +
    12 * layers * (query heads x head dim) * context; an untied input embedding is a lookup
    and left out, a tied one counts once, as the head. Norm scales are counted (as the GPT's)."""
    lookup_only = () if cfg.tie_embeddings else ("embed",)
    return layers.matmul_flops_per_token(params, lookup_only, cfg.num_layers, cfg.num_heads * cfg.dims_per_head,
                                         seq_len)
