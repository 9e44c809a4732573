"""Functional constraints: metrics on hand-built grids, losses on one-hot and random soft grids, config errors, gin."""

from __future__ import annotations

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.envs.voxels import constraints as cs
from libs.envs.voxels.palette import AIR, Block, Palette
from libs.train.errors import ConfigError

BLOCKS = ("stone", "oak_planks", "glass", "water", "lava")
PALETTE = Palette((Block(AIR, (0.0, 0.0, 0.0), 0.0),) + tuple(
    Block(f"minecraft:{b}", (0.5, 0.5, 0.5), 1.0) for b in BLOCKS))
AIR_, STONE, PLANKS, GLASS, WATER, LAVA = range(6)
N = 6  # grids are N^3


@gin.configurable("constraints_test_holder")
def _holder(items=()):
    """Stands in for the experiment's `dreamcraft.constraints` binding."""
    return items


def grid_of(cells: dict[tuple[int, int, int], int]) -> np.ndarray:
    grid = np.zeros((N, N, N), np.int32)
    for xyz, block in cells.items():
        grid[xyz] = block
    return grid


def tower(x: int, z: int, height: int, block: int = STONE) -> dict:
    return {(x, y, z): block for y in range(height)}


def one_hot(grid: np.ndarray) -> jax.Array:
    return jax.nn.one_hot(grid, len(PALETTE))


def random_probs(seed: int = 0) -> jax.Array:
    return jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(seed), (N, N, N, len(PALETTE))))


# --- metrics and losses on hand-built grids ---------------------------------------------------------------------

def test_distribution_metric_and_loss():
    grid = grid_of({**tower(0, 0, 6, STONE), **tower(2, 2, 4, PLANKS)})  # 6 stone, 4 planks, 206 air
    exact = cs.BlockDistribution(PALETTE, target={"stone": 0.6, "minecraft:oak_planks": 0.4})
    metrics = exact.metric(grid)
    assert metrics["distribution/satisfied"] == 1.0 and metrics["distribution/violation"] == pytest.approx(0.0)
    assert metrics["distribution/fraction/stone"] == pytest.approx(0.6)
    assert metrics["distribution/fraction/oak_planks"] == pytest.approx(0.4)
    assert float(exact.loss(one_hot(grid))) == pytest.approx(0.0, abs=1e-6)

    all_stone = cs.BlockDistribution(PALETTE, target={"stone": 1.0})
    assert all_stone.metric(grid)["distribution/violation"] == pytest.approx(0.4)  # 0.5 * (0.4 + 0.4)
    assert all_stone.metric(grid)["distribution/satisfied"] == 0.0
    assert float(all_stone.loss(one_hot(grid))) == pytest.approx(0.4, abs=1e-5)
    lenient = cs.BlockDistribution(PALETTE, target={"stone": 1.0}, tolerance=0.5)
    assert lenient.metric(grid)["distribution/satisfied"] == 1.0

    with_air = cs.BlockDistribution(PALETTE, target={"air": 0.5, "stone": 0.5}, include_air=True)
    assert with_air.metric(grid)["distribution/fraction/air"] == pytest.approx(206 / 216)
    # 0.5 * (|206/216 - 0.5| + |6/216 - 0.5| + 4/216)
    assert with_air.metric(grid)["distribution/violation"] == pytest.approx(0.5 * (98 + 102 + 4) / 216)
    assert float(with_air.loss(one_hot(grid))) == pytest.approx(with_air.metric(grid)["distribution/violation"])


