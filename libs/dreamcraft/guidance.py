"""What tells the field what to build: one interface, several kinds of guidance.

A guidance chooses the rays rendered at each step and scores what they show:

    data = guidance.data()                         # arrays the jitted step receives (targets, traced rays, ...)
    trace, aux = guidance.sample(data, key)        # inside jit: the rays of this step, as a voxel_render.Trace
    loss, metrics = guidance.loss(rgb, alpha, aux) # inside jit: rendered colour (..., 3) and opacity (...)

- `Photometric`: multi-view target images (rendered from a reference structure, or PNGs someone supplies);
- `Silhouette`: the same views' opacity masks only; block types are then left to the constraints;
- `TextImage`: a CLIP-style text-image scorer over random orbit views (`libs/models/clip.py`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import gin
import jax
import jax.numpy as jnp
import numpy as np

from libs.models import voxel_render as vr
from libs.train.errors import ConfigError, UserError


@gin.configurable("target_views")
def target_cameras(grid_shape, views: int = 24, elevations=(15.0, 40.0), fov_degrees: float = 40.0,
                   held_out: bool = False) -> vr.Cameras:
    """The training views (an azimuth ring cycling `elevations`); held_out: the evaluation views, halfway between
    the training azimuths at the mean elevation, so the hard grid is scored on views it was not fitted to."""
    if held_out:
        return vr.ring_cameras(views, (float(np.mean(elevations)),), grid_shape, fov_degrees,
                               azimuth_offset=180.0 / views)
    return vr.ring_cameras(views, elevations, grid_shape, fov_degrees)


class Guidance:
    """Base class; see the module docstring."""

    name = "guidance"
    uses_color = True

    def data(self) -> dict[str, Any]:
        return {}

    def sample(self, data: dict[str, Any], key: jax.Array) -> tuple[vr.Trace, dict[str, Any]]:
        raise NotImplementedError

    def loss(self, rgb: jax.Array, alpha: jax.Array, aux: dict[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
        raise NotImplementedError


class _ViewTargets(Guidance):
    """Guidance from fixed views: every pixel's traversal is traced once; each step samples `rays_per_step`."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, cameras: vr.Cameras, grid_shape,
                 rays_per_step: int = 4096):
        self.images, self.masks, self.cameras = np.asarray(images, np.float32), np.asarray(masks, np.float32), cameras
        self.grid_shape = tuple(grid_shape)
        self.rays_per_step = rays_per_step
        height, width = self.images.shape[1:3]
        origins, dirs = vr.camera_rays(cameras, height, width)
        tr = jax.jit(vr.trace, static_argnums=2)(origins.reshape(-1, 3), dirs.reshape(-1, 3), self.grid_shape)
        self._trace = jax.device_get(tr)

    @property
    def num_rays(self) -> int:
        return int(self._trace.cells.shape[0])

    def data(self) -> dict[str, Any]:
        return {"cells": self._trace.cells, "shade": self._trace.shade,
                "rgb": self.images.reshape(-1, 3), "mask": self.masks.reshape(-1)}

    def sample(self, data, key):
        idx = jax.random.randint(key, (self.rays_per_step,), 0, data["cells"].shape[0])
        return vr.Trace(data["cells"][idx], data["shade"][idx]), {"rgb": data["rgb"][idx], "mask": data["mask"][idx]}


@gin.configurable("photometric")
class Photometric(_ViewTargets):
    """Mean squared error between rendered and target colours (the offline default)."""

    name = "photometric"

    def loss(self, rgb, alpha, aux):
        mse = jnp.mean((rgb - aux["rgb"]) ** 2)
        return mse, {"render_mse": mse}


@gin.configurable("silhouette")
class Silhouette(_ViewTargets):
    """Binary cross-entropy between the rendered opacity and the target masks; colours are unconstrained."""

    name = "silhouette"
    uses_color = False

    def loss(self, rgb, alpha, aux):
        a = jnp.clip(alpha, 1e-5, 1 - 1e-5)
        bce = -jnp.mean(aux["mask"] * jnp.log(a) + (1 - aux["mask"]) * jnp.log(1 - a))
        return bce, {"mask_bce": bce, "mask_mse": jnp.mean((alpha - aux["mask"]) ** 2)}


