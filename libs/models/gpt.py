"""GPT language models: the llm.c GPT-2 baseline and the speedrun records' switches.

Every architectural change of the NanoGPT speedrun records is a field of
`GPTConfig`, so each record is a gin file that flips the fields it changed.
Parameters are float32 (master weights; `embed_scalar_param_dtype` can store the
embeddings and scalars in bfloat16, as record 10 did, and `scalar_param_dtype` the scalars
apart from the embeddings, as record 18 did); activations and matmuls
run in `GPTConfig.dtype` (bfloat16 by default) and the residual stream between
blocks in `GPTConfig.residual_dtype`. Axes are named logically (see
libs/train/sharding.py for the rules that map them onto a mesh). Every value
check raises `ConfigError`, which the launcher reports in one line.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gin
import jax
import jax.numpy as jnp
from flax import linen as nn

from libs.models import layers, losses, packed_attention
from libs.train.launch import ConfigError

Array = jax.Array
_constrain = layers.constrain
_FAN_IN_UNIFORM = layers.FAN_IN_UNIFORM  # PyTorch's nn.Linear default
_stored_as = layers.stored_as
_symmetric_uniform = layers.symmetric_uniform
rms_norm = layers.rms_norm  # parameter-free here (no scale), eps 1e-6
count_params = layers.count_params


@gin.configurable
@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Architecture switches; the defaults are the llm.c GPT-2 (124M) baseline."""

    vocab_size: int = 50304  # 50257 padded up to a multiple of 128
    logit_vocab_size: int = 0  # >0: logits of ids at or above this are masked out (llm.c's padding)
    num_layers: int = 12
    num_heads: int = 12
    model_dim: int = 768
    head_dim: int = 0  # 0: model_dim // num_heads
    mlp_dim: int = 0  # 0: 4 * model_dim
    max_seq_len: int = 1024
    positional: str = "learned"  # "learned" | "rotary"
    rotary_base: float = 10000.0
    # "geometric": base^(-2i/d); "half_truncated": (1/base)^(j/(d/4-1)) for the first d/4 pairs, 0 (no
    # rotation) for the other d/4.
    # Records 17+: "half_truncated" with rotary_base 1024.
    rotary_freqs: str = "geometric"
    norm: str = "layernorm"  # "layernorm" (with scale and bias) | "rmsnorm" (no parameters)
    use_bias: bool = True  # biases on every linear layer, as in GPT-2
    activation: str = "gelu"  # "gelu" (tanh approximation, llm.c) | "gelu_exact" (erf) | "relu2"
    qk_norm: bool = False  # RMS-normalise queries and keys per head
    zero_init_proj: bool = False  # attention and MLP output projections start at zero
    tie_embeddings: bool = True  # the head reuses the token embedding
    zero_init_head: bool = False  # an untied head starts at zero
    embed_norm: bool = False  # normalise the token embedding before the first block
    logit_softcap: float = 0.0  # >0: logits = cap * tanh(logits / cap)
    head_fp8: bool = False  # the head's training matmuls in FP8 (records 19+; losses.Fp8Head); evaluation in bf16
    head_fp8_scales: tuple[float, float, float] = (2.0, 32.0, 2.0**29)  # x, head weight, logits' gradient
    embed_skip: bool = False  # each block mixes in the first embedding: l0 * x + l1 * x0
    value_residual: bool = False  # each layer's values mix with the first layer's: (1 - l) v + l v1
    unet_skips: bool = False  # decoder half adds weighted encoder outputs, last-in first-out
    value_embeddings: int = 0  # n tables of token embeddings added to some layers' values (ve_layout)
    # The layers that read table j of n (L layers): "ends": j and L-n+j; "mirror": j and L-1-j;
    # "per_layer": n = L tables, layer j reads table j.
    # Record 14: "per_layer"; records 15-16: "mirror"; records 17+: "ends".
    ve_layout: str = "ends"
    ve_init_std: float = 0.0  # std of the tables' normal init (0: init_std); 1.0 is nn.Embedding's
    # How a layer's values v take its table's ve: "sum": l0 v + l1 ve, (l0, l1) from (1, 1), in the layers
    # with a table; "convex": (1 - l) v + l ve, l from 0.5, in the layers with a table; "free": (l0, l1)
    # from (0.5, 0.5) in every attention layer, l0 v + l1 ve with a table and l0 v without one.
    # Record 14: "convex"; records 15+: "free".
    ve_mix: str = "sum"
    attentionless_layers: tuple[int, ...] = ()  # blocks without the attention branch
    attn_branch_scale: float = 1.0  # the attention branch is scaled by this (records 2-4: 1/sqrt(24))
    attn_scale: float = 0.0  # the softmax scale of q.k; 0: 1/sqrt(head dim)
    init_scheme: str = "gpt2"  # "gpt2": N(0, init_std), residual projections / sqrt(2 layers)
    # "torch": PyTorch defaults, U(+-1/sqrt(fan_in)) linears, N(0, 1) untied embedding
    init_std: float = 0.02
    # With "torch": the q, k, v (or qkv) and MLP fc kernels are U(+-scale/sqrt(fan_in)).
    # Records 19+: sqrt(3)/2.
    linear_init_scale: float = 1.0
    fused_qkv: bool = False  # one (model_dim, 3 * heads * head_dim) QKV kernel, split after the matmul
    dtype: str = "bfloat16"  # activations and matmuls
    # The residual stream between blocks (the embedding output, each block's output, the skips):
    # "float32": kept in float32 while the blocks compute in `dtype` (PyTorch autocast over float32
    # weights, records 2-9); "bfloat16": kept in the low-precision compute `dtype` (llm.c, record 10+).
    # A float32 `dtype` always gives a float32 stream.
    residual_dtype: str = "bfloat16"
    # Storage of the embedding tables (token, position, value) and of the non-linear-layer parameters
    # (learnable scalars, LayerNorm scale/bias); their Adam moments follow. "bfloat16" is record 10's
    # model.bfloat16() with the linear layers (kernels, biases, untied head) kept float32.
    embed_scalar_param_dtype: str = "float32"
    # Storage of the scalars and LayerNorm parameters alone ("": as embed_scalar_param_dtype).
    # Records 18+: "float32" while the embeddings stay "bfloat16".
    scalar_param_dtype: str = ""
    attention_impl: str = "auto"  # "auto" (cuDNN on GPU) | "xla" | "cudnn"
    # Packed documents and sliding windows (records 12+; libs/models/packed_attention.py). Either switch
    # replaces the plain causal attention above with the packed one:
    doc_eot_id: int = -1  # >= 0: attention stays inside documents, each opened by this token (50256)
    max_window_blocks: int = 0  # > 0: a sliding window of at most this many blocks (the schedule's value is
    # clipped to it; see window_schedule in libs/train/optim.py)
    window_block_size: int = 1  # tokens per window block: 1 (token windows, records 12-15) or 128 (16+)
    short_window_layers: tuple[int, ...] = ()  # layers whose window is max(1, window // 2) blocks
    # c > 0: token windows also keep only the keys fewer than ceil(window / c) blocks of c tokens back.
    # Record 15: 128.
    window_block_clamp: int = 0
    packed_attention_impl: str = "auto"  # "auto" | "reference" | "banded" | "banded_cudnn"
    attention_chunk: int = 0  # queries per band of the banded kernels (0: chosen from the window)
    remat: bool = False  # rematerialise each block in the backward pass
    loss_chunk_tokens: int = 8192  # the head's logits are formed about this many tokens at a time (0: all)

    def __post_init__(self):
        """Every bad value is a `ConfigError` naming its field, before any array is made."""
        choices = {
            "positional": ("learned", "rotary"),
            "norm": ("layernorm", "rmsnorm"),
            "activation": ("gelu", "gelu_exact", "relu2"),
            "init_scheme": ("gpt2", "torch"),
            "attention_impl": ("auto", "xla", "cudnn"),
            "packed_attention_impl": packed_attention.IMPLS,
            "dtype": ("bfloat16", "float32", "float16"),
            "residual_dtype": ("float32", "bfloat16"),
            "embed_scalar_param_dtype": ("float32", "bfloat16"),
            "scalar_param_dtype": ("", "float32", "bfloat16"),
            "rotary_freqs": ("geometric", "half_truncated"),
            "ve_layout": ("ends", "mirror", "per_layer"),
            "ve_mix": ("sum", "convex", "free"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"GPTConfig.{name}={getattr(self, name)!r}: expected one of {allowed}")
        for name in ("vocab_size", "num_layers", "num_heads", "model_dim", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"GPTConfig.{name}={getattr(self, name)!r}: expected a positive integer")
        for name in ("logit_vocab_size", "head_dim", "mlp_dim", "value_embeddings", "loss_chunk_tokens",
                     "logit_softcap", "init_std", "max_window_blocks", "attention_chunk", "ve_init_std",
                     "attn_scale", "window_block_clamp"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"GPTConfig.{name}={getattr(self, name)!r}: expected 0 or more")
        if not self.rotary_base > 0:
            raise ConfigError(f"GPTConfig.rotary_base={self.rotary_base!r}: expected a positive number")
        if self.logit_vocab_size > self.vocab_size:
            raise ConfigError(
                f"GPTConfig.logit_vocab_size={self.logit_vocab_size}: exceeds vocab_size {self.vocab_size}"
            )
        if self.model_dim % self.num_heads and not self.head_dim:
            raise ConfigError(
                f"GPTConfig.num_heads={self.num_heads}: model_dim {self.model_dim} is not divisible by it "
                "(or set GPTConfig.head_dim)"
            )
        if self.positional == "rotary" and self.dims_per_head % 2:
            raise ConfigError(
                f"GPTConfig.positional='rotary': needs an even head dimension, got {self.dims_per_head}"
            )
        if self.ve_layout == "per_layer" and self.value_embeddings not in (0, self.num_layers):
            raise ConfigError(f"GPTConfig.value_embeddings={self.value_embeddings}: ve_layout='per_layer' needs "
                              f"one table per layer, {self.num_layers} (or 0)")
        if self.ve_layout != "per_layer" and 2 * self.value_embeddings > self.num_layers:
            raise ConfigError(
                f"GPTConfig.value_embeddings={self.value_embeddings}: at most num_layers / 2 = "
                f"{self.num_layers // 2} tables with ve_layout={self.ve_layout!r}"
            )
        if self.rotary_freqs != "geometric" and (self.positional != "rotary" or self.dims_per_head % 4):
            raise ConfigError(f"GPTConfig.rotary_freqs={self.rotary_freqs!r}: needs positional='rotary' and a head "
                              f"dimension divisible by 4, got {self.positional!r} and {self.dims_per_head}")
        if not self.linear_init_scale > 0:
            raise ConfigError(f"GPTConfig.linear_init_scale={self.linear_init_scale!r}: expected a positive number")
        if self.linear_init_scale != 1.0 and self.init_scheme != "torch":
            raise ConfigError(f"GPTConfig.linear_init_scale={self.linear_init_scale!r}: only init_scheme='torch' "
                              f"uses it, got {self.init_scheme!r}")
        if self.head_fp8:
            self._check_fp8_scales()
        for name in ("attentionless_layers", "short_window_layers"):
            self._check_layers(name)
        if self.short_window_layers and self.max_window_blocks == 0:
            raise ConfigError(f"GPTConfig.short_window_layers={self.short_window_layers}: needs a sliding window "
                              "(max_window_blocks > 0)")
        if self.window_block_clamp and (self.window_block_size != 1 or self.max_window_blocks == 0):
            raise ConfigError(f"GPTConfig.window_block_clamp={self.window_block_clamp}: needs token windows "
                              f"(window_block_size=1, max_window_blocks > 0), got {self.window_block_size} and "
                              f"{self.max_window_blocks}")
        if self.window_block_size < 1:
            raise ConfigError(f"GPTConfig.window_block_size={self.window_block_size}: expected a positive integer")
        if self.unet_skips and self.num_layers < 2:
            raise ConfigError(f"GPTConfig.unet_skips=True: needs num_layers >= 2, got {self.num_layers}")

    def _check_fp8_scales(self):
        scales = self.head_fp8_scales
        if not (isinstance(scales, (tuple, list)) and len(scales) == 3 and all(
                isinstance(v, (int, float)) and v > 0 for v in scales)):
            raise ConfigError(f"GPTConfig.head_fp8_scales={scales!r}: expected three positive numbers (x, weight, "
                              "gradient)")
        object.__setattr__(self, "head_fp8_scales", tuple(float(v) for v in scales))

    def _check_layers(self, name: str) -> None:
        """A tuple of distinct layer indices (a gin list becomes a tuple, so the config stays hashable)."""
        value = getattr(self, name)
        ok = isinstance(value, (tuple, list)) and all(type(i) is int and 0 <= i < self.num_layers for i in value)
        if not ok or len(set(value)) != len(value):
            raise ConfigError(f"GPTConfig.{name}={value!r}: expected distinct layer indices in "
                              f"[0, {self.num_layers})")
        object.__setattr__(self, name, tuple(value))

    @property
    def packed(self) -> packed_attention.PackedAttention | None:
        """The packed-document attention when a document mask or a window is on, else None."""
        if self.doc_eot_id < 0 and self.max_window_blocks == 0:
            return None
        return packed_attention.PackedAttention(self.window_block_size, self.max_window_blocks,
                                                self.attention_chunk, self.packed_attention_impl,
                                                self.window_block_clamp)

    @property
    def ve_table_of_layer(self) -> tuple[int | None, ...]:
        """The value-embedding table each layer reads (None: none), by `ve_layout`."""
        n, last = self.value_embeddings, self.num_layers - 1
        tables: list[int | None] = [None] * self.num_layers
        for j in range(n):
            tables[j] = j
            if self.ve_layout == "ends":
                tables[last + 1 - n + j] = j
            elif self.ve_layout == "mirror":
                tables[last - j] = j
        return tuple(tables)

    @property
    def dims_per_head(self) -> int:
        return self.head_dim or self.model_dim // self.num_heads

    @property
    def hidden_dim(self) -> int:
        return self.mlp_dim or 4 * self.model_dim

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def residual_stream_dtype(self):
        """float32 when `residual_dtype` or `dtype` is float32, else the compute dtype."""
        if jnp.float32 in (jnp.dtype(self.residual_dtype), self.compute_dtype):
            return jnp.dtype(jnp.float32)
        return self.compute_dtype

    @property
    def embed_param_dtype(self):
        """Storage dtype of the embedding tables (token, position, value)."""
        return jnp.dtype(self.embed_scalar_param_dtype)

    @property
    def scalar_storage_dtype(self):
        """Storage dtype of the learnable scalars and the LayerNorm parameters."""
        return jnp.dtype(self.scalar_param_dtype or self.embed_scalar_param_dtype)


def _dense(cfg: GPTConfig, features: int, axes: tuple[str, str], name: str, zero: bool = False, residual=False,
           init_scale: float = 1.0):
    if zero:
        init = nn.initializers.zeros
    elif cfg.init_scheme == "torch":  # U(+-init_scale / sqrt(fan_in))
        init = _FAN_IN_UNIFORM if init_scale == 1.0 else nn.initializers.variance_scaling(
            init_scale**2 / 3.0, "fan_in", "uniform")
    else:
        init = nn.initializers.normal(cfg.init_std / ((2 * cfg.num_layers) ** 0.5 if residual else 1.0))
    return nn.Dense(
        features,
        use_bias=cfg.use_bias,
        dtype=cfg.compute_dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(init, axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)),
        name=name,
    )


