"""The quantized field: shapes, the soft-to-hard blend, straight-through gradients, the hard grid."""

import jax
import jax.numpy as jnp
import numpy as np

from libs.models import voxel_field as vf


def _logits(shape=(4, 3, 5), k=6, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k1, (*shape, k)), jax.random.normal(k2, shape)


def test_field_outputs_logits_per_cell():
    field = vf.VoxelField(vf.FieldConfig(grid=(6, 4, 5), hidden=8), num_blocks=7)
    params = field.init(jax.random.key(0))["params"]
    blocks, occupancy = field.apply({"params": params})
    assert blocks.shape == (6, 4, 5, 7) and occupancy.shape == (6, 4, 5)
    assert float(jax.nn.sigmoid(occupancy).mean()) < 0.5  # starts mostly empty


def test_probs_are_distributions_and_alpha_one_is_the_hard_grid():
    blocks, occupancy = _logits()
    for alpha in (0.0, 0.5, 1.0):
        probs = vf.cell_probs(blocks, occupancy, alpha, 0.7, jax.random.key(1), 0.5)
        np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, atol=1e-5)
    hard = vf.cell_probs(blocks, occupancy, 1.0)
    expected = jax.nn.one_hot(vf.hard_grid(blocks, occupancy), blocks.shape[-1] + 1)
    np.testing.assert_allclose(np.asarray(hard), np.asarray(expected), atol=1e-6)


def test_straight_through_passes_gradients_at_alpha_one():
    blocks, occupancy = _logits()
    target = jax.random.uniform(jax.random.key(3), (*occupancy.shape, blocks.shape[-1] + 1))
    loss = lambda b, o: jnp.sum(vf.cell_probs(b, o, 1.0) * target)
    gb, go = jax.grad(loss, argnums=(0, 1))(blocks, occupancy)
    assert float(jnp.abs(gb).sum()) > 0 and float(jnp.abs(go).sum()) > 0


def test_hard_grid_is_air_where_occupancy_is_negative():
    blocks, occupancy = _logits()
    grid = np.asarray(vf.hard_grid(blocks, occupancy))
    assert np.all((grid == 0) == (np.asarray(occupancy) <= 0))
    np.testing.assert_array_equal(grid[grid > 0], np.asarray(jnp.argmax(blocks, -1) + 1)[grid > 0])
