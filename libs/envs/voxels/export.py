"""Minecraft files from a hard grid, and back: Sponge `.schem`, Litematica `.litematic`, `.mcfunction`.

- `.schem` is Sponge schematic v2 (WorldEdit / FAWE, Minecraft 1.13+), written with nbtlib rather than mcschematic:
  mcschematic crops the volume to the bounding box of the non-air blocks (moving the shift into WorldEdit's
  WEOffset metadata), so air borders, and with them exact round trips, would be lost. The reader decodes the file
  itself and also takes Sponge v1 and v3 (WorldEdit 7.3+ writes v3).
- `.litematic` goes through litemapy: one region the size of the grid.
- `.mcfunction` holds `setblock ~x ~y ~z id` lines relative to where the function runs (bottom layer first, so
  falling blocks land on what is under them), after a `fill ... minecraft:air` that clears the volume.

`read_back` returns what a file holds; `load_structure` maps a file someone supplies onto a palette.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence

import gin
import litemapy
import nbtlib
import numpy as np
from absl import logging
from nbtlib.tag import ByteArray, Compound, Int, IntArray, List, Long, Short, String

from libs.envs.voxels.palette import AIR, Palette
from libs.train.errors import ConfigError, UserError

DATA_VERSION = 3465  # Minecraft Java 1.20.1 (https://minecraft.wiki/w/Data_version)
DEFAULT_AUTHOR = "jax-research-monorepo DreamCraft"
FORMATS = (".schem", ".litematic", ".mcfunction")
FILL_LIMIT = 32768  # the most blocks one /fill may change in vanilla 1.20
COMMAND_CHAIN_LIMIT = 65536  # gamerule maxCommandChainLength: commands one function run may execute
_AIR_LIKE = frozenset({AIR, "minecraft:cave_air", "minecraft:void_air"})
_BLOCK_ID = re.compile(r"[a-z0-9_.-]+:[a-z0-9_./-]+")


# ----------------------------------------------------------------------------------------------------------- checks


def _check_grid(grid, block_ids: Sequence[str]) -> np.ndarray:
    """The grid as int64, after checking it indexes `block_ids` and those are plain namespaced ids, air first."""
    grid = np.asarray(grid)
    if grid.ndim != 3 or min(grid.shape) < 1 or not np.issubdtype(grid.dtype, np.integer):
        raise ValueError(f"a hard grid is a non-empty (X, Y, Z) integer array, got {grid.dtype} {grid.shape}")
    if max(grid.shape) > 32767:
        raise ValueError(f"grid {grid.shape}: schematic sizes are shorts, at most 32767 per axis")
    if not block_ids or block_ids[0] != AIR:
        raise ValueError(f"block_ids[0] must be {AIR}")
    grid = grid.astype(np.int64)
    if grid.min() < 0 or grid.max() >= len(block_ids):
        raise ValueError(f"grid holds indices {grid.min()}..{grid.max()} but block_ids has {len(block_ids)} entries")
    bad = [block_ids[i] for i in np.unique(grid) if not _BLOCK_ID.fullmatch(block_ids[i])]
    if bad:
        raise UserError(f"block ids {bad} are not Minecraft ids (lowercase 'namespace:name', no block states)")
    return grid


def _compact(grid: np.ndarray, block_ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The grid re-indexed into its own palette: air, then the blocks it uses, in `block_ids` order."""
    used = np.unique(np.concatenate([[0], grid.reshape(-1)]))
    lookup = np.zeros(len(block_ids), np.int64)
    lookup[used] = np.arange(len(used))
    return lookup[grid], [block_ids[i] for i in used]


def _describe(grid: np.ndarray) -> str:
    return "DreamCraft structure, {}x{}x{} blocks (x y z)".format(*grid.shape)


def _normalize_state(state: str) -> str:
    """A block state with its namespace ("stone" -> "minecraft:stone") and no blanks."""
    block, rest = re.fullmatch(r"([^\[{]*)(.*)", re.sub(r"\s+", "", str(state))).groups()
    return (block if ":" in block else f"minecraft:{block}") + rest


def block_id(state: str) -> str:
    """The block id of a state: "minecraft:oak_stairs[facing=north]" -> "minecraft:oak_stairs"."""
    return re.match(r"[^\[{]*", _normalize_state(state)).group()