class Norm(nn.Module):
    cfg: GPTConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.cfg.norm == "rmsnorm":  # The block's input comes out in the compute dtype.
            return rms_norm(x).astype(self.cfg.compute_dtype)
        return nn.LayerNorm(
            epsilon=1e-5,
            dtype=self.cfg.compute_dtype,
            param_dtype=self.cfg.scalar_storage_dtype,
            scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        )(x)


def rotary(x: Array, base: float, freqs: str = "geometric") -> Array:
    """The speedrun's rotary embedding: halves paired, turned clockwise (see layers.rotary);
    `freqs` as GPTConfig.rotary_freqs."""
    dim = x.shape[-1]
    if freqs == "half_truncated":
        inv_freq = layers.rope_inv_freq_half_truncated(dim, base)
    else:
        inv_freq = layers.rope_inv_freq(dim, base)
    return layers.rotary(x, inv_freq, style="half", clockwise=True)


def _scalar(module: nn.Module, name: str, value, shape=()) -> Array:
    """A learnable scalar (or small vector) initialised to `value`, stored in `scalar_storage_dtype`."""
    init = lambda key, shp, dtype=jnp.float32: jnp.broadcast_to(jnp.asarray(value, dtype), shp)
    dtype = module.cfg.scalar_storage_dtype
    return module.param(name, nn.with_logical_partitioning(init, (None,) * len(shape)), shape, dtype)


