"""DreamCraft's quantized field: per-cell logits over block types plus a separate occupancy, on an N^3 grid.

The coordinate network reads dense multi-resolution feature grids (trilinearly upsampled to the block grid) and
Fourier features of the cell centre, then two small MLPs give K block-type logits and one occupancy logit per cell.
Dense grids rather than a hash grid: every training step evaluates the field at all N^3 cell centres anyway (the
render gathers from the whole grid), and for N <= 128 the dense features fit in memory (8 features at 128^3 are
64 MB), so a dense lookup is a single resize with no hash collisions to learn around; a hash grid only pays off
at resolutions this grid never reaches.

Quantization (`cell_probs`): Gumbel-softmax on the block logits and a binary Gumbel (logistic noise) on the
occupancy, each blended between the soft sample and its straight-through hard version,
`B = alpha * B_hard + (1 - alpha) * B_soft` (and the same for occupancy), with alpha annealed from 0 to 1 over
training. At alpha = 1 the forward pass renders exactly the hard grid the game will get, while gradients flow
through the soft sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import gin
import jax
import jax.numpy as jnp
from flax import linen as nn


@gin.configurable("voxel_field")
@dataclasses.dataclass(frozen=True)
class FieldConfig:
    """grid: cells per axis (x, y, z); levels: feature-grid resolutions as divisors of the grid (1 = full)."""

    grid: tuple[int, int, int] = (16, 16, 16)
    levels: Sequence[int] = (4, 2, 1)
    features: int = 8
    fourier_bands: int = 3
    hidden: int = 64
    layers: int = 2
    occupancy_bias: float = -1.0  # starts mostly empty, as NeRFs do: sigmoid(-1) = 0.27

    def __post_init__(self):
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))


class _MLP(nn.Module):
    hidden: int
    layers: int
    out: int
    bias_init: float = 0.0

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers):
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out, bias_init=nn.initializers.constant(self.bias_init))(x)


class VoxelField(nn.Module):
    """() -> (block_logits (X, Y, Z, K), occupancy_logits (X, Y, Z))."""

    config: FieldConfig
    num_blocks: int  # K: block types, air excluded

    @nn.compact
    def __call__(self):
        cfg = self.config
        grid = cfg.grid
        feats = []
        for level in cfg.levels:
            shape = tuple(max(1, -(-g // level)) for g in grid)
            table = self.param(f"features_{level}", nn.initializers.normal(0.1), (*shape, cfg.features))
            feats.append(jax.image.resize(table, (*grid, cfg.features), "linear") if shape != grid else table)
        axes = [(jnp.arange(g, dtype=jnp.float32) + 0.5) / g * 2 - 1 for g in grid]
        coords = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1)
        bands = 2.0 ** jnp.arange(cfg.fourier_bands) * jnp.pi
        angles = (coords[..., None] * bands).reshape(*grid, -1)
        x = jnp.concatenate(feats + [coords, jnp.sin(angles), jnp.cos(angles)], -1)
        blocks = _MLP(cfg.hidden, cfg.layers, self.num_blocks, name="block_mlp")(x)
        occupancy = _MLP(cfg.hidden, cfg.layers, 1, cfg.occupancy_bias, name="occupancy_mlp")(x)[..., 0]
        return blocks, occupancy


def _straight_through(hard: jax.Array, soft: jax.Array) -> jax.Array:
    return soft + jax.lax.stop_gradient(hard - soft)


def cell_probs(block_logits: jax.Array, occupancy_logits: jax.Array, alpha: jax.Array | float = 0.0,
               temperature: jax.Array | float = 1.0, key: jax.Array | None = None, noise: float = 1.0
               ) -> jax.Array:
    """The soft grid (X, Y, Z, 1 + K), air first, blended `alpha` of the way from soft to straight-through hard.

    With a `key`, Gumbel noise (scaled by `noise`) perturbs the logits, as in a Gumbel-softmax sample; without,
    the probabilities are deterministic.
    """
    if key is not None:
        k1, k2 = jax.random.split(key)
        block_logits = block_logits + noise * jax.random.gumbel(k1, block_logits.shape)
        occupancy_logits = occupancy_logits + noise * jax.random.logistic(k2, occupancy_logits.shape)
    block_soft = jax.nn.softmax(block_logits / temperature, -1)
    block_hard = jax.nn.one_hot(jnp.argmax(block_logits, -1), block_logits.shape[-1], dtype=block_soft.dtype)
    occ_soft = jax.nn.sigmoid(occupancy_logits / temperature)
    occ_hard = (occupancy_logits > 0).astype(occ_soft.dtype)
    blocks = alpha * _straight_through(block_hard, block_soft) + (1 - alpha) * block_soft
    occ = alpha * _straight_through(occ_hard, occ_soft) + (1 - alpha) * occ_soft
    return jnp.concatenate([(1 - occ)[..., None], occ[..., None] * blocks], -1)


def hard_grid(block_logits: jax.Array, occupancy_logits: jax.Array) -> jax.Array:
    """The quantized structure: palette indices (X, Y, Z), 0 = air where the occupancy logit is <= 0."""
    return jnp.where(occupancy_logits > 0, jnp.argmax(block_logits, -1) + 1, 0).astype(jnp.int32)