def _air_first(local: np.ndarray, states: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(grid, ids) from a grid of indices into a file's own palette `states`: unused states dropped, air at 0."""
    states = [_normalize_state(s) for s in states]
    used = np.unique(local)
    ids = [AIR] + [s for s in dict.fromkeys(states[i] for i in used) if s != AIR]
    lookup = np.zeros(len(states), np.int32)
    for i in used:
        lookup[i] = ids.index(states[i])
    return lookup[local], tuple(ids)


# ------------------------------------------------------------------------------------------------ Sponge .schem


def _encode_varints(values: np.ndarray) -> bytes:
    """Sponge's varint[]: 7 bits a byte, low bits first, the top bit set on every byte but a number's last."""
    values = np.asarray(values, np.int64).reshape(-1)
    if values.size == 0 or values.max() < 128:
        return values.astype(np.uint8).tobytes()
    nbytes = 1 + sum((values >= 1 << (7 * k)).astype(np.int64) for k in range(1, 5))
    starts = np.cumsum(nbytes) - nbytes
    out = np.empty(int(nbytes.sum()), np.uint8)
    for k in range(int(nbytes.max())):
        has = nbytes > k
        more = (nbytes[has] > k + 1).astype(np.int64) << 7
        out[starts[has] + k] = ((values[has] >> (7 * k)) & 0x7F) | more
    return out.tobytes()


def _decode_varints(raw: np.ndarray) -> np.ndarray:
    """The numbers in a varint[] byte array (uint8)."""
    raw = np.asarray(raw, np.uint8).reshape(-1)
    if raw.size == 0:
        return np.zeros(0, np.int64)
    last = (raw & 0x80) == 0
    if not last[-1]:
        raise UserError("block data ends inside a varint")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 5:
        raise UserError("block data holds a varint longer than 5 bytes")
    shift = 7 * (np.arange(raw.size) - np.repeat(starts, lengths))
    return np.add.reduceat((raw & 0x7F).astype(np.int64) << shift, starts)


def write_schem(path: str, grid, block_ids: Sequence[str], *, name: str = "", author: str = DEFAULT_AUTHOR,
                data_version: int = DATA_VERSION) -> str:
    """Writes `grid` (indices into `block_ids`) as a gzipped Sponge v2 schematic at `path`; returns the path.

    The full grid is kept, air borders included; Offset is [0, 0, 0], so WorldEdit pastes the x/y/z-minimum corner
    at the player.
    """
    grid = _check_grid(grid, block_ids)
    local, states = _compact(grid, block_ids)
    width, height, length = grid.shape
    # Sponge order is x + z * Width + y * Width * Length: y outermost, then z, then x.
    block_data = _encode_varints(local.transpose(1, 2, 0))
    schematic = nbtlib.File({
        "Version": Int(2),
        "DataVersion": Int(data_version),
        "Metadata": Compound({
            "Name": String(name),
            "Author": String(author),
            "Date": Long(round(time.time() * 1000)),
            # WorldEdit's own origin fields; zero keeps its paste origin at the minimum corner, like Offset.
            "WEOffsetX": Int(0), "WEOffsetY": Int(0), "WEOffsetZ": Int(0),
        }),
        "Width": Short(width),
        "Height": Short(height),
        "Length": Short(length),
        "Offset": IntArray([0, 0, 0]),
        "PaletteMax": Int(len(states)),  # WorldEdit rejects a file where this differs from the palette's size
        "Palette": Compound({state: Int(i) for i, state in enumerate(states)}),
        "BlockData": ByteArray(np.frombuffer(block_data, np.int8)),
        "BlockEntities": List[Compound](),
        "Entities": List[Compound](),
    }, gzipped=True, root_name="Schematic")  # WorldEdit recognises a Sponge file by this root name
    schematic.save(path)
    return path


def _sponge_body(root: Compound) -> tuple[Compound, Compound, Sequence[int], int]:
    """(body, palette, block data, version) of a Sponge schematic of version 1, 2 or 3."""
    if "Version" not in root and isinstance(root.get("Schematic"), Compound):
        root = root["Schematic"]  # v3 nests everything in a "Schematic" compound
    if "Version" not in root:
        raise UserError("no 'Version' tag: not a Sponge schematic")
    version = int(root["Version"])
    if version in (1, 2):
        return root, root["Palette"], root["BlockData"], version
    if version == 3:
        return root, root["Blocks"]["Palette"], root["Blocks"]["Data"], version
    raise UserError(f"Sponge schematic version {version} is not supported (1, 2 or 3)")


def _read_schem(path: str) -> tuple[np.ndarray, tuple[str, ...]]:
    body, palette, block_data, _ = _sponge_body(nbtlib.load(path))
    width, height, length = (int(body[k]) & 0xFFFF for k in ("Width", "Height", "Length"))
    values = _decode_varints(np.asarray(block_data, np.int8).view(np.uint8))
    if values.size != width * height * length:
        raise UserError(f"{values.size} blocks in the data for a {width}x{height}x{length} volume")
    by_index = {int(i): str(state) for state, i in palette.items()}
    missing = sorted(set(np.unique(values).tolist()) - set(by_index))
    if missing:
        raise UserError(f"block data uses palette indices {missing[:5]} that the palette lacks")
    indices = np.asarray(sorted(by_index), np.int64)
    local = np.searchsorted(indices, values).reshape(height, length, width).transpose(2, 0, 1)
    return _air_first(local, [by_index[i] for i in indices.tolist()])


# ---------------------------------------------------------------------------------------------- Litematica


def write_litematic(path: str, grid, block_ids: Sequence[str], *, name: str = "", author: str = DEFAULT_AUTHOR,
                    description: str = "", data_version: int = DATA_VERSION) -> str:
    """Writes `grid` as a Litematica schematic with one region the size of the grid; returns the path."""
    grid = _check_grid(grid, block_ids)
    name = name or "DreamCraft"
    region = litemapy.Region(0, 0, 0, *grid.shape)
    states = {i: litemapy.BlockState(block_ids[i]) for i in np.unique(grid).tolist()}
    for x, y, z in np.argwhere(grid != 0).tolist():
        region[x, y, z] = states[int(grid[x, y, z])]
    schematic = region.as_schematic(name=name, author=author, description=description or _describe(grid),
                                    mc_version=data_version)
    schematic.save(path)
    return path


def _read_litematic(path: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """All regions, placed in the schematic's enclosing box."""
    schematic = litemapy.Schematic.load(path)
    regions = list(schematic.regions.values())
    if not regions:
        raise UserError("the litematic has no regions")
    low = [min(getattr(r, f"min_schem_{axis}")() for r in regions) for axis in "xyz"]
    states = [AIR]
    local = np.zeros((schematic.width, schematic.height, schematic.length), np.int64)
    for region in regions:
        for x, y, z in region.block_positions():
            state = region[x, y, z].to_block_state_identifier()
            if state == AIR:
                continue
            if state not in states:
                states.append(state)
            local[region.x + x - low[0], region.y + y - low[1], region.z + z - low[2]] = states.index(state)
    return _air_first(local, states)


# --------------------------------------------------------------------------------------------- .mcfunction


def _fill_boxes(shape: tuple[int, int, int]) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Inclusive (low, high) boxes tiling the volume, each within FILL_LIMIT blocks: y slabs, or z rows of a layer."""
    width, height, length = shape
    if width * length <= FILL_LIMIT:
        step = FILL_LIMIT // (width * length)
        return [((0, y, 0), (width - 1, min(y + step, height) - 1, length - 1)) for y in range(0, height, step)]
    step = FILL_LIMIT // width  # width <= 32767, so a row always fits
    return [((0, y, z), (width - 1, y, min(z + step, length) - 1))
            for y in range(height) for z in range(0, length, step)]


def write_mcfunction(path: str, grid, block_ids: Sequence[str], *, origin: Sequence[int] = (0, 0, 0),
                     clear: bool = True, name: str = "") -> str:
    """Writes one `setblock ~x ~y ~z id` per non-air cell, shifted by `origin`, after a header comment and
    (when `clear`) `fill ... minecraft:air` lines emptying the volume first; returns the path.

    Run it with `/function namespace:name` from the spot that becomes the grid's minimum corner (plus `origin`).
    """
    grid = _check_grid(grid, block_ids)
    if len(origin) != 3 or not all(isinstance(v, (int, np.integer)) for v in origin):
        raise ConfigError(f"mcfunction origin {origin!r}: use three integers")
    ox, oy, oz = (int(v) for v in origin)
    _, used = _compact(grid, block_ids)
    lines = [f"# {name or 'DreamCraft'}: {_describe(grid)}, written by {DEFAULT_AUTHOR}",
             "# size {} {} {} origin {} {} {}".format(*grid.shape, ox, oy, oz),
             f"# palette: {', '.join(used)}"]
    if clear:
        lines += [f"fill ~{lo[0] + ox} ~{lo[1] + oy} ~{lo[2] + oz} ~{hi[0] + ox} ~{hi[1] + oy} ~{hi[2] + oz} {AIR}"
                  for lo, hi in _fill_boxes(grid.shape)]
    by_layer = grid.transpose(1, 0, 2)  # bottom layer first: sand and gravel need what is under them
    lines += [f"setblock ~{x + ox} ~{y + oy} ~{z + oz} {block_ids[by_layer[y, x, z]]}"
              for y, x, z in np.argwhere(by_layer != 0).tolist()]
    commands = sum(not line.startswith("#") for line in lines)
    if commands > COMMAND_CHAIN_LIMIT:
        logging.warning("%s: %d commands exceed the default maxCommandChainLength (%d); raise that gamerule "
                        "before running it", path, commands, COMMAND_CHAIN_LIMIT)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


_SIZE_COMMENT = re.compile(r"#\s*size\s+(\d+)\s+(\d+)\s+(\d+)\s+origin\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s*$")
_BLOCK_ARG = re.compile(r"(?P<state>[a-z0-9_.:/-]+(?:\[[^\]]*\])?)(?P<nbt>\{.*\})?(?:\s+(?P<mode>.+?))?\s*")


def _coordinate(token: str, kinds: set[str], where: str) -> int:
    if token.startswith("^"):
        raise UserError(f"{where}: local coordinates (^) are not supported, use ~ or absolute ones")
    relative = token.startswith("~")
    kinds.add("relative" if relative else "absolute")
    if len(kinds) > 1:
        raise UserError(f"{where}: the file mixes relative (~) and absolute coordinates")
    try:
        return int(token[1:] or 0) if relative else int(token)
    except ValueError:
        raise UserError(f"{where}: coordinate {token!r} is not a whole number") from None


def _read_mcfunction(path: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Runs the file's setblock and fill commands on an empty world; the volume is the union of what they touch
    (and of the box in a `# size X Y Z origin x y z` header, which keeps air borders when nothing cleared them)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    cells: dict[tuple[int, int, int], str] = {}
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    kinds: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line, where = line.strip().removeprefix("/"), f"line {number}"
        if not line or line.startswith("#"):
            if m := _SIZE_COMMENT.match(line):
                size, origin = np.array(m.groups()[:3], int), np.array(m.groups()[3:], int)
                if size.min() > 0:
                    boxes.append((origin, origin + size - 1))
            continue
        words = line.split(None, 7)
        count = {"setblock": 3, "fill": 6}.get(words[0])
        if count is None:
            raise UserError(f"{where}: only setblock and fill commands are understood, got {words[0]!r}")
        words = line.split(None, count + 1)
        if len(words) < count + 2:
            raise UserError(f"{where}: {words[0]} needs {count} coordinates and a block")
        position = np.array([_coordinate(t, kinds, where) for t in words[1:count + 1]])
        match = _BLOCK_ARG.fullmatch(words[-1])
        if not match:
            raise UserError(f"{where}: cannot read the block {words[-1]!r}")
        state, mode = _normalize_state(match["state"]), match["mode"] or "replace"
        if count == 3:
            low = high = position
            if mode not in ("replace", "destroy", "keep"):
                raise UserError(f"{where}: setblock mode {mode!r} is not supported")
        else:
            low, high = np.minimum(position[:3], position[3:]), np.maximum(position[:3], position[3:])
            if mode not in ("replace", "destroy", "keep"):  # hollow, outline, replace <filter>
                raise UserError(f"{where}: fill mode {mode!r} is not supported (replace, destroy or keep)")
        boxes.append((low, high))
        if block_id(state) in _AIR_LIKE:
            if mode != "keep":
                for key in [k for k in cells if all(low[i] <= k[i] <= high[i] for i in range(3))]:
                    del cells[key]
            continue
        for x in range(low[0], high[0] + 1):
            for y in range(low[1], high[1] + 1):
                for z in range(low[2], high[2] + 1):
                    if mode != "keep" or (x, y, z) not in cells:
                        cells[(x, y, z)] = state
    if not boxes:
        raise UserError("no setblock or fill commands")
    low = np.min([b[0] for b in boxes], axis=0)
    high = np.max([b[1] for b in boxes], axis=0)
    states = [AIR] + list(dict.fromkeys(cells.values()))
    local = np.zeros(high - low + 1, np.int64)
    for (x, y, z), state in cells.items():
        local[x - low[0], y - low[1], z - low[2]] = states.index(state)
    return _air_first(local, states)


# -------------------------------------------------------------------------------------------------- all formats


@gin.configurable("minecraft_export", denylist=["out_dir", "stem", "grid", "block_ids"])
def export_all(out_dir: str, stem: str, grid, block_ids: Sequence[str], *, name: str | None = None,
               author: str = DEFAULT_AUTHOR, description: str = "", data_version: int = DATA_VERSION,
               origin: Sequence[int] = (0, 0, 0), clear: bool = True) -> dict[str, str]:
    """Writes `<stem>.schem`, `<stem>.litematic` and `<stem>.mcfunction` under `out_dir`.

    `block_ids` is the palette's id tuple (`Palette.ids`); `origin` and `clear` are for the .mcfunction.
    Returns {"schem": path, "litematic": path, "mcfunction": path}.
    """
    if isinstance(data_version, bool) or not isinstance(data_version, int) or data_version <= 0:
        raise ConfigError(f"minecraft_export.data_version {data_version!r}: use a positive Minecraft data version "
                          f"(e.g. {DATA_VERSION} for Java 1.20.1)")
    name = stem if name is None else name
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, stem)
    return {
        "schem": write_schem(base + ".schem", grid, block_ids, name=name, author=author,
                             data_version=data_version),
        "litematic": write_litematic(base + ".litematic", grid, block_ids, name=name, author=author,
                                     description=description, data_version=data_version),
        "mcfunction": write_mcfunction(base + ".mcfunction", grid, block_ids, origin=origin, clear=clear, name=name),
    }


_READERS = {".schem": _read_schem, ".litematic": _read_litematic, ".mcfunction": _read_mcfunction}


def read_back(path: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """(grid [x, y, z] of indices into ids, ids) from a .schem / .litematic / .mcfunction file.

    ids[0] is minecraft:air; the others are the block states the file uses, in file order, as written there
    (with "[properties]" when the file has them; ours never do). Bad or missing files raise UserError.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in _READERS:
        raise UserError(f"structure file {path}: unknown format {ext or '(no extension)'!r}, use one of {FORMATS}")
    if not os.path.isfile(path):
        raise UserError(f"structure file {path} not found")
    try:
        return _READERS[ext](path)
    except UserError as e:
        raise UserError(f"structure file {path}: {e}") from None
    except Exception as e:  # pylint: disable=broad-except  # the parsers fail on garbage in many ways
        detail = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise UserError(f"structure file {path}: not a readable {ext} file ({type(e).__name__}"
                        f"{': ' + detail if detail else ''})") from e


def load_structure(path: str, palette: Palette) -> np.ndarray:
    """The structure in a .schem / .litematic / .mcfunction file as a hard grid of `palette` indices.

    Block states lose their properties ("minecraft:oak_stairs[facing=north]" -> "minecraft:oak_stairs") and
    cave_air / void_air count as air; ids missing from the palette raise UserError listing them.
    """
    grid, states = read_back(path)
    ids = [AIR if block_id(s) in _AIR_LIKE else block_id(s) for s in states]
    known = palette.ids
    unknown = sorted({i for i in ids if i not in known})
    if unknown:
        raise UserError(f"structure file {path}: blocks not in the palette: {', '.join(unknown)} "
                        f"(add them to the palette file or replace them in the structure)")
    lookup = np.asarray([known.index(i) for i in ids], np.int32)
    return lookup[grid]