def _mix_value_embedding(module: nn.Module, v: Array, ve: Array | None) -> Array:
    """A layer's values v mixed with its value embedding ve (None: the layer has no table), by `ve_mix`."""
    mix = module.cfg.ve_mix
    ve = None if ve is None else ve.reshape(v.shape)
    if mix == "free":
        lams = _scalar(module, "ve_lambdas", (0.5, 0.5), (2,)).astype(v.dtype)
        return lams[0] * v if ve is None else lams[0] * v + lams[1] * ve
    if ve is None:
        return v
    if mix == "convex":
        lam = _scalar(module, "ve_lambda", 0.5).astype(v.dtype)
        return (1 - lam) * v + lam * ve
    lams = _scalar(module, "ve_lambdas", (1.0, 1.0), (2,)).astype(v.dtype)
    return lams[0] * v + lams[1] * ve


class Attention(nn.Module):
    cfg: GPTConfig

    @nn.compact
    def __call__(self, x: Array, v_first: Array | None, ve: Array | None, segments: Array | None = None,
                 window_blocks: Array | None = None) -> tuple[Array, Array]:
        cfg = self.cfg
        batch, length, _ = x.shape
        heads, dim = cfg.num_heads, cfg.dims_per_head
        shape, scale = (batch, length, heads, dim), cfg.linear_init_scale
        if cfg.fused_qkv:  # One matrix to the optimizer (records 1-3's c_attn); columns are [Q | K | V].
            qkv = _dense(cfg, 3 * heads * dim, ("embed", "heads"), "qkv", init_scale=scale)(x)
            q, k, v = (t.reshape(shape) for t in jnp.split(qkv, 3, axis=-1))
        else:
            q = _dense(cfg, heads * dim, ("embed", "heads"), "query", init_scale=scale)(x).reshape(shape)
            k = _dense(cfg, heads * dim, ("embed", "heads"), "key", init_scale=scale)(x).reshape(shape)
            v = _dense(cfg, heads * dim, ("embed", "heads"), "value", init_scale=scale)(x).reshape(shape)
        if v_first is None:
            v_first = v
        elif cfg.value_residual:
            lam = _scalar(self, "value_lambda", 0.5).astype(v.dtype)
            v = (1 - lam) * v + lam * v_first
        v = _mix_value_embedding(self, v, ve)
        if cfg.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        if cfg.positional == "rotary":
            q, k = rotary(q, cfg.rotary_base, cfg.rotary_freqs), rotary(k, cfg.rotary_base, cfg.rotary_freqs)
        q, k, v = (_constrain(t, ("act_batch", "act_len", "act_heads", None)) for t in (q, k, v))
        packed, attn_scale = cfg.packed, (cfg.attn_scale if cfg.attn_scale > 0 else None)
        if packed is None:
            out = layers.attention(q, k, v, cfg.attention_impl, scale=attn_scale)
        else:
            out = packed(q, k, v, segments, window_blocks, attn_scale)
        out = out.reshape(batch, length, heads * dim)
        proj = _dense(cfg, cfg.model_dim, ("heads", "embed"), "out", cfg.zero_init_proj, residual=True)
        return proj(out), v_first