@gin.configurable("text_image")
class TextImage(Guidance):
    """1 - cosine similarity between a CLIP-style scorer's embeddings of random orbit renders and of a prompt.

    `scorer` is a `libs.models.clip.ClipScorer` (real weights from a folder the user points to, or the tiny
    random stand-in, which it labels as such).
    """

    name = "text_image"

    def __init__(self, scorer, grid_shape, views_per_step: int = 2, image_size: int = 64,
                 elevation_range=(10.0, 50.0), fov_degrees: float = 40.0):
        self.scorer, self.grid_shape = scorer, tuple(grid_shape)
        self.views_per_step, self.image_size = views_per_step, image_size
        self.elevation_range, self.fov_degrees = tuple(elevation_range), fov_degrees

    @property
    def rays_per_step(self) -> int:
        return self.views_per_step * self.image_size ** 2

    def data(self):
        return {"scorer": self.scorer.params}

    def sample(self, data, key):
        cams = vr.random_orbit_cameras(key, self.views_per_step, self.grid_shape, self.elevation_range,
                                       self.fov_degrees)
        origins, dirs = vr.camera_rays(cams, self.image_size, self.image_size)
        return vr.trace(origins, dirs, self.grid_shape), {"scorer": data["scorer"]}

    def loss(self, rgb, alpha, aux):
        similarity = self.scorer.score_with(aux["scorer"], rgb)
        return 1.0 - jnp.mean(similarity), {"clip_similarity": jnp.mean(similarity)}


def render_targets(grid: np.ndarray, palette, cameras: vr.Cameras, image_size: int,
                   background=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Target images (n, H, W, 3) and masks (n, H, W) of a hard reference grid."""
    probs = vr.one_hot_grid(grid, len(palette))
    rgb, alpha = vr.render_images_jit(probs, palette.colors, palette.opacities, cameras, image_size, image_size,
                                      tuple(background))
    return np.asarray(rgb), np.asarray(alpha)


def load_target_pngs(folder: str, grid_shape) -> tuple[np.ndarray, np.ndarray, vr.Cameras]:
    """Targets someone supplies: `folder/cameras.json` ({"fov_degrees": f, "views": [{"file", "azimuth",
    "elevation"}, ...]}, angles in degrees, cameras on the orbit that frames the grid) and RGBA or RGB PNGs
    (transparent or white = background)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    meta_path = os.path.join(folder, "cameras.json")
    if not os.path.exists(meta_path):
        raise UserError(f"target folder {folder}: no cameras.json (views with file, azimuth, elevation)")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        views = meta["views"]
        az = [float(v["azimuth"]) for v in views]
        el = [float(v["elevation"]) for v in views]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{meta_path}: expected {{\"views\": [{{\"file\", \"azimuth\", \"elevation\"}}]}} "
                        f"({type(e).__name__}: {e})") from None
    images, masks = [], []
    for v in views:
        path = os.path.join(folder, str(v.get("file")))
        try:
            im = np.asarray(Image.open(path).convert("RGBA"), np.float32) / 255.0
        except (OSError, ValueError) as e:
            raise UserError(f"target image {path}: {e}") from None
        mask = im[..., 3] * (np.abs(im[..., :3] - 1.0).max(-1) > 0.02)
        images.append(im[..., :3] * im[..., 3:] + (1 - im[..., 3:]))
        masks.append(mask)
    if len({im.shape for im in images}) != 1:
        raise UserError(f"target images in {folder} differ in size: {sorted({im.shape for im in images})}")
    cams = vr.orbit_cameras(az, el, grid_shape, float(meta.get("fov_degrees", 40.0)))
    return np.stack(images), np.stack(masks), cams


GUIDANCES = {"photometric": Photometric, "silhouette": Silhouette, "text_image": TextImage}


def check_kind(kind: str) -> None:
    if kind not in GUIDANCES:
        raise ConfigError(f"dreamcraft.guidance {kind!r}: use one of {sorted(GUIDANCES)}")