def test_adjacency_metric_and_loss():
    forbid = cs.Adjacency(PALETTE, forbidden=[["water", "lava"]])
    side_by_side = grid_of({(1, 0, 1): WATER, (2, 0, 1): LAVA})
    diagonal = grid_of({(1, 0, 1): WATER, (2, 0, 2): LAVA})
    stacked = grid_of({(1, 0, 1): LAVA, (1, 1, 1): WATER})
    assert forbid.metric(side_by_side) == {"adjacency/satisfied": 0.0, "adjacency/violation": 1.0}
    assert forbid.metric(diagonal)["adjacency/violation"] == 0.0
    assert forbid.metric(stacked)["adjacency/violation"] == 1.0
    assert float(forbid.loss(one_hot(side_by_side))) == pytest.approx(1 / N**3)
    assert float(forbid.loss(one_hot(diagonal))) == 0.0
    along_z = grid_of({(1, 0, 1): WATER, (1, 0, 2): LAVA})
    for grid in (stacked, along_z):  # every axis counts, in the metric and in the loss
        assert forbid.metric(grid)["adjacency/violation"] == 1.0
        assert float(forbid.loss(one_hot(grid))) == pytest.approx(1 / N**3)
    # Lava between two water cells: two violating pairs, lava on the left or the right.
    assert forbid.metric(grid_of({(0, 0, 0): WATER, (1, 0, 0): LAVA, (2, 0, 0): WATER}))["adjacency/violation"] == 2

    horizontal = cs.Adjacency(PALETTE, forbidden=[["lava", "water"]], directions="horizontal")
    vertical = cs.Adjacency(PALETTE, forbidden=[["lava", "water"]], directions="vertical")
    assert horizontal.metric(stacked)["adjacency/violation"] == 0.0
    assert vertical.metric(stacked)["adjacency/violation"] == 1.0
    assert vertical.metric(side_by_side)["adjacency/violation"] == 0.0
    assert horizontal.metric(along_z)["adjacency/violation"] == 1.0
    assert float(horizontal.loss(one_hot(stacked))) == 0.0
    assert float(vertical.loss(one_hot(stacked))) == pytest.approx(1 / N**3)

    only = cs.Adjacency(PALETTE, allowed=[["stone", "oak_planks"]])
    ok = grid_of({**tower(0, 0, 3, STONE), **tower(1, 0, 3, PLANKS), **tower(3, 3, 2, GLASS)})
    assert only.metric(ok)["adjacency/satisfied"] == 1.0  # same-type and air neighbours are fine
    assert float(only.loss(one_hot(ok))) == 0.0
    bad = grid_of({**tower(0, 0, 3, STONE), **tower(1, 0, 2, GLASS)})  # two stone/glass faces
    assert only.metric(bad)["adjacency/violation"] == 2.0
    assert float(only.loss(one_hot(bad))) == pytest.approx(2 / N**3)


def test_support_metric_and_loss():
    support = cs.Support(PALETTE)
    grounded = grid_of({**tower(0, 0, 4), **tower(3, 3, 1)})
    assert support.metric(grounded) == {"support/satisfied": 1.0, "support/violation": 0.0,
                                        "support/unsupported_fraction": 0.0}
    assert float(support.loss(one_hot(grounded))) == 0.0
    floating = grid_of({**tower(0, 0, 4), (3, 2, 3): STONE, (3, 3, 3): STONE})  # a 2-high pillar on air
    metrics = support.metric(floating)
    assert metrics["support/violation"] == 1.0 and metrics["support/unsupported_fraction"] == pytest.approx(1 / 6)
    assert float(support.loss(one_hot(floating))) == pytest.approx(1 / (N * (N - 1) * N))


def test_connectivity_metric_and_loss():
    connectivity = cs.Connectivity(PALETTE)
    arch = {**tower(0, 0, 4), **tower(4, 0, 4), **{(x, 3, 0): STONE for x in range(5)}}  # overhang, one piece
    two_towers = grid_of({**tower(0, 0, 3), **tower(4, 4, 5)})
    metrics = connectivity.metric(two_towers)
    assert metrics["connectivity/satisfied"] == 1.0 and metrics["connectivity/components"] == 2.0
    assert connectivity.metric(grid_of(arch))["connectivity/components"] == 1.0
    assert float(connectivity.loss(one_hot(grid_of(arch)))) == pytest.approx(0.0, abs=1e-6)
    assert float(connectivity.loss(one_hot(two_towers))) == pytest.approx(0.0, abs=1e-6)
    # A hook: up a tower at x = 4, along a beam towards -x, down to a hanging block; the fill must go every way.
    hook = grid_of({**tower(4, 4, 4), **{(x, 3, 4): STONE for x in range(4)}, (0, 2, 4): GLASS, (0, 2, 3): GLASS})
    assert connectivity.metric(hook)["connectivity/satisfied"] == 1.0
    assert float(connectivity.loss(one_hot(hook))) == pytest.approx(0.0, abs=1e-6)

    floating = grid_of({**tower(0, 0, 3), (3, 3, 3): STONE, (3, 4, 3): GLASS})
    metrics = connectivity.metric(floating)
    assert metrics["connectivity/satisfied"] == 0.0 and metrics["connectivity/components"] == 2.0
    assert metrics["connectivity/violation"] == pytest.approx(2 / 5)
    assert metrics["connectivity/floating_cells"] == 2.0
    assert float(connectivity.loss(one_hot(floating))) == pytest.approx(2 / N**3, rel=1e-5)
    edge_only = grid_of({**tower(0, 0, 2), (1, 2, 0): STONE})  # touches the tower along an edge, not a face
    assert connectivity.metric(edge_only)["connectivity/components"] == 2.0
    assert connectivity.metric(edge_only)["connectivity/floating_cells"] == 1.0
    assert float(connectivity.loss(one_hot(edge_only))) == pytest.approx(1 / N**3, rel=1e-5)
    # Too few flood-fill steps leave the top of a tall tower unreached: the loss counts it.
    short = cs.Connectivity(PALETTE, iterations=2)
    assert float(short.loss(one_hot(grid_of(tower(0, 0, 6))))) == pytest.approx(3 / N**3, rel=1e-5)