def _embed_init(cfg: GPTConfig):
    if cfg.init_scheme == "gpt2":
        return nn.initializers.normal(cfg.init_std)
    # Tied: PyTorch's head Linear init overwrote the embedding; untied: nn.Embedding's N(0, 1).
    return _symmetric_uniform(cfg.model_dim**-0.5) if cfg.tie_embeddings else nn.initializers.normal(1.0)


class MLP(nn.Module):
    cfg: GPTConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        h = _dense(cfg, cfg.hidden_dim, ("embed", "mlp"), "fc", init_scale=cfg.linear_init_scale)(x)
        h = _constrain(h, ("act_batch", "act_len", "act_mlp"))
        if cfg.activation == "relu2":
            h = jnp.square(jax.nn.relu(h))
        else:
            h = jax.nn.gelu(h, approximate=cfg.activation == "gelu")
        return _dense(cfg, cfg.model_dim, ("mlp", "embed"), "proj", cfg.zero_init_proj, residual=True)(h)


class Block(nn.Module):
    cfg: GPTConfig
    attention: bool = True  # False: no attention branch (GPTConfig.attentionless_layers)

    @nn.compact
    def __call__(self, x, x0, v_first, ve, segments=None, window_blocks=None):
        # x and x0 are in the residual stream's dtype; the branches compute in the compute dtype.
        if self.cfg.embed_skip:
            lams = _scalar(self, "skip_lambdas", (1.0, 0.0), (2,)).astype(x.dtype)
            x = lams[0] * x + lams[1] * x0
        if self.attention:
            attn, v_first = Attention(self.cfg, name="attn")(Norm(self.cfg)(x), v_first, ve, segments, window_blocks)
            attn = attn * self.cfg.attn_branch_scale if self.cfg.attn_branch_scale != 1.0 else attn
            x = x + attn.astype(x.dtype)
        # The MLP's norm keeps its name (its LayerNorm parameters) whether or not the attention branch exists.
        x = x + MLP(self.cfg, name="mlp")(Norm(self.cfg, name=None if self.attention else "Norm_1")(x)).astype(x.dtype)
        return _constrain(x, ("act_batch", "act_len", "act_embed")), v_first


