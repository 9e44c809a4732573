"""GPT language models: the llm.c GPT-2 baseline and the speedrun records' switches.

Every architectural change of the NanoGPT speedrun records is a field of
`GPTConfig`, so each record is a gin file that flips the fields it changed.
Parameters are float32 (master weights; `embed_scalar_param_dtype` can store the
embeddings and scalars in bfloat16, as record 10 did); activations and matmuls
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
    norm: str = "layernorm"  # "layernorm" (with scale and bias) | "rmsnorm" (no parameters)
    use_bias: bool = True  # biases on every linear layer, as in GPT-2
    activation: str = "gelu"  # "gelu" (tanh approximation, llm.c) | "gelu_exact" (erf) | "relu2"
    qk_norm: bool = False  # RMS-normalise queries and keys per head
    zero_init_proj: bool = False  # attention and MLP output projections start at zero
    tie_embeddings: bool = True  # the head reuses the token embedding
    zero_init_head: bool = False  # an untied head starts at zero
    embed_norm: bool = False  # normalise the token embedding before the first block
    logit_softcap: float = 0.0  # >0: logits = cap * tanh(logits / cap)
    embed_skip: bool = False  # each block mixes in the first embedding: l0 * x + l1 * x0
    value_residual: bool = False  # each layer's values mix with the first layer's: (1 - l) v + l v1
    unet_skips: bool = False  # decoder half adds weighted encoder outputs, last-in first-out
    value_embeddings: int = 0  # n tables added to the values of the first n and last n layers
    attn_branch_scale: float = 1.0  # the attention branch is scaled by this (records 2-4: 1/sqrt(24))
    init_scheme: str = "gpt2"  # "gpt2": N(0, init_std), residual projections / sqrt(2 layers)
    # "torch": PyTorch defaults, U(+-1/sqrt(fan_in)) linears, N(0, 1) untied embedding
    init_std: float = 0.02
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
    attention_impl: str = "auto"  # "auto" (cuDNN on GPU) | "xla" | "cudnn"
    # Packed documents and sliding windows (records 12+; libs/models/packed_attention.py). Either switch
    # replaces the plain causal attention above with the packed one:
    doc_eot_id: int = -1  # >= 0: attention stays inside documents, each opened by this token (50256)
    max_window_blocks: int = 0  # > 0: a sliding window of at most this many blocks (the schedule's value is
    # clipped to it; see window_schedule in libs/train/trainer.py)
    window_block_size: int = 1  # tokens per window block: 1 (token windows, records 12-15) or 128 (16+)
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
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"GPTConfig.{name}={getattr(self, name)!r}: expected one of {allowed}")
        for name in ("vocab_size", "num_layers", "num_heads", "model_dim", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"GPTConfig.{name}={getattr(self, name)!r}: expected a positive integer")
        for name in ("logit_vocab_size", "head_dim", "mlp_dim", "value_embeddings", "loss_chunk_tokens",
                     "logit_softcap", "init_std", "max_window_blocks", "attention_chunk"):
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
        if 2 * self.value_embeddings > self.num_layers:
            raise ConfigError(
                f"GPTConfig.value_embeddings={self.value_embeddings}: at most num_layers / 2 = "
                f"{self.num_layers // 2} tables"
            )
        if self.window_block_size < 1:
            raise ConfigError(f"GPTConfig.window_block_size={self.window_block_size}: expected a positive integer")
        if self.unet_skips and self.num_layers < 2:
            raise ConfigError(f"GPTConfig.unet_skips=True: needs num_layers >= 2, got {self.num_layers}")

    @property
    def packed(self) -> packed_attention.PackedAttention | None:
        """The packed-document attention when a document mask or a window is on, else None."""
        if self.doc_eot_id < 0 and self.max_window_blocks == 0:
            return None
        return packed_attention.PackedAttention(self.window_block_size, self.max_window_blocks,
                                                self.attention_chunk, self.packed_attention_impl)

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
    def small_param_dtype(self):
        """Storage dtype of the embedding tables, scalars and norm parameters."""
        return jnp.dtype(self.embed_scalar_param_dtype)


def _dense(cfg: GPTConfig, features: int, axes: tuple[str, str], name: str, zero: bool = False, residual=False):
    if zero:
        init = nn.initializers.zeros
    elif cfg.init_scheme == "torch":
        init = _FAN_IN_UNIFORM
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
            param_dtype=self.cfg.small_param_dtype,
            scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        )(x)


def rotary(x: Array, base: float) -> Array:
    """The speedrun's rotary embedding: halves paired, turned clockwise (see layers.rotary)."""
    return layers.rotary(x, layers.rope_inv_freq(x.shape[-1], base), style="half", clockwise=True)


def _scalar(module: nn.Module, name: str, value, shape=()) -> Array:
    """A learnable scalar (or small vector) initialised to `value`, stored in `small_param_dtype`."""
    init = lambda key, shp, dtype=jnp.float32: jnp.broadcast_to(jnp.asarray(value, dtype), shp)
    dtype = module.cfg.small_param_dtype
    return module.param(name, nn.with_logical_partitioning(init, (None,) * len(shape)), shape, dtype)


