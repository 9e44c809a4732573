"""Minecraft exports: every format round-trips a grid cell by cell; foreign files map onto a palette."""

from __future__ import annotations

import gzip
import os
import pathlib

import litemapy
import mcschematic
import nbtlib
import numpy as np
import pytest
from nbtlib.tag import ByteArray, Compound, Int, IntArray, List, Short

from libs.envs.voxels import export
from libs.envs.voxels.palette import AIR, Block, Palette, load_palette
from libs.train.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BLOCKS = ["stone", "oak_planks", "glass", "water", "bricks", "oak_log"]
SHAPE = (7, 5, 6)


@pytest.fixture(scope="module")
def palette() -> Palette:
    return load_palette(os.path.join(REPO_ROOT, "configs/dreamcraft/palette.json"), blocks=BLOCKS)


@pytest.fixture(scope="module")
def grid(palette) -> np.ndarray:
    """A random 7x5x6 grid over the palette with air on the x=0, top (y=4) and z=5 faces."""
    g = np.random.default_rng(7).integers(0, len(palette), SHAPE)
    g[0, :, :] = 0
    g[:, -1, :] = 0
    g[:, :, -1] = 0
    g[6, 0, 0] = g[6, 3, 4] = g[1, 3, 0] = palette.index("glass")  # solid cells on the other faces
    return g


@pytest.fixture(scope="module")
def written(tmp_path_factory, grid, palette) -> dict[str, str]:
    return export.export_all(str(tmp_path_factory.mktemp("export")), "house", grid, palette.ids,
                             author="tester", description="a test grid")


def as_ids(grid, ids) -> np.ndarray:
    return np.asarray(ids, dtype=object)[np.asarray(grid)]


def test_export_all_writes_the_three_files(written):
    assert sorted(written) == ["litematic", "mcfunction", "schem"]
    for fmt, path in written.items():
        assert path.endswith("house." + fmt) and os.path.getsize(path) > 0


@pytest.mark.parametrize("fmt", ["schem", "litematic", "mcfunction"])
def test_round_trip_cell_by_cell(written, grid, palette, fmt):
    back, ids = export.read_back(written[fmt])
    assert ids[0] == AIR
    assert back.shape == grid.shape
    np.testing.assert_array_equal(as_ids(back, ids), as_ids(grid, palette.ids))
    np.testing.assert_array_equal(export.load_structure(written[fmt], palette), grid)


def test_schem_follows_sponge_v2(written, grid, palette):
    """Field names, tag types and the x + z*W + y*W*L order, read from the raw NBT (not through our reader)."""
    f = nbtlib.load(written["schem"])
    assert f.root_name == "Schematic" and f.gzipped
    expected_types = {"Version": Int, "DataVersion": Int, "Width": Short, "Height": Short, "Length": Short,
                      "Offset": IntArray, "PaletteMax": Int, "Palette": Compound, "BlockData": ByteArray,
                      "Metadata": Compound}
    for key, tag in expected_types.items():
        assert isinstance(f[key], tag), key
    assert (int(f["Version"]), int(f["DataVersion"])) == (2, export.DATA_VERSION)
    assert (int(f["Width"]), int(f["Height"]), int(f["Length"])) == SHAPE
    assert list(f["Offset"]) == [0, 0, 0]
    assert int(f["PaletteMax"]) == len(f["Palette"])
    assert f["Metadata"]["Author"] == "tester" and f["Metadata"]["Name"] == "house"
    names = {int(i): s for s, i in f["Palette"].items()}
    data = np.asarray(f["BlockData"]).view(np.uint8)  # < 128 palette entries: one byte a block
    width, _, length = SHAPE
    for x, y, z in [(6, 0, 0), (6, 3, 4), (1, 3, 0), (3, 2, 1), (0, 0, 0)]:
        assert names[int(data[x + z * width + y * width * length])] == palette.ids[grid[x, y, z]]


def test_schem_reads_in_mcschematic(written, grid, palette):
    """A third-party Sponge reader sees the same block at every cell."""
    other = mcschematic.MCSchematic(written["schem"])
    for x, y, z in np.ndindex(*SHAPE):
        assert other.getBlockStateAt((x, y, z)) == palette.ids[grid[x, y, z]]


def test_schem_varints_past_127_palette_entries(tmp_path):
    """200 synthetic ids (valid syntax, not real blocks) force two-byte varints."""
    ids = (AIR,) + tuple(f"minecraft:synthetic_{i}" for i in range(200))
    grid = np.random.default_rng(1).permutation(np.arange(300) % 201).reshape(10, 3, 10)
    path = export.write_schem(str(tmp_path / "wide.schem"), grid, ids)
    raw = nbtlib.load(path)
    assert len(raw["BlockData"]) > grid.size  # some varints took two bytes
    back, back_ids = export.read_back(path)
    np.testing.assert_array_equal(as_ids(back, back_ids), as_ids(grid, ids))
    other = mcschematic.MCSchematic(path)
    for x, y, z in [(0, 0, 0), (9, 2, 9), (4, 1, 7), (7, 2, 3)]:
        assert other.getBlockStateAt((x, y, z)) == ids[grid[x, y, z]]


