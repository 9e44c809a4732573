"""Hugging Face Llama checkpoints: safetensors (one file, or shards with an index) + config.json.

HF stores the Q and K rows for rotate-half RoPE, so a model is imported as `rope_style="half"` with the rows
as stored (libs/models/weights/store.py reorders them on request for `rope_style="interleaved"`). Export
writes any model back in HF's layout: an interleaved model's Q/K rows are permuted into rotate-half order.
Tensors are read one at a time (safetensors memory-maps the files); bfloat16 arrives as ml_dtypes.bfloat16.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from libs.models import llama
from libs.models.weights import layout
from libs.train.errors import UserError

NAMES = layout.NameMap(
    top={"embed": "model.embed_tokens.weight", "norm": "model.norm.weight", "head": "lm_head.weight"},
    layer_name="model.layers.{layer}.{part}.weight",
    parts={"attn_norm": "input_layernorm", "wq": "self_attn.q_proj", "wk": "self_attn.k_proj",
           "wv": "self_attn.v_proj", "wo": "self_attn.o_proj", "mlp_norm": "post_attention_layernorm",
           "w1": "mlp.gate_proj", "w3": "mlp.up_proj", "w2": "mlp.down_proj"},
)
SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
_SKIPPED = (".rotary_emb.inv_freq",)  # buffers some old checkpoints saved


def _load_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not readable JSON ({e})") from None


def config_of(folder: str) -> llama.LlamaConfig:
    """The LlamaConfig of an HF config.json (rope_scaling "llama3", tied embeddings, explicit head_dim)."""
    path = os.path.join(folder, "config.json")
    try:
        return _config(path, _load_json(path))
    except KeyError as e:
        raise UserError(f"{path}: lacks {e}") from None


def _config(path: str, c: dict[str, Any]) -> llama.LlamaConfig:
    if c.get("model_type") != "llama" and "LlamaForCausalLM" not in c.get("architectures", []):
        raise UserError(f"{path}: model_type {c.get('model_type')!r} is not supported (only 'llama')")
    if c.get("attention_bias") or c.get("mlp_bias") or c.get("hidden_act", "silu") != "silu":
        raise UserError(f"{path}: biases or activation {c.get('hidden_act')!r} are not supported (plain Llama only)")
    rope = c.get("rope_scaling") or c.get("rope_parameters") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "llama3"):
        raise UserError(f"{path}: rope scaling {kind!r} is not supported (only 'llama3')")
    dim, heads = c["hidden_size"], c["num_attention_heads"]
    head_dim = c.get("head_dim") or dim // heads
    scaling = {}
    if kind == "llama3":
        scaling = {"rope_scale_factor": float(rope["factor"]),
                   "rope_low_freq_factor": float(rope.get("low_freq_factor", 1.0)),
                   "rope_high_freq_factor": float(rope.get("high_freq_factor", 4.0)),
                   "rope_original_max_position": int(rope.get("original_max_position_embeddings", 8192))}
    return layout.make_config(
        path, vocab_size=c["vocab_size"], num_layers=c["num_hidden_layers"], model_dim=dim, num_heads=heads,
        num_kv_heads=c.get("num_key_value_heads") or heads, head_dim=0 if head_dim * heads == dim else head_dim,
        hidden_dim=c["intermediate_size"], ffn_dim_multiplier=None, norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        rope_theta=float(c.get("rope_theta", rope.get("rope_theta", 10000.0))), rope_style="half",
        use_scaled_rope=kind == "llama3", max_seq_len=int(c.get("max_position_embeddings", 2048)),
        tie_embeddings=bool(c.get("tie_word_embeddings", False)), **scaling)


def _files(folder: str) -> list[str]:
    if os.path.isfile(os.path.join(folder, INDEX)):
        weight_map = _load_json(os.path.join(folder, INDEX)).get("weight_map", {})
        files = sorted(set(weight_map.values()))
    elif os.path.isfile(os.path.join(folder, SINGLE)):
        files = [SINGLE]
    else:
        raise UserError(f"{folder}: neither {SINGLE} nor {INDEX} found")
    for name in files:
        if not os.path.isfile(os.path.join(folder, name)):
            raise UserError(f"{folder}: {name}, named in {INDEX}, is missing")
    return [os.path.join(folder, name) for name in files]


def tensors(folder: str, cfg: llama.LlamaConfig) -> layout.Tensors:
    """(our param path, array in our layout) for each tensor, one at a time."""
    for path in _files(folder):
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if name.endswith(_SKIPPED):
                    continue
                found = NAMES.role(name)
                if found is None:
                    raise layout.unknown_tensor(path, name)
                if found[0] == "head" and cfg.tie_embeddings:
                    continue  # a tied model's copy of the embedding
                yield layout.param_path(*found), layout.to_ours(found[0], f.get_tensor(name))


def read(folder: str) -> tuple[llama.LlamaConfig, layout.Tensors]:
    """The config of an HF checkpoint folder (or of the folder holding a .safetensors file) and its params."""
    if os.path.isfile(folder):
        folder = os.path.dirname(os.path.abspath(folder))
    cfg = config_of(folder)
    return cfg, tensors(folder, cfg)


def hf_config(cfg: llama.LlamaConfig, dtype: str) -> dict[str, Any]:
    """config.json for a LlamaForCausalLM with cfg's architecture."""
    scaling = None
    if cfg.use_scaled_rope:
        scaling = {"rope_type": "llama3", "factor": cfg.rope_scale_factor, "low_freq_factor": cfg.rope_low_freq_factor,
                   "high_freq_factor": cfg.rope_high_freq_factor,
                   "original_max_position_embeddings": cfg.rope_original_max_position}
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.model_dim, "intermediate_size": cfg.ffn_dim, "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
            "head_dim": cfg.dims_per_head, "hidden_act": "silu", "max_position_embeddings": cfg.max_seq_len,
            "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "rope_scaling": scaling,
            "tie_word_embeddings": cfg.tie_embeddings, "attention_bias": False, "mlp_bias": False,
            "torch_dtype": dtype}