def test_connectivity_gradient_is_finite_and_points_at_the_floating_block():
    connectivity = cs.Connectivity(PALETTE)
    logits = 4.0 * one_hot(grid_of({**tower(0, 0, 3), (3, 3, 3): STONE})) - 2.0
    grad = jax.grad(lambda z: connectivity.loss(jax.nn.softmax(z)))(logits)
    assert bool(jnp.isfinite(grad).all())
    assert float(grad[3, 3, 3, AIR_]) < 0  # more air at the floating block lowers the loss


def test_evaluate_build_and_total_loss():
    built = cs.build(PALETTE, [cs.Support, lambda p: cs.Adjacency(p, forbidden=[["water", "lava"]]),
                               cs.Connectivity(PALETTE, weight=2.0)])
    assert [c.name for c in built] == ["support", "adjacency", "connectivity"]
    grid = grid_of({**tower(0, 0, 2), (3, 3, 3): STONE, (1, 0, 1): WATER, (2, 0, 1): LAVA})
    metrics = cs.evaluate(built, grid)
    assert metrics["constraints/satisfied"] == 0.0
    assert cs.evaluate(built, grid_of(tower(0, 0, 2)))["constraints/satisfied"] == 1.0
    assert cs.evaluate(built[:1], grid_of({(0, 3, 0): STONE}))["constraints/satisfied"] == 0.0
    assert cs.evaluate(built, grid_of({**tower(0, 0, 2), (1, 0, 1): WATER, (2, 0, 1): LAVA}))[
        "constraints/satisfied"] == pytest.approx(2 / 3)
    probs = random_probs()
    total, losses = cs.total_loss(built, probs)
    assert set(losses) == {"support", "adjacency", "connectivity"}
    assert float(total) == pytest.approx(sum(c.weight * float(losses[c.name]) for c in built), rel=1e-6)
    assert float(total) > float(sum(losses.values()))  # connectivity's weight 2 counts


def test_everything_works_under_jit():
    built = cs.build(PALETTE, [lambda p: cs.BlockDistribution(p, target={"stone": 0.5, "glass": 0.5}),
                               lambda p: cs.Adjacency(p, allowed=[["stone", "glass"]], forbidden=[["water", "lava"]]),
                               cs.Support, cs.Connectivity])
    probs = random_probs(1)
    jitted_total, jitted_losses = jax.jit(lambda p: cs.total_loss(built, p))(probs)
    total, losses = cs.total_loss(built, probs)
    assert float(jitted_total) == pytest.approx(float(total), rel=1e-5)
    for name in losses:
        assert float(jitted_losses[name]) == pytest.approx(float(losses[name]), rel=1e-5, abs=1e-7)
        assert float(losses[name]) > 0