class GPT(nn.Module):
    """Decoder-only transformer. `__call__(tokens, targets)` returns the mean loss
    (`train=False`: forward only, for evaluation); without targets it returns
    float32 logits. `window_blocks` (a traced scalar) sets the sliding window of packed attention
    (None: `max_window_blocks`)."""

    cfg: GPTConfig

    @nn.compact
    def __call__(self, tokens: Array, targets: Array | None = None, train: bool = True,
                 window_blocks: Array | None = None) -> Array:
        cfg = self.cfg
        dtype, stream, small = cfg.compute_dtype, cfg.residual_stream_dtype, cfg.embed_param_dtype
        embed = nn.Embed(
            cfg.vocab_size,
            cfg.model_dim,
            dtype=stream,
            param_dtype=small,
            embedding_init=nn.with_logical_partitioning(_stored_as(_embed_init(cfg), small), ("vocab", "embed")),
            name="embed",
        )
        x = embed(tokens)
        if cfg.positional == "learned":
            pos = self.param(
                "pos_embed",
                nn.with_logical_partitioning(_stored_as(nn.initializers.normal(cfg.init_std), small), (None, "embed")),
                (cfg.max_seq_len, cfg.model_dim),
                small,
            )
            x = x + pos[None, : tokens.shape[1]].astype(stream)
        if cfg.embed_norm:
            x = rms_norm(x)
        x = _constrain(x, ("act_batch", "act_len", "act_embed"))
        x0 = x
        ves = self._value_embeddings(tokens)
        segments = packed_attention.segment_ids(tokens, cfg.doc_eot_id) if cfg.packed else None
        windows = _layer_windows(cfg, window_blocks)

        block_cls = nn.remat(Block) if cfg.remat else Block
        blocks = [block_cls(cfg, attention=i not in cfg.attentionless_layers, name=f"block_{i}")
                  for i in range(cfg.num_layers)]
        v_first = None
        if cfg.unet_skips:
            encoder = cfg.num_layers // 2
            skip_weights = _scalar(self, "skip_weights", 1.0, (cfg.num_layers - encoder,))
            skips = []
            for i, block in enumerate(blocks):
                if i >= encoder:
                    x = x + skip_weights[i - encoder].astype(x.dtype) * skips.pop()
                x, v_first = block(x, x0, v_first, ves[i], segments, windows[i])
                if i < encoder:
                    skips.append(x)
        else:
            for i, block in enumerate(blocks):
                x, v_first = block(x, x0, v_first, ves[i], segments, windows[i])
        x = Norm(cfg, name="final_norm")(x)  # Back in the compute dtype for the head's matmul.

        if cfg.tie_embeddings:
            head = embed.embedding
        else:
            if cfg.zero_init_head:
                init = nn.initializers.zeros
            else:
                init = _FAN_IN_UNIFORM if cfg.init_scheme == "torch" else nn.initializers.normal(cfg.init_std)
            head = self.param(
                "head", nn.with_logical_partitioning(init, ("embed", "vocab")), (cfg.model_dim, cfg.vocab_size), jnp.float32
            ).T
        head = head.astype(dtype)  # (vocab, embed)
        loss_args = (cfg.logit_softcap, cfg.loss_chunk_tokens, cfg.logit_vocab_size)
        if targets is None:
            return losses.logits_of(x, head, cfg.logit_softcap, cfg.logit_vocab_size)[0]
        if train:  # Gradients come from the fused pass: the logits are neither kept nor recomputed.
            fp8 = losses.Fp8Head(*cfg.head_fp8_scales) if cfg.head_fp8 else None
            return losses.fused_cross_entropy(x, head, targets, *loss_args, fp8)
        return losses.cross_entropy(x, head, targets, *loss_args)

    def _value_embeddings(self, tokens: Array) -> list[Array | None]:
        """Each layer's value embedding of `tokens` (None: the layer has no table)."""
        cfg = self.cfg
        small = cfg.embed_param_dtype
        init = _stored_as(nn.initializers.normal(cfg.ve_init_std or cfg.init_std), small)
        ves = [
            nn.Embed(cfg.vocab_size, cfg.num_heads * cfg.dims_per_head, dtype=cfg.compute_dtype, param_dtype=small,
                     embedding_init=nn.with_logical_partitioning(init, ("vocab", "embed")),
                     name=f"value_embed_{j}")(tokens)
            for j in range(cfg.value_embeddings)
        ]
        return [None if j is None else ves[j] for j in cfg.ve_table_of_layer]


