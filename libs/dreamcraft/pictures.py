"""PNG renders of structures from several views, side-by-side comparisons and turntable GIFs."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from libs.models import voxel_render as vr

def render_views(grid: np.ndarray, palette, cameras: vr.Cameras, size: int = 128) -> np.ndarray:
    """(n, size, size, 3) renders of a hard grid."""
    rgb, _ = vr.render_images_jit(vr.one_hot_grid(grid, len(palette)), palette.colors, palette.opacities, cameras, size, size,
                     (1.0, 1.0, 1.0))
    return np.asarray(rgb)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_row(path: str, images: np.ndarray, rows: Sequence[np.ndarray] = ()) -> str:
    """Writes images (n, H, W, 3) side by side (and further rows of the same shape below) as one PNG."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    strips = [np.concatenate(list(r), 1) for r in (images, *rows)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(to_uint8(np.concatenate(strips, 0))).save(path)
    return path


def preview(path: str, grid: np.ndarray, palette, views: int = 4, size: int = 128, elevation: float = 30.0) -> str:
    """`views` renders around the structure in one PNG."""
    cams = vr.ring_cameras(views, (elevation,), grid.shape, azimuth_offset=30.0)
    return save_row(path, render_views(grid, palette, cams, size))


def turntable(path: str, grid: np.ndarray, palette, frames: int = 24, size: int = 160, elevation: float = 30.0,
              seconds: float = 3.0) -> str:
    """A looping GIF of the structure turning once around its vertical axis."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    cams = vr.ring_cameras(frames, (elevation,), grid.shape)
    images = [Image.fromarray(im) for im in to_uint8(render_views(grid, palette, cams, size))]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 * seconds / frames), loop=0)
    return path
