"""tools/render_structure: any structure file to PNG views and a turntable GIF."""

import pytest
from PIL import Image

from libs.envs.voxels import export
from libs.envs.voxels.palette import load_palette
from libs.envs.voxels.structures import reference_structure
from tests.conftest import run_binary


@pytest.mark.slow
def test_a_schematic_renders_to_views_and_a_gif(tmp_path):
    palette = load_palette()
    path = export.export_all(str(tmp_path), "tower", reference_structure(palette, "tower", 8), palette.ids)["schem"]
    proc = run_binary("tools.render_structure", f"--structure={path}", f"--out={tmp_path / 'tower'}", "--views=3",
                      "--size=32")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Image.open(tmp_path / "tower.png").size == (96, 32)
    assert Image.open(tmp_path / "tower.gif").n_frames == 24
    missing = run_binary("tools.render_structure", f"--structure={tmp_path / 'none.schem'}")
    assert missing.returncode == 2 and "not found" in missing.stderr