class Attention(nn.Module):
    cfg: GPTConfig

    @nn.compact
    def __call__(self, x: Array, v_first: Array | None, ve: Array | None, segments: Array | None = None,
                 window_blocks: Array | None = None) -> tuple[Array, Array]:
        cfg = self.cfg
        batch, length, _ = x.shape
        heads, dim = cfg.num_heads, cfg.dims_per_head
        shape = (batch, length, heads, dim)
        if cfg.fused_qkv:  # One matrix to the optimizer (records 1-3's c_attn); columns are [Q | K | V].
            qkv = _dense(cfg, 3 * heads * dim, ("embed", "heads"), "qkv")(x)
            q, k, v = (t.reshape(shape) for t in jnp.split(qkv, 3, axis=-1))
        else:
            q = _dense(cfg, heads * dim, ("embed", "heads"), "query")(x).reshape(shape)
            k = _dense(cfg, heads * dim, ("embed", "heads"), "key")(x).reshape(shape)
            v = _dense(cfg, heads * dim, ("embed", "heads"), "value")(x).reshape(shape)
        if v_first is None:
            v_first = v
        elif cfg.value_residual:
            lam = _scalar(self, "value_lambda", 0.5).astype(v.dtype)
            v = (1 - lam) * v + lam * v_first
        if ve is not None:
            lams = _scalar(self, "ve_lambdas", (1.0, 1.0), (2,)).astype(v.dtype)
            v = lams[0] * v + lams[1] * ve.reshape(shape)
        if cfg.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        if cfg.positional == "rotary":
            q, k = rotary(q, cfg.rotary_base), rotary(k, cfg.rotary_base)
        q, k, v = (_constrain(t, ("act_batch", "act_len", "act_heads", None)) for t in (q, k, v))
        packed = cfg.packed
        if packed is None:
            out = layers.attention(q, k, v, cfg.attention_impl)
        else:
            out = packed(q, k, v, segments, window_blocks)
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
        h = _dense(cfg, cfg.hidden_dim, ("embed", "mlp"), "fc")(x)
        h = _constrain(h, ("act_batch", "act_len", "act_mlp"))
        if cfg.activation == "relu2":
            h = jnp.square(jax.nn.relu(h))
        else:
            h = jax.nn.gelu(h, approximate=cfg.activation == "gelu")
        return _dense(cfg, cfg.model_dim, ("mlp", "embed"), "proj", cfg.zero_init_proj, residual=True)(h)


class Block(nn.Module):
    cfg: GPTConfig

    @nn.compact
    def __call__(self, x, x0, v_first, ve, segments=None, window_blocks=None):
        # x and x0 are in the residual stream's dtype; the branches compute in the compute dtype.
        if self.cfg.embed_skip:
            lams = _scalar(self, "skip_lambdas", (1.0, 0.0), (2,)).astype(x.dtype)
            x = lams[0] * x + lams[1] * x0
        attn, v_first = Attention(self.cfg, name="attn")(Norm(self.cfg)(x), v_first, ve, segments, window_blocks)
        attn = attn * self.cfg.attn_branch_scale if self.cfg.attn_branch_scale != 1.0 else attn
        x = x + attn.astype(x.dtype)
        x = x + MLP(self.cfg, name="mlp")(Norm(self.cfg)(x)).astype(x.dtype)
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
        dtype, stream, small = cfg.compute_dtype, cfg.residual_stream_dtype, cfg.small_param_dtype
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
        ctx = (segments, window_blocks)

        block_cls = nn.remat(Block) if cfg.remat else Block
        blocks = [block_cls(cfg, name=f"block_{i}") for i in range(cfg.num_layers)]
        v_first = None
        if cfg.unet_skips:
            encoder = cfg.num_layers // 2
            skip_weights = _scalar(self, "skip_weights", 1.0, (cfg.num_layers - encoder,))
            skips = []
            for i, block in enumerate(blocks):
                if i >= encoder:
                    x = x + skip_weights[i - encoder].astype(x.dtype) * skips.pop()
                x, v_first = block(x, x0, v_first, ves[i], *ctx)
                if i < encoder:
                    skips.append(x)
        else:
            for i, block in enumerate(blocks):
                x, v_first = block(x, x0, v_first, ves[i], *ctx)
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
            return losses.fused_cross_entropy(x, head, targets, *loss_args)
        return losses.cross_entropy(x, head, targets, *loss_args)

    def _value_embeddings(self, tokens: Array) -> list[Array | None]:
        cfg = self.cfg
        out: list[Array | None] = [None] * cfg.num_layers
        for j in range(cfg.value_embeddings):
            small = cfg.small_param_dtype
            table = nn.Embed(
                cfg.vocab_size,
                cfg.num_heads * cfg.dims_per_head,
                dtype=cfg.compute_dtype,
                param_dtype=small,
                embedding_init=nn.with_logical_partitioning(
                    _stored_as(nn.initializers.normal(cfg.init_std), small), ("vocab", "embed")
                ),
                name=f"value_embed_{j}",
            )
            ve = table(tokens)
            out[j] = ve
            out[cfg.num_layers - cfg.value_embeddings + j] = ve
        return out


def flops_per_token(cfg: GPTConfig, params: Any, seq_len: int) -> float:
    """Training FLOPs per token: 6 * (matmul parameters) + 12 * layers * width * context.

    The nanoGPT/PaLM convention. Embedding lookups do no matmul, so the position
    table, value-embedding tables and (when untied) the input embedding are left
    out; a tied embedding counts once, as the head. A sliding window caps the context at its largest width.
    """
    lookup_only = ("pos_embed", "value_embed_") + (() if cfg.tie_embeddings else ("embed",))
    context = seq_len
    if cfg.max_window_blocks:  # Documents may cut it shorter still: an upper bound.
        context = min(seq_len, cfg.max_window_blocks * cfg.window_block_size)
    return layers.matmul_flops_per_token(params, lookup_only, cfg.num_layers, cfg.num_heads * cfg.dims_per_head,
                                         context)
