"""The palette file and the reference structures."""

import json

import numpy as np
import pytest

from libs.envs.voxels import constraints as cs
from libs.envs.voxels import export
from libs.envs.voxels.palette import load_palette
from libs.envs.voxels.structures import block_histogram, reference_structure
from libs.train.errors import ConfigError, UserError

PALETTE = load_palette()


def test_the_palette_holds_real_block_ids_with_air_first():
    assert PALETTE.ids[0] == "minecraft:air" and PALETTE.opacities[0] == 0
    assert all(i.startswith("minecraft:") for i in PALETTE.ids) and len(set(PALETTE.ids)) == len(PALETTE)
    assert PALETTE.opacities[PALETTE.index("glass")] < 1 and PALETTE.colors.shape == (len(PALETTE), 3)
    small = load_palette(blocks=["glass", "stone"])
    assert small.ids == ("minecraft:air", "minecraft:glass", "minecraft:stone")


@pytest.mark.parametrize("blocks, message", [
    ([{"id": "stone", "color": "grey"}], "colour"),
    ([{"id": "stone", "color": "#777777", "opacity": 0}], "opacity"),
    ([{"id": "stone", "color": "#777777"}, {"id": "minecraft:stone", "color": "#777777"}], "twice"),
])
def test_a_bad_palette_file_names_the_problem(tmp_path, blocks, message):
    path = tmp_path / "palette.json"
    path.write_text(json.dumps({"blocks": blocks}))
    with pytest.raises(UserError, match=message):
        load_palette(str(path))


@pytest.mark.parametrize("name, size", [("house", 16), ("house", 24), ("tower", 8)])
def test_reference_structures_stand_on_the_ground_in_one_piece(name, size):
    grid = reference_structure(PALETTE, name, size)
    assert grid.shape == (size,) * 3 and (grid[:, 0, :] > 0).any()
    metrics = cs.evaluate(cs.build(PALETTE, [cs.Connectivity]), grid)
    assert metrics["connectivity/satisfied"] == 1.0 and metrics["connectivity/components"] == 1
    assert abs(sum(block_histogram(grid, PALETTE).values()) - 1) < 1e-3


def test_a_reference_can_come_from_a_schematic_file(tmp_path):
    grid = reference_structure(PALETTE, "tower", 8)
    path = export.export_all(str(tmp_path), "tower", grid, PALETTE.ids)["schem"]
    np.testing.assert_array_equal(reference_structure(PALETTE, path=path), grid)
    with pytest.raises(ConfigError, match="castle"):
        reference_structure(PALETTE, "castle")
    with pytest.raises(ConfigError, match="at least 12"):
        reference_structure(PALETTE, "house", 8)
