"""GGUF (llama.cpp) files of the llama architecture -> LlamaConfig and our params, one tensor at a time.

Every tensor is dequantized to float32 with `gguf.quants.dequantize` (the file is memory-mapped, so only the
tensor being converted is read). GGUF keeps shapes in ggml order (reversed): a dequantized tensor is
reshaped to the reversed shape, which is PyTorch's (out, in). llama.cpp's converter stores the Q and K rows
for the interleaved rotary layout (Meta's pairs (2i, 2i + 1)), so the model is `rope_style="interleaved"`
with the rows as stored. A file without `output.weight` ties the head to the embedding.
"""

from __future__ import annotations

import os
from typing import Any

import gguf
import numpy as np

from libs.models import layers, llama
from libs.models.weights import layout
from libs.train.errors import UserError

NAMES = layout.NameMap(
    top={"embed": "token_embd.weight", "norm": "output_norm.weight", "head": "output.weight"},
    layer_name="blk.{layer}.{part}.weight",
    parts={"attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
           "mlp_norm": "ffn_norm", "w1": "ffn_gate", "w3": "ffn_up", "w2": "ffn_down"},
)
_Q = gguf.GGMLQuantizationType
SUPPORTED = frozenset({_Q.F32, _Q.F16, _Q.BF16, _Q.Q8_0, _Q.Q4_0, _Q.Q4_1, _Q.Q5_0, _Q.Q5_1,
                       _Q.Q2_K, _Q.Q3_K, _Q.Q4_K, _Q.Q5_K, _Q.Q6_K})
ROPE_FREQS = "rope_freqs.weight"  # Llama 3.1's per-frequency RoPE divisors (llama.cpp's converter)


def open_reader(path: str) -> gguf.GGUFReader:
    if not os.path.isfile(path):
        raise UserError(f"GGUF file not found: {path}")
    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # noqa: BLE001 (gguf raises ValueError, struct and numpy errors on a bad file)
        detail = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: not a readable GGUF file ({detail})") from None


def _fields(reader: gguf.GGUFReader) -> dict[str, Any]:
    """The metadata (without the tokenizer's tables); float32 values as their shortest decimal (1e-05)."""
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("tokenizer.ggml.") and name != "tokenizer.ggml.model":
            continue
        value = field.contents()
        out[name] = float(str(np.float32(value))) if field.types == [gguf.GGUFValueType.FLOAT32] else value
    return out


def dequantized(tensor) -> np.ndarray:
    """One GGUF tensor as float32 in numpy (PyTorch) order."""
    shape = tuple(int(d) for d in reversed(tensor.shape))
    return np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), np.float32).reshape(shape)


def _rope_scaling(path: str, meta: dict[str, Any], reader: gguf.GGUFReader, head_dim: int,
                  theta: float) -> dict[str, Any]:
    """use_scaled_rope and its factors: from a `rope_freqs.weight` tensor, verified against Llama 3.1's rule."""
    kind = meta.get("llama.rope.scaling.type", "none")
    if kind not in ("none", ""):
        raise UserError(f"{path}: RoPE scaling {kind!r} is not supported (only Llama 3.1's, via rope_freqs)")
    tensor = next((t for t in reader.tensors if t.name == ROPE_FREQS), None)
    if tensor is None:
        return {"use_scaled_rope": False}
    divisors = dequantized(tensor).reshape(-1)
    scaling = layers.RopeScaling(
        factor=float(meta.get("llama.rope.scaling.factor", divisors.max())),
        original_max_position=int(meta.get("llama.rope.scaling.original_context_length", 8192)))
    base = np.asarray(layers.rope_inv_freq(head_dim, theta))
    expected = base / np.asarray(layers.rope_inv_freq(head_dim, theta, scaling))
    if divisors.shape != expected.shape or not np.allclose(divisors, expected, rtol=1e-4):
        raise UserError(f"{path}: {ROPE_FREQS} does not match Llama 3.1's RoPE scaling (factor "
                        f"{scaling.factor:g}, low/high frequency factors 1/4, original context "
                        f"{scaling.original_max_position}); this RoPE variant is not supported")
    return {"use_scaled_rope": True, "rope_scale_factor": scaling.factor,
            "rope_low_freq_factor": scaling.low_freq_factor, "rope_high_freq_factor": scaling.high_freq_factor,
            "rope_original_max_position": scaling.original_max_position}


def config_of(path: str, reader: gguf.GGUFReader) -> llama.LlamaConfig:
    """The LlamaConfig of a GGUF file's metadata; every tensor's type is checked here, before any is read."""
    meta = _fields(reader)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise UserError(f"{path}: GGUF architecture {arch!r} is not supported (only 'llama')")
    for t in reader.tensors:
        if t.tensor_type not in SUPPORTED:
            raise UserError(f"{path}: tensor {t.name} has type {t.tensor_type.name}, which is not supported "
                            f"(supported: {', '.join(sorted(q.name for q in SUPPORTED))})")

    def need(key: str):
        if f"llama.{key}" not in meta:
            raise UserError(f"{path}: GGUF metadata lacks llama.{key}")
        return meta[f"llama.{key}"]

    dim, heads = int(need("embedding_length")), int(need("attention.head_count"))
    head_dim = int(meta.get("llama.attention.key_length", meta.get("llama.rope.dimension_count", dim // heads)))
    rope_dim = int(meta.get("llama.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise UserError(f"{path}: partial rotary embedding (rope.dimension_count {rope_dim} < head dim "
                        f"{head_dim}) is not supported")
    vocab = meta.get("llama.vocab_size")
    if vocab is None and "tokenizer.ggml.tokens" in reader.fields:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    if vocab is None:  # the embedding's ggml shape is (dim, vocab)
        vocab = next((int(t.shape[1]) for t in reader.tensors if t.name == NAMES.top["embed"]), 0)
    theta = float(meta.get("llama.rope.freq_base", 10000.0))
    return layout.make_config(
        path, vocab_size=int(vocab), num_layers=int(need("block_count")), model_dim=dim, num_heads=heads,
        num_kv_heads=int(meta.get("llama.attention.head_count_kv", heads)),
        head_dim=0 if head_dim * heads == dim else head_dim, hidden_dim=int(need("feed_forward_length")),
        ffn_dim_multiplier=None, norm_eps=float(need("attention.layer_norm_rms_epsilon")), rope_theta=theta,
        rope_style="interleaved", max_seq_len=int(meta.get("llama.context_length", 8192)),
        tie_embeddings=not any(t.name == NAMES.top["head"] for t in reader.tensors),
        **_rope_scaling(path, meta, reader, head_dim, theta))


def tensors(path: str, reader: gguf.GGUFReader) -> layout.Tensors:
    """(our param path, float32 array in our layout) for each tensor of the file, one at a time."""
    for t in reader.tensors:
        if t.name == ROPE_FREQS:
            continue
        found = NAMES.role(t.name)
        if found is None:
            raise layout.unknown_tensor(path, t.name)
        role, layer = found
        yield layout.param_path(role, layer), layout.to_ours(role, dequantized(t))


def read(path: str) -> tuple[llama.LlamaConfig, layout.Tensors]:
    """The config of a GGUF file and a stream of its params."""
    reader = open_reader(path)
    return config_of(path, reader), tensors(path, reader)