def test_varint_codec_matches_spec_examples():
    encoded = export._encode_varints(np.array([0, 1, 127, 128, 300, 16384]))
    assert encoded == bytes([0, 1, 127, 0x80, 0x01, 0xAC, 0x02, 0x80, 0x80, 0x01])
    np.testing.assert_array_equal(export._decode_varints(np.frombuffer(encoded, np.uint8)),
                                  [0, 1, 127, 128, 300, 16384])


def test_litematic_metadata_and_region(written, grid):
    schematic = litemapy.Schematic.load(written["litematic"])
    assert (schematic.name, schematic.author, schematic.description) == ("house", "tester", "a test grid")
    assert schematic.mc_version == export.DATA_VERSION
    (region,) = schematic.regions.values()
    assert (region.width, region.height, region.length) == SHAPE
    assert region.count_blocks() == np.count_nonzero(grid)


def test_mcfunction_lines(written, grid, palette):
    lines = pathlib.Path(written["mcfunction"]).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#") and "7x5x6" in lines[0]
    commands = [line for line in lines if not line.startswith("#")]
    assert commands[0] == "fill ~0 ~0 ~0 ~6 ~4 ~5 minecraft:air"
    setblocks = [c.split() for c in commands[1:]]
    assert len(setblocks) == np.count_nonzero(grid) and all(c[0] == "setblock" for c in setblocks)
    heights = [int(c[2][1:]) for c in setblocks]
    assert heights == sorted(heights)  # bottom layer first
    for _, x, y, z, block in setblocks:
        assert palette.ids[grid[int(x[1:]), int(y[1:]), int(z[1:])]] == block


def test_mcfunction_origin_and_no_clear(tmp_path, grid, palette):
    path = export.write_mcfunction(str(tmp_path / "s.mcfunction"), grid, palette.ids, origin=(2, -1, 3),
                                   clear=False)
    text = pathlib.Path(path).read_text(encoding="utf-8")
    assert "fill" not in text
    x, y, z = np.argwhere(grid.transpose(1, 0, 2))[0][[1, 0, 2]]
    assert f"setblock ~{x + 2} ~{y - 1} ~{z + 3} {palette.ids[grid[x, y, z]]}" in text
    back, ids = export.read_back(path)  # the size header keeps the air borders
    np.testing.assert_array_equal(as_ids(back, ids), as_ids(grid, palette.ids))


def test_mcfunction_splits_big_fills(tmp_path, palette):
    grid = np.zeros((40, 30, 40), np.int32)
    grid[39, 29, 39] = 1
    path = export.write_mcfunction(str(tmp_path / "big.mcfunction"), grid, palette.ids)
    fills = [line.split() for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines()
             if line.startswith("fill")]
    volumes = [np.prod([int(b[1:]) - int(a[1:]) + 1 for a, b in zip(f[1:4], f[4:7])]) for f in fills]
    assert len(fills) > 1 and max(volumes) <= export.FILL_LIMIT and sum(volumes) == grid.size
    back, _ = export.read_back(path)
    assert back.shape == grid.shape and back[39, 29, 39] != 0 and np.count_nonzero(back) == 1


# ------------------------------------------------------------------------------------ files from elsewhere

STAIRS_PALETTE = Palette((Block(AIR, (0, 0, 0), 0.0), Block("minecraft:stone", (0.5, 0.5, 0.5), 1.0),
                          Block("minecraft:glass", (0.8, 0.9, 1.0), 0.35),
                          Block("minecraft:oak_stairs", (0.6, 0.5, 0.3), 1.0)))


def foreign_grid() -> np.ndarray:
    """3x2x4 over STAIRS_PALETTE, air on the whole top layer."""
    g = np.zeros((3, 2, 4), np.int32)
    g[:, 0, :] = np.array([[1, 2, 3, 1], [3, 0, 1, 2], [2, 2, 0, 3]])
    return g


def foreign_states(grid) -> np.ndarray:
    """The grid as the states another tool would write: stairs with properties, stone without namespace."""
    names = np.array(["minecraft:air", "stone", "minecraft:glass", "minecraft:oak_stairs[facing=north,half=bottom]"],
                     dtype=object)
    return names[grid]


