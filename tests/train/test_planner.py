"""The memory planner against the compiled step's own memory analysis on 8 fake CPU devices."""

import jax
import pytest

from libs.train import launch, planner, trainer

TINY = "configs/speedrun/llama3_tiny.gin"


@pytest.mark.parametrize("config, mesh", [
    (TINY, {"data": 1, "fsdp": 4, "tensor": 2}),
    ("configs/speedrun/smoke.gin", {"data": 2, "fsdp": 4, "tensor": 1}),
])
def test_state_bytes_match_the_compiled_step_and_activations_are_the_right_size(config, mesh, clean_gin):
    seq_len, batch = 128, 16
    launch.parse_config([config], [f"make_mesh.{axis} = {size}" for axis, size in mesh.items()])
    plan = planner.plan_config(seq_len, batch, mesh, fused_attention=False)  # CPU attention keeps the scores
    exp = trainer.build(100, seq_len, batch, 1)
    with exp.context():
        tokens = jax.ShapeDtypeStruct((batch, seq_len), jax.numpy.int32, sharding=exp.batch_sharding)
        memory = planner.compiled_memory(exp.step_fn.lower(exp.abstract_state(), tokens, tokens))
    if memory is None:
        pytest.skip("this backend gives no memory analysis")
    inputs = 2 * tokens.size * 4 // (mesh["data"] * mesh["fsdp"])
    state = memory["argument_size_in_bytes"] - inputs
    # Parameters and optimizer state per device are exact (the step and RNG add a few bytes).
    assert plan.params + plan.optimizer <= state <= plan.params + plan.optimizer + 64
    # Everything else the step holds is gradients, activations and the loss: an estimate, same order.
    estimate = plan.gradients + plan.activations + plan.loss
    assert 0.3 < memory["temp_size_in_bytes"] / estimate < 3, (memory, plan)


@pytest.mark.slow
def test_plans_for_the_published_configs_fit_where_the_readme_says(clean_gin):
    launch.parse_config(["configs/llama/llama3_1_8b.gin"], [])
    eight = planner.plan_config(8192, 8, {"fsdp": 8}, device_bytes=80 * planner.GIB)
    assert eight.fits and eight.params == pytest.approx(8_030_261_248 * 4 / 8, rel=1e-3)
    launch.parse_config(["configs/llama/llama3_1_70b.gin"], ["LlamaConfig.remat = True"])
    seventy = planner.plan_config(8192, 64, {"fsdp": 64}, device_bytes=80 * planner.GIB)
    assert seventy.fits and seventy.optimizer == pytest.approx(2 * 70_553_706_496 * 4 / 64, rel=1e-3)
    launch.parse_config(["configs/llama/llama3_1_70b.gin"], [])
    assert not planner.plan_config(8192, 64, {"fsdp": 64}, device_bytes=80 * planner.GIB).fits  # no remat
    best = planner.smallest_mesh(lambda m: planner.plan_config(8192, 64, m, device_bytes=80 * planner.GIB), 64, 8)
    assert best is not None and best.fits and best.devices > 64