def export(cfg: llama.LlamaConfig, params: Iterable[tuple[layout.ParamPath, Any]], out_dir: str,
           max_shard_bytes: int = 5 * 2**30) -> list[str]:
    """Writes HF safetensors (+ config.json, + an index when over `max_shard_bytes`); returns the files.

    `params` streams (our param path, array); at most one shard's tensors are held at a time.
    """
    if os.path.exists(os.path.join(out_dir, "config.json")):
        raise UserError(f"{out_dir} already holds a checkpoint (config.json); choose an empty folder")
    os.makedirs(out_dir, exist_ok=True)
    pending, size, written, weight_map, total, dtypes = {}, 0, [], {}, 0, set()

    def flush():
        nonlocal pending, size
        name = f"part-{len(written):05d}.safetensors.tmp"
        save_file(pending, os.path.join(out_dir, name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(pending, name))
        written.append(name)
        pending, size = {}, 0

    for path, value in params:
        role, layer = layout.role_of_path(path)
        array = layout.restyle(cfg, path, np.asarray(value), "half")
        array = np.ascontiguousarray(layout.from_ours(role, array))
        if pending and size + array.nbytes > max_shard_bytes:
            flush()
        pending[NAMES.name(role, layer)] = array
        size, total = size + array.nbytes, total + array.nbytes
        dtypes.add(array.dtype.name)
    flush()
    final = [SINGLE] if len(written) == 1 else [f"model-{i + 1:05d}-of-{len(written):05d}.safetensors"
                                                 for i in range(len(written))]
    for tmp, name in zip(written, final):
        os.replace(os.path.join(out_dir, tmp), os.path.join(out_dir, name))
        os.chmod(os.path.join(out_dir, name), 0o644)  # safetensors creates its files private (0600)
    if len(written) > 1:
        renamed = dict(zip(written, final))
        with open(os.path.join(out_dir, INDEX), "w") as f:
            json.dump({"metadata": {"total_size": total},
                       "weight_map": {k: renamed[v] for k, v in sorted(weight_map.items())}}, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config(cfg, "bfloat16" if dtypes == {"bfloat16"} else "float32"), f, indent=2)
    return final
