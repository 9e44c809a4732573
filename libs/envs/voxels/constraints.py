"""Functional constraints on a block grid: a differentiable loss on the soft grid and a metric on the hard one.

Each constraint is gin-configurable under its class name and built by the experiment as `cls(palette)`, e.g.

    BlockDistribution.target = {"stone_bricks": 0.6, "oak_planks": 0.4}
    water/Adjacency.forbidden = [["water", "lava"]]
    water/Adjacency.name = "water_lava"
    dreamcraft.constraints = [@BlockDistribution, @Adjacency, @water/Adjacency]

Two constraints of one kind need distinct `name`s (the prefix of their metrics); `build` checks this.
Losses take probs (X, Y, Z, C) with air at channel 0, are jit-able and >= 0; metrics take a hard grid (X, Y, Z) of
palette indices. "Solid" means any block but air (water, lava and glass included).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from libs.envs.voxels.palette import Palette
from libs.train.errors import ConfigError

_EPS = 1e-6
_DIRECTIONS = {"all": (0, 1, 2), "horizontal": (0, 2), "vertical": (1,)}
_Y = 1  # the up axis of a grid


class Constraint:
    """Base class: a named, weighted functional constraint over grids of `palette` blocks."""

    name: str
    weight: float

    def __init__(self, palette: Palette, weight: float, name: str):
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{type(self).__name__}.weight = {weight!r}: use a finite number >= 0")
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError(f"{type(self).__name__}.name = {name!r}: use a non-empty name without spaces")
        self.palette = palette
        self.weight = float(weight)
        self.name = name

    def loss(self, probs: jax.Array) -> jax.Array:
        """probs (X, Y, Z, C), channel 0 = air -> scalar >= 0."""
        raise NotImplementedError

    def metric(self, grid: np.ndarray) -> dict[str, float]:
        """Hard grid (X, Y, Z) -> {f"{name}/satisfied": 0.0 or 1.0, f"{name}/violation": float, ...}."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight})"

    def _probs(self, probs) -> jax.Array:
        probs = jnp.asarray(probs, jnp.float32)  # sums over many cells; bfloat16 would lose them
        if probs.ndim != 4 or probs.shape[-1] != len(self.palette):
            raise ValueError(f"{self.name}: probs must be (X, Y, Z, {len(self.palette)}), got {probs.shape}")
        return probs

    def _grid(self, grid) -> np.ndarray:
        grid = np.asarray(grid)
        if grid.ndim != 3 or not np.issubdtype(grid.dtype, np.integer):
            raise ValueError(f"{self.name}: grid must be an int (X, Y, Z) array, got {grid.dtype} {grid.shape}")
        if grid.size and (grid.min() < 0 or grid.max() >= len(self.palette)):
            raise ValueError(f"{self.name}: grid values must be palette indices in [0, {len(self.palette)})")
        return grid

    def _result(self, satisfied: bool, violation: float, **more: float) -> dict[str, float]:
        out = {f"{self.name}/satisfied": float(satisfied), f"{self.name}/violation": float(violation)}
        out.update({f"{self.name}/{key}": float(value) for key, value in more.items()})
        return out


def _short(block_id: str) -> str:
    return block_id.split(":", 1)[1] if block_id.startswith("minecraft:") else block_id


