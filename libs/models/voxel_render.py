"""A differentiable renderer of block grids: orbit cameras, exact ray-voxel traversal, alpha compositing.

Rays are traced through the grid [0, X] x [0, Y] x [0, Z] (one unit per block, y up) with the Amanatides-Woo
traversal, which visits every cell a ray crosses exactly once (at most X + Y + Z of them). The traversal depends
only on the cameras, so it is computed once per set of rays (`trace`) and reused; rendering a grid is then a
gather and a composite (`composite`), differentiable with respect to the per-cell opacity and colour.

Shading is texture-free and Minecraft-like: the face a ray enters a block through sets a brightness (top 1.0,
x sides 0.8, z sides 0.6, bottom 0.5). Colours are premultiplied by opacity, so a cell's soft mixture of blocks
renders as the expectation of their light.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Brightness by the face a ray enters through, indexed [axis, step > 0]: a ray stepping down (-y) hits a top face.
FACE_SHADE = np.asarray([[0.8, 0.8], [1.0, 0.5], [0.6, 0.6]], np.float32)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["origins", "rotations"],
                   meta_fields=["fov_degrees"])
@dataclasses.dataclass(frozen=True)
class Cameras:
    """Pinhole cameras: positions (n, 3), world-from-camera rotations (n, 3, 3) with columns right, up, forward."""

    origins: jax.Array
    rotations: jax.Array
    fov_degrees: float = 40.0

    def __len__(self) -> int:
        return int(self.origins.shape[0])

    def take(self, index) -> Cameras:
        return Cameras(self.origins[index], self.rotations[index], self.fov_degrees)

    def scaled(self, factor: float) -> Cameras:
        """The same views of a grid `factor` times as fine (its cells 1/factor the size, the same extent)."""
        return Cameras(self.origins * factor, self.rotations, self.fov_degrees)


def orbit_distance(grid_shape, fov_degrees: float, margin: float = 1.08) -> float:
    """How far from the grid's centre a camera must be for the whole grid to fit in its view."""
    radius = 0.5 * math.sqrt(sum(s * s for s in grid_shape))
    return margin * radius / math.sin(math.radians(fov_degrees) / 2)


def orbit_cameras(azimuths, elevations, grid_shape, fov_degrees: float = 40.0, distance: float | None = None
                  ) -> Cameras:
    """Cameras on a sphere around the grid's centre looking at it; angles in degrees, elevation above the ground."""
    az = jnp.radians(jnp.asarray(azimuths, jnp.float32))
    el = jnp.radians(jnp.asarray(elevations, jnp.float32))
    centre = jnp.asarray(grid_shape, jnp.float32) / 2
    distance = distance or orbit_distance(grid_shape, fov_degrees)
    offset = jnp.stack([jnp.cos(el) * jnp.sin(az), jnp.sin(el), jnp.cos(el) * jnp.cos(az)], -1) * distance
    origins = centre + offset
    forward = -offset / jnp.linalg.norm(offset, axis=-1, keepdims=True)
    right = jnp.cross(forward, jnp.asarray([0.0, 1.0, 0.0]))
    right = right / jnp.linalg.norm(right, axis=-1, keepdims=True)
    up = jnp.cross(right, forward)
    return Cameras(origins, jnp.stack([right, up, forward], -1), fov_degrees)


def orbit_angles(cameras: Cameras, grid_shape) -> tuple[np.ndarray, np.ndarray]:
    """(azimuths, elevations) in degrees of orbit cameras around the grid's centre (the inverse of orbit_cameras)."""
    offset = np.asarray(cameras.origins) - np.asarray(grid_shape, np.float32) / 2
    azimuths = np.degrees(np.arctan2(offset[:, 0], offset[:, 2])) % 360
    elevations = np.degrees(np.arcsin(offset[:, 1] / np.linalg.norm(offset, axis=-1)))
    return azimuths, elevations


def ring_cameras(views: int, elevations=(20.0, 45.0), grid_shape=(16, 16, 16), fov_degrees: float = 40.0,
                 azimuth_offset: float = 0.0) -> Cameras:
    """`views` cameras spread evenly in azimuth, cycling through `elevations` (the training and test rigs)."""
    az = azimuth_offset + np.arange(views) * 360.0 / views
    el = np.asarray(elevations, np.float32)[np.arange(views) % len(elevations)]
    return orbit_cameras(az, el, grid_shape, fov_degrees)


def random_orbit_cameras(key: jax.Array, n: int, grid_shape, elevation_range=(10.0, 60.0),
                         fov_degrees: float = 40.0) -> Cameras:
    """`n` cameras at uniform random azimuths and elevations in `elevation_range` (degrees)."""
    k1, k2 = jax.random.split(key)
    az = jax.random.uniform(k1, (n,), minval=0.0, maxval=360.0)
    el = jax.random.uniform(k2, (n,), minval=elevation_range[0], maxval=elevation_range[1])
    return orbit_cameras(az, el, grid_shape, fov_degrees)


