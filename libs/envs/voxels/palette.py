"""The block palette: real Minecraft block ids with a colour and an opacity, air first (index 0)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import gin
import numpy as np

from libs.train.errors import ConfigError, UserError

AIR = "minecraft:air"
DEFAULT_PALETTE = "configs/dreamcraft/palette.json"


@dataclasses.dataclass(frozen=True)
class Block:
    id: str  # namespaced Minecraft id, e.g. "minecraft:stone_bricks"
    color: tuple[float, float, float]  # linear 0..1 RGB of the block's average texture colour
    opacity: float  # 1 = opaque; glass and water let light through


@dataclasses.dataclass(frozen=True)
class Palette:
    """Blocks by index; `blocks[0]` is air (colour unused, opacity 0)."""

    blocks: tuple[Block, ...]

    def __post_init__(self):
        if not self.blocks or self.blocks[0].id != AIR:
            raise ConfigError(f"palette: entry 0 must be {AIR}")
        ids = [b.id for b in self.blocks]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ConfigError(f"palette: block ids listed twice: {repeated}")

    def __len__(self) -> int:
        return len(self.blocks)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(b.id for b in self.blocks)

    @property
    def colors(self) -> np.ndarray:
        """(C, 3) float32."""
        return np.asarray([b.color for b in self.blocks], np.float32)

    @property
    def opacities(self) -> np.ndarray:
        """(C,) float32; air's is 0."""
        return np.asarray([b.opacity for b in self.blocks], np.float32)

    def index(self, block_id: str) -> int:
        full = block_id if ":" in block_id else f"minecraft:{block_id}"
        try:
            return self.ids.index(full)
        except ValueError:
            raise ConfigError(f"block {block_id!r} is not in the palette ({len(self)} blocks: "
                              f"{', '.join(i.split(':')[1] for i in self.ids)})") from None

    def subset(self, block_ids: Sequence[str]) -> Palette:
        """A palette of air plus `block_ids`, in that order."""
        return Palette((self.blocks[0],) + tuple(self.blocks[self.index(b)] for b in block_ids if
                                                 self.index(b) != 0))


def _color(value, where: str) -> tuple[float, float, float]:
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        try:
            return tuple(int(value[i:i + 2], 16) / 255.0 for i in (1, 3, 5))
        except ValueError:
            pass
    elif isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        scale = 255.0 if max(value) > 1 else 1.0
        return tuple(float(v) / scale for v in value)
    raise UserError(f"{where}: colour {value!r}: use '#rrggbb' or [r, g, b]")


def parse_palette(data: dict, where: str = "palette") -> Palette:
    entries = data.get("blocks") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{where}: expected {{\"blocks\": [{{\"id\", \"color\", \"opacity\"}}, ...]}}")
    blocks = [Block(AIR, (0.0, 0.0, 0.0), 0.0)]
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise UserError(f"{where}: block {i} needs an 'id' string")
        block_id = entry["id"] if ":" in entry["id"] else f"minecraft:{entry['id']}"
        if block_id == AIR:
            continue
        opacity = entry.get("opacity", 1.0)
        if not isinstance(opacity, (int, float)) or not 0 < opacity <= 1:
            raise UserError(f"{where}: {block_id} opacity {opacity!r}: use a number in (0, 1]")
        blocks.append(Block(block_id, _color(entry.get("color"), f"{where}: {block_id}"), float(opacity)))
    try:
        return Palette(tuple(blocks))
    except ConfigError as e:
        raise UserError(f"{where}: {str(e).removeprefix('palette: ')}") from None


@gin.configurable("palette")
def load_palette(path: str = DEFAULT_PALETTE, blocks: Sequence[str] | None = None) -> Palette:
    """The palette file at `path`, optionally cut to `blocks` (ids, "minecraft:" optional) plus air."""
    if not os.path.exists(path):
        raise UserError(f"palette file {path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"palette file {path}: not JSON ({e.msg}, line {e.lineno})") from None
    palette = parse_palette(data, path)
    return palette.subset(blocks) if blocks else palette