@pytest.mark.parametrize("version", [2, 3])
def test_load_structure_schem_with_a_foreign_palette_order(tmp_path, version):
    grid = foreign_grid()
    states = foreign_states(grid)
    order = ["minecraft:glass", "minecraft:oak_stairs[facing=north,half=bottom]", "minecraft:air", "stone",
             "minecraft:gold_block"]  # air not first; an unused entry
    data = np.vectorize(order.index, otypes=[np.int8])(states).transpose(1, 2, 0).reshape(-1)
    palette_tag = Compound({s: Int(i) for i, s in enumerate(order)})
    body = {"Version": Int(version), "DataVersion": Int(3700), "Width": Short(3), "Height": Short(2),
            "Length": Short(4)}
    if version == 2:
        root = nbtlib.File({**body, "PaletteMax": Int(len(order)), "Palette": palette_tag,
                            "BlockData": ByteArray(data)}, gzipped=True, root_name="Schematic")
    else:  # v3 (WorldEdit 7.3+): everything inside a "Schematic" compound, blocks in "Blocks"
        root = nbtlib.File({"Schematic": Compound({**body, "Blocks": Compound({
            "Palette": palette_tag, "Data": ByteArray(data), "BlockEntities": List[Compound]()})})}, gzipped=True)
    path = str(tmp_path / "foreign.schem")
    root.save(path)
    np.testing.assert_array_equal(export.load_structure(path, STAIRS_PALETTE), grid)


def test_load_structure_litematic_with_a_foreign_palette_order(tmp_path):
    grid = foreign_grid()
    states = foreign_states(grid)
    region = litemapy.Region(0, 0, 0, *grid.shape)
    for x, y, z in reversed(list(np.ndindex(*grid.shape))):  # reverse order: the file's palette order differs
        if grid[x, y, z]:
            block, _, props = export._normalize_state(states[x, y, z]).partition("[")
            kv = dict(p.split("=") for p in props.rstrip("]").split(",")) if props else {}
            region[x, y, z] = litemapy.BlockState(block, **kv)
    path = str(tmp_path / "foreign.litematic")
    region.as_schematic(name="foreign").save(path)
    assert litemapy.Schematic.load(path).regions["foreign"].palette[1].id != "minecraft:stone"
    np.testing.assert_array_equal(export.load_structure(path, STAIRS_PALETTE), grid)


def test_load_structure_hand_written_mcfunction(tmp_path):
    path = tmp_path / "foreign.mcfunction"
    path.write_text("\n".join([
        "# built by hand",
        "fill ~ ~ ~ ~2 ~1 ~3 air",
        "fill ~2 ~ ~ ~ ~ ~3 stone",  # corners in either order
        "/setblock ~ ~ ~1 minecraft:oak_stairs[facing=north, half=bottom]",
        "setblock ~1 ~ ~ glass replace",
        "setblock ~1 ~ ~ stone keep",  # keep: the glass stays
        "setblock ~2 ~ ~2 minecraft:cave_air",
        "",
    ]))
    expected = np.zeros((3, 2, 4), np.int32)
    expected[:, 0, :] = STAIRS_PALETTE.index("stone")
    expected[0, 0, 1] = STAIRS_PALETTE.index("oak_stairs")
    expected[1, 0, 0] = STAIRS_PALETTE.index("glass")
    expected[2, 0, 2] = 0
    np.testing.assert_array_equal(export.load_structure(str(path), STAIRS_PALETTE), expected)


# --------------------------------------------------------------------------------------------------- errors


def test_unknown_blocks_are_listed_in_one_line(tmp_path, palette):
    ids = palette.ids + ("minecraft:diamond_block", "minecraft:oak_stairs")
    grid = np.zeros((3, 3, 3), np.int32)
    grid[0, 0, 0], grid[1, 1, 1], grid[2, 2, 2] = len(ids) - 2, len(ids) - 1, 1
    path = export.write_schem(str(tmp_path / "extra.schem"), grid, ids)
    with pytest.raises(UserError, match="diamond_block, minecraft:oak_stairs") as e:
        export.load_structure(path, palette)
    assert "extra.schem" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name, content, why", [
    ("garbage.schem", b"not a schematic at all", "not a readable .schem"),
    ("truncated.schem", None, "not a readable .schem"),  # the first half of a real file
    ("garbage.litematic", gzip.compress(b"\x0a\x00\x00\x01\x00\x01x\x05"), "not a readable .litematic"),
    ("bad.mcfunction", b"say hello\n", "line 1: only setblock and fill"),
    ("local.mcfunction", b"setblock ^ ^ ^1 stone\n", "local coordinates"),
    ("shape.nbt", b"", "unknown format"),
])
def test_bad_files_raise_user_error_naming_the_file(tmp_path, written, palette, name, content, why):
    if content is None:
        with open(written["schem"], "rb") as f:
            content = f.read()
        content = content[:len(content) // 2]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=name) as e:
        export.load_structure(str(path), palette)
    assert why in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path, palette):
    with pytest.raises(UserError, match="not found"):
        export.load_structure(str(tmp_path / "nope.litematic"), palette)


def test_writer_rejects_grids_that_do_not_index_the_ids(tmp_path, palette):
    with pytest.raises(ValueError, match="indices"):
        export.write_schem(str(tmp_path / "x.schem"), np.full((2, 2, 2), len(palette)), palette.ids)
    with pytest.raises(UserError, match="not Minecraft ids"):
        export.write_schem(str(tmp_path / "x.schem"), np.ones((2, 2, 2), int), (AIR, "Stone Block"))