def camera_rays(cameras: Cameras, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    """Ray origins and unit directions, each (n, height, width, 3), through the pixel centres."""
    half = math.tan(math.radians(cameras.fov_degrees) / 2)
    u = ((jnp.arange(width) + 0.5) / width * 2 - 1) * half * width / height
    v = (1 - (jnp.arange(height) + 0.5) / height * 2) * half
    local = jnp.stack(jnp.broadcast_arrays(u[None, :], v[:, None], jnp.ones((height, width))), -1)
    dirs = jnp.einsum("nij,hwj->nhwi", cameras.rotations, local)
    dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    origins = jnp.broadcast_to(cameras.origins[:, None, None, :], dirs.shape)
    return origins, dirs


class Trace(NamedTuple):
    """The cells each ray crosses, in order: flat indices (rays, steps), -1 past the grid, and face shading."""

    cells: jax.Array
    shade: jax.Array


def trace(origins: jax.Array, dirs: jax.Array, grid_shape) -> Trace:
    """Amanatides-Woo traversal of rays (..., 3) through the grid; jit-friendly, no gradients."""
    batch = origins.shape[:-1]
    o = origins.reshape(-1, 3).astype(jnp.float32)
    d = dirs.reshape(-1, 3).astype(jnp.float32)
    size = jnp.asarray(grid_shape, jnp.float32)
    safe = jnp.where(jnp.abs(d) < 1e-9, 1e-9, d)
    inv = 1.0 / safe
    t0, t1 = (0.0 - o) * inv, (size - o) * inv
    t_near, t_far = jnp.minimum(t0, t1), jnp.maximum(t0, t1)
    t_enter = jnp.maximum(t_near.max(-1), 0.0)
    hits = t_far.min(-1) > t_enter
    entry_axis = jnp.argmax(t_near, -1)
    point = o + (t_enter[:, None] + 1e-4) * d
    cell = jnp.clip(jnp.floor(point), 0, size - 1).astype(jnp.int32)
    step = jnp.where(d >= 0, 1, -1).astype(jnp.int32)
    t_max = jnp.where(jnp.abs(d) < 1e-9, jnp.inf, ((cell + (step > 0)).astype(jnp.float32) - o) * inv)
    t_delta = jnp.where(jnp.abs(d) < 1e-9, jnp.inf, jnp.abs(inv))
    shade_table = jnp.asarray(FACE_SHADE)
    dims = jnp.asarray(grid_shape, jnp.int32)
    strides = jnp.asarray([grid_shape[1] * grid_shape[2], grid_shape[2], 1], jnp.int32)
    rows = jnp.arange(o.shape[0])

    def body(carry, _):
        cell, t_max, axis, alive = carry
        inside = alive & jnp.all((cell >= 0) & (cell < dims), -1)
        flat = jnp.where(inside, cell @ strides, -1)
        shade = shade_table[axis, (step[rows, axis] > 0).astype(jnp.int32)]
        nxt = jnp.argmin(t_max, -1)
        cell = cell.at[rows, nxt].add(step[rows, nxt])
        t_max = t_max.at[rows, nxt].add(t_delta[rows, nxt])
        return (cell, t_max, nxt, inside), (flat, shade)

    steps = int(sum(grid_shape))
    _, (cells, shade) = jax.lax.scan(body, (cell, t_max, entry_axis, hits), None, length=steps)
    return Trace(cells.T.reshape(*batch, steps), shade.T.reshape(*batch, steps))


def composite(tr: Trace, alpha: jax.Array, color: jax.Array, background=(1.0, 1.0, 1.0)
              ) -> tuple[jax.Array, jax.Array]:
    """Front-to-back compositing of per-cell opacity (X, Y, Z) and premultiplied colour (X, Y, Z, 3).

    Returns rgb (..., 3) and the accumulated opacity (...), differentiable in `alpha` and `color`.
    """
    valid = tr.cells >= 0
    flat = jnp.where(valid, tr.cells, 0)
    a = jnp.where(valid, alpha.reshape(-1)[flat], 0.0)
    c = color.reshape(-1, 3)[flat] * (tr.shade * valid)[..., None]
    transmit = jnp.cumprod(1.0 - a, axis=-1)
    before = jnp.concatenate([jnp.ones_like(transmit[..., :1]), transmit[..., :-1]], -1)
    rgb = jnp.sum(before[..., None] * c, axis=-2) + transmit[..., -1:] * jnp.asarray(background, jnp.float32)
    return rgb, 1.0 - transmit[..., -1]


def cell_appearance(probs: jax.Array, colors, opacities) -> tuple[jax.Array, jax.Array]:
    """Per-cell opacity and premultiplied colour of a soft grid (X, Y, Z, C) under a palette's colours/opacities."""
    weights = probs * jnp.asarray(opacities, probs.dtype)
    return weights.sum(-1), weights @ jnp.asarray(colors, probs.dtype)


def one_hot_grid(grid, num_blocks: int) -> jax.Array:
    """A hard grid of palette indices as a soft grid (X, Y, Z, C)."""
    return jax.nn.one_hot(jnp.asarray(grid), num_blocks, dtype=jnp.float32)


def render_images(probs: jax.Array, colors, opacities, cameras: Cameras, height: int, width: int,
                  background=(1.0, 1.0, 1.0)) -> tuple[jax.Array, jax.Array]:
    """Images (n, H, W, 3) and opacity masks (n, H, W) of a soft or one-hot grid from `cameras`."""
    origins, dirs = camera_rays(cameras, height, width)
    alpha, color = cell_appearance(probs, colors, opacities)
    return composite(trace(origins, dirs, probs.shape[:3]), alpha, color, background)


# Compiled once per (shape, image size, background): previews, turntables and targets render many grids.
render_images_jit = jax.jit(render_images, static_argnums=(4, 5, 6))
