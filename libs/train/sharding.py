"""The device mesh and the logical-axis rules, both from config.

Model code names the axes of its parameters and activations logically
(`embed`, `mlp`, `heads`, `kv_heads`, `vocab`, `act_batch`, ...); a rules table maps each
logical name to a mesh axis (`data`, `fsdp`, `tensor`) or to None (replicated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gin
import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from libs.train.launch import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# Data parallel over `data`, ZeRO-3 style parameter sharding over `fsdp`,
# Megatron-style head/MLP/vocab sharding over `tensor`.
DEFAULT_RULES = (
    ("act_batch", ("data", "fsdp")),
    ("act_len", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),  # GQA key/value heads (Llama); their count must divide by the tensor axis
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
)


@gin.configurable
def make_mesh(
    data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A (data, fsdp, tensor) mesh; one axis may be -1 to take the remaining devices."""
    devices = list(devices if devices is not None else jax.devices())
    shape = [data, fsdp, tensor]
    if shape.count(-1) > 1:
        raise ConfigError(f"make_mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, shape))}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if len(devices) % known:
            raise ConfigError(f"make_mesh: {len(devices)} devices do not divide by {known}")
        shape[shape.index(-1)] = len(devices) // known
    if math.prod(shape) > len(devices):
        raise ConfigError(
            f"make_mesh: mesh {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} devices, "
            f"{len(devices)} available"
        )
    grid = np.asarray(devices[: math.prod(shape)]).reshape(shape)
    return Mesh(grid, MESH_AXES)


@gin.configurable
def logical_rules(rules: Sequence[Sequence] = DEFAULT_RULES) -> tuple[tuple[str, object], ...]:
    """The logical-to-mesh axis table (gin-configurable)."""
    out = []
    for rule in rules:
        name, axes = rule
        axes = tuple(axes) if isinstance(axes, list) else axes
        out.append((name, axes))
    return tuple(out)


def logical_to_sharding(logical_tree, mesh: Mesh, rules) -> object:
    """Maps a tree of logical PartitionSpecs to NamedShardings on `mesh`."""
    return nn.logical_to_mesh_sharding(logical_tree, mesh, rules)


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
    """Sharding of a (batch, length) token array."""
    spec = nn.logical_to_mesh_axes(("act_batch", "act_len"), rules)
    return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_axis_size(mesh: Mesh, rules) -> int:
    """How many ways the batch dimension is split."""
    spec = nn.logical_to_mesh_axes(("act_batch",), rules)[0]
    if spec is None:
        return 1
    names = (spec,) if isinstance(spec, str) else spec
    return math.prod(mesh.shape[n] for n in names)


def axis_size(mesh: Mesh, rules, logical: str) -> int:
    """How many ways the logical axis `logical` is split on `mesh` (1 when it has no rule)."""
    if logical not in dict(rules):
        return 1
    spec = nn.logical_to_mesh_axes((logical,), rules)[0]
    if spec is None:
        return 1
    names = (spec,) if isinstance(spec, str) else spec
    return math.prod(mesh.shape[n] for n in names)
