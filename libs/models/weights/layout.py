"""What every weight format shares: tensor roles, our param paths, the (out, in) -> (in, out)
transpose, the rotary row permutation between layouts, and config errors as `UserError`.

A role names one of Llama's tensors independently of any file format: "embed", "norm" (the final
norm), "head", and per layer "attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w1", "w2", "w3".
Each format is a `NameMap` from its tensor names to (role, layer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from libs.models import llama
from libs.train.errors import ConfigError, UserError

ParamPath = tuple[str, ...]
Tensors = Iterator[tuple[ParamPath, np.ndarray]]  # (our param path, array in our layout), one at a time

TOP_PATHS = {"embed": ("embed", "embedding"), "norm": ("final_norm", "scale"), "head": ("head",)}
BLOCK_PATHS = {
    "attn_norm": ("attn_norm", "scale"),
    "wq": ("attn", "wq", "kernel"),
    "wk": ("attn", "wk", "kernel"),
    "wv": ("attn", "wv", "kernel"),
    "wo": ("attn", "wo", "kernel"),
    "mlp_norm": ("mlp_norm", "scale"),
    "w1": ("mlp", "w1", "kernel"),
    "w2": ("mlp", "w2", "kernel"),
    "w3": ("mlp", "w3", "kernel"),
}
# Stored (out, in) in every format; ours are (in, out). The head is (vocab, dim) there, (dim, vocab) here.
TRANSPOSED = {"wq", "wk", "wv", "wo", "w1", "w2", "w3", "head"}


class NameMap:
    """A format's tensor names <-> (role, layer); `layer_name` has a `{layer}` and a `{part}` field."""

    def __init__(self, top: dict[str, str], layer_name: str, parts: dict[str, str]):
        self.top, self.layer_name, self.parts = top, layer_name, parts
        self._top_roles = {name: role for role, name in top.items()}
        self._part_roles = {part: role for role, part in parts.items()}
        self._layer_re = re.compile(re.escape(layer_name).replace(r"\{layer\}", r"(\d+)").replace(r"\{part\}", "(.+)")
                                    + "$")

    def role(self, name: str) -> tuple[str, int | None] | None:
        """(role, layer) of a tensor name (layer None for the top-level tensors); None if unknown."""
        if name in self._top_roles:
            return self._top_roles[name], None
        match = self._layer_re.match(name)
        if match and match.group(2) in self._part_roles:
            return self._part_roles[match.group(2)], int(match.group(1))
        return None

    def name(self, role: str, layer: int | None) -> str:
        if layer is None:
            return self.top[role]
        return self.layer_name.format(layer=layer, part=self.parts[role])


def param_path(role: str, layer: int | None) -> ParamPath:
    return TOP_PATHS[role] if layer is None else (f"block_{layer}",) + BLOCK_PATHS[role]


def role_of_path(path: ParamPath) -> tuple[str, int | None]:
    """The inverse of `param_path`."""
    if path[0].startswith("block_"):
        return next(role for role, p in BLOCK_PATHS.items() if p == path[1:]), int(path[0][len("block_"):])
    return next(role for role, p in TOP_PATHS.items() if p == path), None


def to_ours(role: str, array: np.ndarray) -> np.ndarray:
    """A format's (out, in) tensor as our (in, out) param (vectors and the embedding unchanged)."""
    return array.T if role in TRANSPOSED else array


from_ours = to_ours  # our param as a format's tensor: the transpose is its own inverse


def permute_rotary(kernel: np.ndarray, num_heads: int, to: str) -> np.ndarray:
    """Reorders each head's output columns of a Q or K kernel (in, heads * head_dim) between rotary layouts.

    to="half": Meta/GGUF interleaved pairs (2i, 2i + 1) -> HF rotate-half pairs (i, i + d/2), i.e. the HF
    converter's permute; to="interleaved": its inverse.
    """
    rows, width = kernel.shape
    dim = width // num_heads
    if to == "half":
        grouped = kernel.reshape(rows, num_heads, dim // 2, 2)
    elif to == "interleaved":
        grouped = kernel.reshape(rows, num_heads, 2, dim // 2)
    else:
        raise ValueError(f"rope style {to!r}: expected 'half' or 'interleaved'")
    return grouped.transpose(0, 1, 3, 2).reshape(rows, width)


def restyle(cfg: llama.LlamaConfig, path: ParamPath, array: np.ndarray, style: str) -> np.ndarray:
    """`array` (our layout, in cfg.rope_style) with Q/K columns reordered for rotary `style`."""
    if style == cfg.rope_style or path[-2:] not in (("wq", "kernel"), ("wk", "kernel")):
        return array
    heads = cfg.num_heads if path[-2] == "wq" else cfg.num_kv_heads
    return permute_rotary(array, heads, style)


def make_config(source: str, **fields: Any) -> llama.LlamaConfig:
    """A LlamaConfig from a file's hyperparameters; a value the model rejects is a UserError naming `source`."""
    try:
        return llama.LlamaConfig(**fields)
    except ConfigError as e:
        raise UserError(f"{source}: unsupported hyperparameters: {e}") from None


def unknown_tensor(source: str, name: str) -> UserError:
    return UserError(f"{source}: unexpected tensor {name!r} (not part of a plain Llama model)")