def _layer_windows(cfg: GPTConfig, window_blocks: Array | None) -> list[Array | None]:
    """Each layer's window in blocks: `window_blocks`, or max(1, window // 2) in the short-window layers."""
    if not cfg.short_window_layers:
        return [window_blocks] * cfg.num_layers
    top = cfg.max_window_blocks
    long = jnp.clip(jnp.asarray(top if window_blocks is None else window_blocks, jnp.int32), 1, top)
    short = jnp.maximum(long // 2, 1)
    return [short if i in cfg.short_window_layers else long for i in range(cfg.num_layers)]


def flops_per_token(cfg: GPTConfig, params: Any, seq_len: int) -> float:
    """Training FLOPs per token: 6 * (matmul parameters) + 12 * layers * width * context.

    The nanoGPT/PaLM convention. Embedding lookups do no matmul, so the position
    table, value-embedding tables and (when untied) the input embedding are left
    out; a tied embedding counts once, as the head. A sliding window caps each attention layer's context at
    its largest width (short-window layers: half of it); attentionless layers have none.
    """
    lookup_only = ("pos_embed", "value_embed_") + (() if cfg.tie_embeddings else ("embed",))

    def context(layer: int) -> int:  # Documents may cut it shorter still: an upper bound.
        if not cfg.max_window_blocks:
            return seq_len
        blocks = cfg.max_window_blocks
        if layer in cfg.short_window_layers:
            blocks = max(1, blocks // 2)
        return min(seq_len, blocks * cfg.window_block_size)

    contexts = sum(context(i) for i in range(cfg.num_layers) if i not in cfg.attentionless_layers)
    width = cfg.num_heads * cfg.dims_per_head
    return layers.matmul_flops_per_token(params, lookup_only, 0, width, seq_len) + 12.0 * width * contexts