@pytest.mark.parametrize("make", [
    lambda p: cs.BlockDistribution(p, target={"stone": 0.7, "oak_planks": 0.3}),
    lambda p: cs.Adjacency(p, forbidden=[["water", "lava"], ["stone", "glass"]]),
    lambda p: cs.Adjacency(p, allowed=[["stone", "oak_planks"]]),
    cs.Support,
    cs.Connectivity,
], ids=["distribution", "adjacency_forbidden", "adjacency_allowed", "support", "connectivity"])
def test_gradient_descent_reduces_each_loss(make):
    constraint = make(PALETTE)
    # Connectivity's gradient only removes unreached blocks (the reach is held constant), so it takes longer.
    steps = 40 if isinstance(constraint, cs.Connectivity) else 10
    loss_of_logits = jax.jit(jax.value_and_grad(lambda z: constraint.loss(jax.nn.softmax(z))))
    logits = jax.random.normal(jax.random.PRNGKey(2), (N, N, N, len(PALETTE)))
    first, _ = loss_of_logits(logits)
    for _ in range(steps):
        _, grad = loss_of_logits(logits)
        logits = logits - 2.0 * N**3 * grad  # the losses are means over cells, so per-cell gradients are ~1/N^3
    last, _ = loss_of_logits(logits)
    assert float(last) < 0.5 * float(first), (float(first), float(last))


# --- configuration ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"target": {"stone": 0.5, "glass": 0.4}}, "sum to 0.9"),
    ({"target": {"stone": 1.2, "glass": -0.2}}, "glass"),
    ({"target": {"stone": 0.5, "minecraft:stone": 0.5}}, "twice"),
    ({"target": {"diamond_block": 1.0}}, "diamond_block"),
    ({"target": {"air": 0.5, "stone": 0.5}}, "include_air"),
    ({"target": {}}, "non-empty"),
    ({}, "required"),
    ({"target": {"stone": 1.0}, "tolerance": 2.0}, "tolerance"),
    ({"target": {"stone": 1.0}, "weight": -1.0}, "weight"),
])
def test_distribution_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        cs.BlockDistribution(PALETTE, **kwargs)


@pytest.mark.parametrize("make, message", [
    (lambda: cs.Adjacency(PALETTE, forbidden=[["water", "magma"]]), "magma"),
    (lambda: cs.Adjacency(PALETTE, forbidden=["water"]), "pair"),
    (lambda: cs.Adjacency(PALETTE, forbidden=[["water", "lava", "stone"]]), "pair"),
    (lambda: cs.Adjacency(PALETTE, directions="diagonal"), "directions"),
    (lambda: cs.Adjacency(PALETTE, forbidden=[["stone", "glass"]], allowed=[["glass", "stone"]]), "both"),
    (lambda: cs.Adjacency(PALETTE, allowed=[["air", "stone"]]), "air"),
    (lambda: cs.Connectivity(PALETTE, iterations=0), "iterations"),
    (lambda: cs.build(PALETTE, [cs.Support, cs.Support]), "twice"),
    (lambda: cs.build(PALETTE, [cs.Support(PALETTE.subset(["stone"]))]), "another palette"),
    (lambda: cs.build(PALETTE, ["support"]), "not a Constraint"),
])
def test_other_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_gin_configures_and_scopes_constraints(clean_gin):
    gin.parse_config("""
        BlockDistribution.target = {"stone": 0.6, "oak_planks": 0.4}
        BlockDistribution.weight = 0.5
        Adjacency.allowed = [["stone", "oak_planks"]]
        hot/Adjacency.forbidden = [["water", "lava"]]
        hot/Adjacency.allowed = None
        hot/Adjacency.name = "water_lava"
        Connectivity.iterations = 3
        constraints_test_holder.items = [@BlockDistribution, @Adjacency, @hot/Adjacency, @Connectivity]
    """)
    built = cs.build(PALETTE, _holder())
    assert [c.name for c in built] == ["distribution", "adjacency", "water_lava", "connectivity"]
    distribution, allowed, hot, connectivity = built
    assert distribution.weight == 0.5 and distribution.target[STONE] == pytest.approx(0.6)
    assert connectivity.iterations == 3
    lava_by_water = grid_of({(1, 0, 1): WATER, (2, 0, 1): LAVA})
    assert hot.metric(lava_by_water)["water_lava/violation"] == 1.0
    assert allowed.metric(lava_by_water)["adjacency/violation"] == 1.0  # water/lava is not an allowed pair
    assert allowed.metric(grid_of({(1, 0, 1): STONE, (2, 0, 1): PLANKS}))["adjacency/violation"] == 0.0
