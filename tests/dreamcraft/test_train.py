"""One DreamCraft field run (on the tests' eight CPU devices): the schedule, fitting, interruption and exact resume,
the two methods."""

import jax
import numpy as np
import pytest

from libs.dreamcraft import guidance as gd
from libs.dreamcraft import train as tr
from libs.envs.voxels import constraints as cs
from libs.envs.voxels.palette import load_palette
from libs.envs.voxels.structures import reference_structure
from libs.models import voxel_field
from libs.train.errors import ConfigError
from libs.train.metrics import read_metrics

PALETTE = load_palette(blocks=["sandstone", "stone_bricks", "gold_block", "glass"])
SHAPE = (8, 8, 8)


@pytest.fixture(scope="module")
def photometric():
    reference = reference_structure(PALETTE, "tower", 8)
    cams = gd.target_cameras(SHAPE, views=4)
    images, masks = gd.render_targets(reference, PALETTE, cams, 16)
    return gd.Photometric(images, masks, cams, SHAPE, rays_per_step=256)


def _run(guidance, method="quantized", steps=24, constraints=(), anneal=(0.2, 0.7)):
    config = tr.TrainConfig(steps=steps, warmup_steps=2, log_every=8, render_every=0, checkpoint_every=8,
                            anneal_start=anneal[0], anneal_end=anneal[1])
    return tr.FieldRun(PALETTE, guidance, list(constraints), voxel_field.FieldConfig(grid=SHAPE, hidden=16), config,
                       method=method)


def test_schedule_anneals_from_soft_to_hard():
    config = tr.TrainConfig(steps=100, anneal_start=0.2, anneal_end=0.6, temperature_start=1.0, temperature_end=0.5)
    alphas = [float(tr.schedule(config, s)[0]) for s in (0, 20, 40, 60, 100)]
    assert alphas == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    assert float(tr.schedule(config, 100)[1]) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="anneal_start"):
        tr.TrainConfig(anneal_start=0.8, anneal_end=0.5)


def test_an_interrupted_run_resumes_to_the_same_field(photometric, tmp_path):
    soft = (1.0, 1.0)  # the soft phase throughout (with its Gumbel noise), so 24 steps visibly fit the views
    straight = _run(photometric, anneal=soft).train(str(tmp_path / "straight"), should_stop=lambda: False)
    losses = [r["render_mse"] for r in read_metrics(str(tmp_path / "straight" / "metrics.jsonl"), "train")]
    assert len(losses) == 3 and losses[-1] < 0.7 * losses[0], losses  # fitting the views
    calls = iter(range(1000))
    first = _run(photometric, anneal=soft).train(str(tmp_path / "resumed"), should_stop=lambda: next(calls) >= 13)
    assert first["status"] == "interrupted" and first["step"] == 13
    second = _run(photometric, anneal=soft).train(str(tmp_path / "resumed"), should_stop=lambda: False)
    assert second["status"] == "complete" and second["step"] == 24
    for a, b in zip(jax.tree_util.tree_leaves(straight["params"]), jax.tree_util.tree_leaves(second["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    again = _run(photometric, anneal=soft).train(str(tmp_path / "resumed"), should_stop=lambda: False)
    assert again["step"] == 24  # a finished run trains no further
    np.testing.assert_array_equal(again["grid"], second["grid"])


def test_the_quantized_method_trains_on_constraints_and_the_baseline_does_not(photometric, tmp_path):
    constraints = cs.build(PALETTE, [lambda p: cs.BlockDistribution(p, target={"stone_bricks": 1.0})])
    quantized = _run(photometric, "quantized", 8, constraints)
    baseline = _run(photometric, "baseline", 8, constraints)
    state = quantized.init_state(0)
    data = photometric.data()
    key = jax.random.key(1)
    _, q_metrics = jax.eval_shape(quantized.loss, state["params"], 0, data, key)  # shapes only: no compute
    _, b_metrics = jax.eval_shape(baseline.loss, state["params"], 0, data, key)
    assert "loss/distribution" in q_metrics and "loss/distribution" not in b_metrics
    with pytest.raises(ConfigError, match="method"):
        _run(photometric, "other")


@pytest.mark.slow  # ~15 s: compiles the CLIP stand-in's image tower into the step
def test_text_guidance_splits_whole_views_over_the_devices(tmp_path):
    from libs.models.clip import ClipScorer  # the random-initialised stand-in: only the plumbing is under test

    guidance = gd.TextImage(ClipScorer(None, "a tower"), SHAPE, views_per_step=2, image_size=8)
    run = tr.FieldRun(PALETTE, guidance, [], voxel_field.FieldConfig(grid=SHAPE, hidden=8),
                      tr.TrainConfig(steps=2, log_every=1, render_every=0, checkpoint_every=0))
    assert len(jax.devices()) == 8 and guidance.rays_per_step == 128
    out = run.train(str(tmp_path), should_stop=lambda: False)
    assert out["status"] == "complete" and out["step"] == 2
    with pytest.raises(ConfigError, match="do not split"):
        tr.FieldRun(PALETTE, gd.TextImage(guidance.scorer, SHAPE, views_per_step=1, image_size=3), [],
                    voxel_field.FieldConfig(grid=SHAPE), tr.TrainConfig())
