r"""Renders any structure file as PNG views and a turntable GIF, with the DreamCraft palette's colours.

    python -m tools.render_structure --structure=runs/dreamcraft_house/runs/quantized_seed0/cottage.schem
    python -m tools.render_structure --structure=castle.litematic --out=castle --views=6 --size=256

Reads .schem (Sponge v1-v3), .litematic and .mcfunction files, or a run's structure.npz; blocks outside the
palette are named in one error line (add them to configs/dreamcraft/palette.json with a colour).
Writes <out>.png (the views side by side) and <out>.gif.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags

from libs.dreamcraft import pictures
from libs.envs.voxels.export import load_structure
from libs.envs.voxels.palette import DEFAULT_PALETTE, load_palette
from libs.train.errors import ConfigError, UserError

_STRUCTURE = flags.DEFINE_string("structure", None, "A .schem, .litematic, .mcfunction or structure.npz file.")
_OUT = flags.DEFINE_string("out", None, "Output path without extension (default: next to the structure).")
_PALETTE = flags.DEFINE_string("palette", DEFAULT_PALETTE, "The palette file (block ids, colours, opacities).")
_VIEWS = flags.DEFINE_integer("views", 4, "Views around the structure in the PNG.")
_SIZE = flags.DEFINE_integer("size", 192, "Pixels per view.")
_ELEVATION = flags.DEFINE_float("elevation", 30.0, "Camera elevation in degrees.")


def _load(path: str, palette) -> np.ndarray:
    if not path.endswith(".npz"):
        return load_structure(path, palette)
    if not os.path.exists(path):
        raise UserError(f"structure file {path} not found")
    data = np.load(path)
    ids = [str(i) for i in data["block_ids"]]
    return np.asarray([palette.index(i) for i in ids], np.int32)[data["grid"]]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _STRUCTURE.value:
        raise app.UsageError("--structure is required")
    try:
        palette = load_palette(_PALETTE.value)
        grid = _load(_STRUCTURE.value, palette)
    except (ConfigError, UserError) as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
    out = _OUT.value or os.path.splitext(_STRUCTURE.value)[0]
    png = pictures.preview(out + ".png", grid, palette, views=_VIEWS.value, size=_SIZE.value,
                           elevation=_ELEVATION.value)
    gif = pictures.turntable(out + ".gif", grid, palette, size=_SIZE.value, elevation=_ELEVATION.value)
    print(f"{_STRUCTURE.value}: {grid.shape} grid, {int((grid > 0).sum())} blocks -> {png}, {gif}")


if __name__ == "__main__":
    app.run(main)
