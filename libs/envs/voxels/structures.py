"""Reference structures to build: small procedural ones (a house, a tower) or a schematic file someone supplies."""

from __future__ import annotations

from collections.abc import Callable

import gin
import numpy as np

from libs.envs.voxels.palette import Palette
from libs.train.errors import ConfigError


class _Builder:
    """Fills boxes of a grid with block ids; `indices(palette)` maps them to palette indices."""

    def __init__(self, shape):
        self.names: list[str] = ["air"]
        self.grid = np.zeros(shape, np.int32)

    def fill(self, block: str, x, y, z) -> None:
        """x, y, z: inclusive (lo, hi) ranges or single coordinates."""
        if block not in self.names:
            self.names.append(block)
        sl = tuple(slice(v, v + 1) if isinstance(v, int) else slice(v[0], v[1] + 1) for v in (x, y, z))
        self.grid[sl] = self.names.index(block)

    def ring(self, block: str, x, y, z) -> None:
        """The outline of the x-z rectangle at heights y."""
        self.fill(block, x, y, (z[0], z[0]))
        self.fill(block, x, y, (z[1], z[1]))
        self.fill(block, (x[0], x[0]), y, z)
        self.fill(block, (x[1], x[1]), y, z)

    def indices(self, palette: Palette) -> np.ndarray:
        lookup = np.asarray([0] + [palette.index(n) for n in self.names[1:]], np.int32)
        return lookup[self.grid]


def house(size: int = 16) -> _Builder:
    """A stone-brick cottage on a cobblestone platform: log corners, glass windows, a door, a stepped plank roof,
    a brick chimney and a small pond. Scaled to a size^3 grid (size >= 12)."""
    if size < 12:
        raise ConfigError(f"structure 'house' needs a grid of at least 12, got {size}")
    b = _Builder((size, size, size))
    lo, hi = 1, size - 2  # platform
    b.fill("cobblestone", (lo, hi), 0, (lo, hi))
    b.fill("water", (lo + 1, lo + 2), 0, (hi - 2, hi - 1))
    w0, w1, top = lo + 2, hi - 2, size // 2 - 2  # walls from y=1 to top
    b.ring("stone_bricks", (w0, w1), (1, top), (w0, w1))
    for x in (w0, w1):
        for z in (w0, w1):
            b.fill("oak_log", x, (1, top), z)
    mid = (w0 + w1) // 2
    b.fill("air", (mid, mid + 1), (1, 2), w0)  # the door
    for x in (w0, w1):
        b.fill("glass", x, (2, 3), (mid - 1, mid + 1))
    b.fill("glass", (mid - 2, mid - 1) if mid - 2 > w0 else mid - 1, (2, 3), w1)
    layer, y = 0, top + 1
    while w0 - 1 + layer <= w1 + 1 - layer:
        a, c = w0 - 1 + layer, w1 + 1 - layer
        if c - a <= 3:
            b.fill("oak_planks", (a, c), y, (a, c))
        else:  # two rings, so the next layer's ring rests on this one's inner ring (face-connected, buildable)
            b.ring("oak_planks", (a, c), y, (a, c))
            b.ring("oak_planks", (a + 1, c - 1), y, (a + 1, c - 1))
        layer, y = layer + 1, y + 1
    b.fill("bricks", w1 - 1, (top + 1, min(size - 1, top + 5)), w1 - 1)
    return b


def tower(size: int = 8) -> _Builder:
    """A 3x3 stone-brick column with a gold cap on a sandstone base: the smallest test structure (size >= 6)."""
    if size < 6:
        raise ConfigError(f"structure 'tower' needs a grid of at least 6, got {size}")
    b = _Builder((size, size, size))
    c = size // 2
    b.fill("sandstone", (c - 2, c + 2), 0, (c - 2, c + 2))
    b.fill("stone_bricks", (c - 1, c + 1), (1, size - 3), (c - 1, c + 1))
    b.fill("gold_block", (c - 1, c + 1), size - 2, (c - 1, c + 1))
    return b


STRUCTURES: dict[str, Callable[[int], _Builder]] = {"house": house, "tower": tower}


@gin.configurable("reference_structure")
def reference_structure(palette: Palette, name: str = "house", size: int = 16, path: str | None = None
                        ) -> np.ndarray:
    """The structure the targets are rendered from: a procedural one by `name`, or a .schem / .litematic /
    .mcfunction file at `path` (mapped onto `palette`; blocks outside it are an error)."""
    if path:
        from libs.envs.voxels.export import load_structure  # pylint: disable=import-outside-toplevel

        return load_structure(path, palette)
    if name not in STRUCTURES:
        raise ConfigError(f"reference_structure.name {name!r}: use one of {sorted(STRUCTURES)} or set path")
    return STRUCTURES[name](size).indices(palette)


def block_histogram(grid: np.ndarray, palette: Palette) -> dict[str, float]:
    """Fractions of each block type among the solid cells (the form a distribution target takes)."""
    counts = np.bincount(np.asarray(grid).reshape(-1), minlength=len(palette))[1:]
    total = max(int(counts.sum()), 1)
    return {palette.ids[i + 1].split(":")[1]: round(float(c) / total, 4) for i, c in enumerate(counts) if c}
