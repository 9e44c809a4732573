"""The voxel renderer: traversal against dense sampling, shading, compositing and its gradients, cameras."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.models import voxel_render as vr

SHAPE = (5, 4, 6)


def _dense_cells(origin, direction, shape, samples=20000, far=60.0):
    """The cells a ray passes through, in order, by sampling it densely (the slow reference)."""
    points = origin + np.linspace(0, far, samples)[:, None] * direction
    cells = np.floor(points).astype(int)
    inside = np.all((cells >= 0) & (cells < shape), 1)
    order = []
    for c in cells[inside]:
        flat = (c[0] * shape[1] + c[1]) * shape[2] + c[2]
        if not order or order[-1] != flat:
            order.append(flat)
    return order


def test_traversal_visits_the_cells_dense_sampling_finds():
    cams = vr.random_orbit_cameras(jax.random.key(0), 3, SHAPE, (-30.0, 80.0))
    origins, dirs = vr.camera_rays(cams, 9, 7)
    tr = vr.trace(origins, dirs, SHAPE)
    assert tr.cells.shape == (3, 9, 7, sum(SHAPE))
    o, d = np.asarray(origins).reshape(-1, 3), np.asarray(dirs).reshape(-1, 3)
    cells = np.asarray(tr.cells).reshape(len(o), -1)
    hits = 0
    for i in range(len(o)):
        expected = _dense_cells(o[i], d[i], np.asarray(SHAPE))
        got = [c for c in cells[i] if c >= 0]
        # Dense sampling can skip a cell the ray only grazes; the traversal never does.
        assert set(expected) <= set(got) and len(got) - len(expected) <= 1, i
        hits += bool(got)
    assert hits > len(o) // 3


def test_a_block_seen_from_above_shows_its_top_face():
    grid = np.zeros((3, 3, 3), int)
    grid[1, 0, 1] = 1
    colors, opacities = np.asarray([[0, 0, 0], [0.5, 0.5, 0.5]]), np.asarray([0.0, 1.0])
    cams = vr.orbit_cameras([0.0], [89.0], grid.shape, fov_degrees=10.0)
    rgb, alpha = vr.render_images(vr.one_hot_grid(grid, 2), colors, opacities, cams, 9, 9)
    centre = np.asarray(rgb)[0, 4, 4]
    np.testing.assert_allclose(centre, 0.5 * vr.FACE_SHADE[1, 0], atol=1e-5)  # top face, full brightness
    assert float(alpha[0, 4, 4]) == pytest.approx(1.0)
    np.testing.assert_allclose(np.asarray(rgb)[0, 0, 0], 1.0)  # background


def test_compositing_is_front_to_back_and_differentiable():
    tr = vr.Trace(jnp.asarray([[0, 1, -1]]), jnp.ones((1, 3)))
    alpha = jnp.asarray([0.5, 1.0]).reshape(2, 1, 1)
    color = jnp.asarray([[1.0, 0, 0], [0, 0, 1.0]]).reshape(2, 1, 1, 3)
    rgb, acc = vr.composite(tr, alpha, color * alpha[..., None], background=(0, 0, 0))
    np.testing.assert_allclose(np.asarray(rgb[0]), [0.5, 0, 0.5], atol=1e-6)
    assert float(acc[0]) == pytest.approx(1.0)
    grad = jax.grad(lambda a: vr.composite(tr, a, color * a[..., None], (0, 0, 0))[0][0, 0])(alpha)
    assert np.all(np.isfinite(grad)) and float(grad[0, 0, 0]) > 0


def test_orbit_angles_invert_orbit_cameras():
    az, el = np.asarray([10.0, 200.0, 330.0]), np.asarray([5.0, 45.0, 70.0])
    got_az, got_el = vr.orbit_angles(vr.orbit_cameras(az, el, SHAPE), SHAPE)
    np.testing.assert_allclose(got_az, az, atol=1e-3)
    np.testing.assert_allclose(got_el, el, atol=1e-3)