def _pair_indices(palette: Palette, pairs, where: str) -> list[tuple[int, int]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise ConfigError(f"{where} = {pairs!r}: use a list of [block, block] pairs")
    out = []
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2 or not all(
                isinstance(b, str) for b in pair):
            raise ConfigError(f"{where}: {pair!r} is not a pair of block names, e.g. ['water', 'lava']")
        out.append((palette.index(pair[0]), palette.index(pair[1])))
    return out


def _shifted_pairs(values, axis: int):
    """(values at x, values at x + 1 along `axis`) over every neighbour pair along it; numpy or jax arrays."""
    lead = (slice(None),) * axis
    return values[lead + (slice(None, -1),)], values[lead + (slice(1, None),)]


@gin.configurable(denylist=["palette"])
class BlockDistribution(Constraint):
    """Target fractions of block types among solid cells (or among all cells with `include_air`).

    Loss: total-variation distance 0.5 * sum|h - t| between the soft histogram (expected counts over their expected
    total) and the target; it is 0 only at the exact target, while the metric is satisfied within `tolerance`.
    Among solid cells (without `include_air`) the loss moves block types, not occupancy: each cell's solid
    probability is held constant in the gradient. Otherwise deleting blocks of an over-represented type is the
    cheapest fix, and on the cottage it tore holes in the walls the views show.
    """

    def __init__(self, palette: Palette, target: Mapping[str, float] | None = None, include_air: bool = False,
                 tolerance: float = 0.1, weight: float = 1.0, name: str = "distribution"):
        super().__init__(palette, weight, name)
        where = f"BlockDistribution ({name}).target"
        if target is None:
            raise ConfigError(f"{where} is required, e.g. {{\"stone_bricks\": 0.6, \"oak_planks\": 0.4}}")
        if not isinstance(target, Mapping) or not target:
            raise ConfigError(f"{where} = {target!r}: use a non-empty dict of block name -> fraction")
        if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not 0 <= tolerance <= 1:
            raise ConfigError(f"BlockDistribution ({name}).tolerance = {tolerance!r}: use a number in [0, 1]")
        self.include_air = bool(include_air)
        self.tolerance = float(tolerance)
        fractions = np.zeros(len(palette), np.float64)
        self._target_indices: list[int] = []
        for block, fraction in target.items():
            if not isinstance(block, str):
                raise ConfigError(f"{where}: key {block!r} is not a block name")
            index = palette.index(block)
            if index == 0 and not self.include_air:
                raise ConfigError(f"{where}: 'air' is a target only with include_air = True")
            if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not math.isfinite(fraction) \
                    or fraction < 0:
                raise ConfigError(f"{where}: {block} = {fraction!r}: fractions must be numbers >= 0")
            if index in self._target_indices:
                raise ConfigError(f"{where}: {palette.ids[index]} is listed twice")
            self._target_indices.append(index)
            fractions[index] = fraction
        if abs(fractions.sum() - 1.0) > 1e-3:
            raise ConfigError(f"{where}: fractions sum to {fractions.sum():.4g}; they must sum to 1")
        self.target = fractions  # (C,); blocks not in the target have 0
        self._first = 0 if self.include_air else 1  # channels the histogram is over

    def _distance(self, counts, xp):
        counts = counts[self._first:]
        histogram = counts / xp.maximum(counts.sum(), _EPS)
        return 0.5 * xp.abs(histogram - xp.asarray(self.target[self._first:], counts.dtype)).sum()

    def loss(self, probs: jax.Array) -> jax.Array:
        probs = self._probs(probs)
        if not self.include_air:
            solid = probs[..., 1:].sum(-1, keepdims=True)
            types = probs[..., 1:] / jnp.maximum(solid, _EPS)  # a cell's block-type mix, whatever its occupancy
            probs = jnp.concatenate([probs[..., :1], jax.lax.stop_gradient(solid) * types], -1)
        return self._distance(probs.sum(axis=(0, 1, 2)), jnp)

    def metric(self, grid: np.ndarray) -> dict[str, float]:
        counts = np.bincount(self._grid(grid).ravel(), minlength=len(self.palette)).astype(np.float64)
        violation = self._distance(counts, np)
        total = max(counts[self._first:].sum(), 1.0)
        fractions = {f"fraction/{_short(self.palette.ids[i])}": counts[i] / total for i in self._target_indices}
        return self._result(violation <= self.tolerance, violation, **fractions)


@gin.configurable(denylist=["palette"])
class Adjacency(Constraint):
    """Pairs of blocks that must not touch (face neighbours), or, with `allowed`, the only pairs of different solid
    blocks that may touch. Pairs are unordered.

    Loss: expected number of violating neighbour pairs, sum over d of p(x)^T V p(x + d) (V symmetric, so both orders
    count), divided by the number of cells; on a one-hot grid it is the metric's count over the number of cells.
    """

    def __init__(self, palette: Palette, forbidden: Sequence[Sequence[str]] = (),
                 allowed: Sequence[Sequence[str]] | None = None, directions: str = "all", weight: float = 1.0,
                 name: str = "adjacency"):
        super().__init__(palette, weight, name)
        if directions not in _DIRECTIONS:
            raise ConfigError(f"Adjacency ({name}).directions = {directions!r}: use one of {sorted(_DIRECTIONS)}")
        self.axes = _DIRECTIONS[directions]
        violating = np.zeros((len(palette), len(palette)), bool)
        allowed_pairs: set[tuple[int, int]] = set()
        if allowed is not None:
            allowed_pairs = set(_pair_indices(palette, allowed, f"Adjacency ({name}).allowed"))
            if any(0 in pair for pair in allowed_pairs):
                raise ConfigError(f"Adjacency ({name}).allowed: lists air; air may always touch anything")
            violating[1:, 1:] = True
            np.fill_diagonal(violating, False)  # same-type neighbours are always fine
            for a, b in allowed_pairs:
                violating[a, b] = violating[b, a] = False
        for a, b in _pair_indices(palette, forbidden, f"Adjacency ({name}).forbidden"):
            if (a, b) in allowed_pairs or (b, a) in allowed_pairs:
                raise ConfigError(f"Adjacency ({name}): {_short(palette.ids[a])}/{_short(palette.ids[b])} is both "
                                  "forbidden and allowed")
            violating[a, b] = violating[b, a] = True
        self.violating = violating  # (C, C) symmetric

    def loss(self, probs: jax.Array) -> jax.Array:
        probs = self._probs(probs)
        weighted = probs @ jnp.asarray(self.violating, jnp.float32)  # [..., b] = sum_a p_a(x) V[a, b]
        total = jnp.zeros((), jnp.float32)
        for axis in self.axes:
            here, _ = _shifted_pairs(weighted, axis)
            _, there = _shifted_pairs(probs, axis)
            total = total + (here * there).sum()
        return total / math.prod(probs.shape[:3])

    def metric(self, grid: np.ndarray) -> dict[str, float]:
        grid = self._grid(grid)
        count = sum(int(self.violating[here, there].sum()) for here, there in
                    (_shifted_pairs(grid, axis) for axis in self.axes))
        return self._result(count == 0, count)


@gin.configurable(denylist=["palette"])
class Support(Constraint):
    """No solid block directly above air; y = 0 is the ground and always supported.

    Loss: mean over cells with y > 0 of P(solid at (x, y, z)) * P(air at (x, y - 1, z)).
    """

    def __init__(self, palette: Palette, weight: float = 1.0, name: str = "support"):
        super().__init__(palette, weight, name)

    def loss(self, probs: jax.Array) -> jax.Array:
        probs = self._probs(probs)
        air = probs[..., 0]
        below, above = _shifted_pairs(air, _Y)
        return ((1.0 - above) * below).sum() / max(below.size, 1)

    def metric(self, grid: np.ndarray) -> dict[str, float]:
        solid = self._grid(grid) != 0
        below, above = _shifted_pairs(solid, _Y)
        unsupported = int((above & ~below).sum())
        return self._result(unsupported == 0, unsupported, unsupported_fraction=unsupported / max(solid.sum(), 1))


@gin.configurable(denylist=["palette"])
class Connectivity(Constraint):
    """The solid part should be one piece standing on the ground (6-connected to some solid cell at y = 0).

    Loss: how much more solid each cell is than its strongest path to the ground. The path strength is a
    widest-path flood fill: reach_0 = P(solid) at y = 0 (0 elsewhere), reach_{t+1} = min(P(solid), max(reach_t,
    max over the 6 neighbours of reach_t)) for `iterations` steps (default X + Y + Z; a winding path longer than
    that counts as unreached); loss = sum(relu(P(solid) - reach)) / number of cells. On a one-hot grid that is the
    floating cells over all cells, and on a soft one a wall as certain as the floor it stands on costs nothing.
    The reach is held constant in the gradient, so the loss pushes floating blocks towards air instead of adding
    blocks to bridge them. Two first trials on the cottage showed why: with the gradient through the reach,
    filling every cell is the easiest way to connect everything (it did); and a product of probabilities along
    the path (0.9^10 = 0.35) counted connected walls as floating, and removed them.
    """

    def __init__(self, palette: Palette, weight: float = 1.0, iterations: int | None = None,
                 name: str = "connectivity"):
        super().__init__(palette, weight, name)
        if iterations is not None and (not isinstance(iterations, int) or isinstance(iterations, bool)
                                       or iterations < 1):
            raise ConfigError(f"Connectivity ({name}).iterations = {iterations!r}: use an int >= 1 or None")
        self.iterations = iterations

    def loss(self, probs: jax.Array) -> jax.Array:
        solid = 1.0 - self._probs(probs)[..., 0]
        ground = jnp.zeros_like(solid).at[:, 0, :].set(solid[:, 0, :])

        def spread(_, reach):
            padded = jnp.pad(reach, 1)  # reach is >= 0, so zero padding never wins the max
            best = reach
            for axis in range(3):
                for start in (0, 2):
                    index = [slice(1, -1)] * 3
                    index[axis] = slice(start, start + reach.shape[axis])
                    best = jnp.maximum(best, padded[tuple(index)])
            return jnp.minimum(solid, best)

        iterations = self.iterations or sum(solid.shape)
        reach = jax.lax.stop_gradient(jax.lax.fori_loop(0, iterations, spread, ground))
        return jax.nn.relu(solid - reach).sum() / solid.size

    def metric(self, grid: np.ndarray) -> dict[str, float]:
        solid = self._grid(grid) != 0
        labels, components = ndimage.label(solid, structure=ndimage.generate_binary_structure(3, 1))
        grounded = np.isin(labels, np.unique(labels[:, 0, :][labels[:, 0, :] > 0]))
        floating = int((solid & ~grounded).sum())
        return self._result(floating == 0, floating / max(solid.sum(), 1), components=components,
                            floating_cells=floating)


ConstraintSpec = Constraint | Callable[[Palette], Constraint]


def build(palette: Palette, constraints: Sequence[ConstraintSpec]) -> list[Constraint]:
    """Constraints from classes/callables taking the palette (gin references) or instances already built."""
    built = []
    for i, spec in enumerate(constraints):
        constraint = spec(palette) if callable(spec) and not isinstance(spec, Constraint) else spec
        if not isinstance(constraint, Constraint):
            raise ConfigError(f"constraints[{i}] = {spec!r}: not a Constraint or a constraint class")
        if constraint.palette != palette:
            raise ConfigError(f"constraints[{i}] ({constraint.name}) was built for another palette")
        built.append(constraint)
    names = [c.name for c in built]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"constraints: names used twice: {repeated}; give each its own, e.g. "
                          f"`scope/{type(built[names.index(repeated[0])]).__name__}.name = \"...\"`")
    return built


def total_loss(constraints: Sequence[Constraint], probs: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(sum of weight * loss, {name: unweighted loss})."""
    losses = {c.name: c.loss(probs) for c in constraints}
    total = sum((c.weight * losses[c.name] for c in constraints), jnp.zeros((), jnp.float32))
    return total, losses


def evaluate(constraints: Sequence[Constraint], grid: np.ndarray) -> dict[str, float]:
    """Every constraint's metrics, plus "constraints/satisfied": the fraction satisfied (1.0 when there are none)."""
    grid = np.asarray(grid)
    metrics: dict[str, float] = {}
    for c in constraints:
        metrics.update(c.metric(grid))
    satisfied = [metrics[f"{c.name}/satisfied"] for c in constraints]
    metrics["constraints/satisfied"] = float(np.mean(satisfied)) if satisfied else 1.0
    return metrics
