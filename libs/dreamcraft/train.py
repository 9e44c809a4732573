"""Training one DreamCraft field: guidance + constraint losses, soft-to-hard anneal, checkpoints, metrics, renders.

Two methods share everything but the quantization:
- "quantized": DreamCraft's. Gumbel-softmax / straight-through blend annealed from soft to hard over
  [anneal_start, anneal_end] of the steps, with the constraint losses on; the last part trains the hard grid.
- "baseline": the paper's baseline, an unconstrained continuous field (soft probabilities, no noise, no
  constraint losses) trained on the same guidance and budget, quantized (argmax, occupancy > 0.5) only after.

The state is a plain dict (step, params, opt_state, rng) checkpointed with orbax, so a relaunch resumes; the
jitted step takes explicit shardings (rays split over the mesh's data axes, the field replicated) and donates
the state.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec

from libs.dreamcraft.guidance import Guidance
from libs.envs.voxels import constraints as constraints_lib
from libs.envs.voxels.palette import Palette
from libs.models import voxel_field, voxel_render as vr
from libs.train import rundir, sharding
from libs.train.checkpoint import Checkpointer
from libs.train.errors import ConfigError
from libs.train.launch import NON_NEGATIVE, POSITIVE
from libs.train.metrics import MetricWriter, format_duration

METHODS = ("quantized", "baseline")


@gin.configurable("dreamcraft_train")
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """steps: optimizer steps; anneal_start/end: fractions of the steps over which alpha goes 0 -> 1 (and the
    Gumbel temperature from temperature_start to temperature_end); constraint_ramp: fraction of the steps over
    which the constraint losses ramp up to their weights."""

    steps: Annotated[int, POSITIVE] = 1500
    learning_rate: Annotated[float, POSITIVE] = 0.01
    warmup_steps: Annotated[int, NON_NEGATIVE] = 50
    anneal_start: float = 0.1
    anneal_end: float = 0.5
    temperature_start: Annotated[float, POSITIVE] = 1.0
    temperature_end: Annotated[float, POSITIVE] = 0.5
    gumbel_noise: Annotated[float, NON_NEGATIVE] = 0.3
    constraint_ramp: float = 0.1
    log_every: Annotated[int, POSITIVE] = 100
    render_every: Annotated[int, NON_NEGATIVE] = 500
    checkpoint_every: Annotated[int, NON_NEGATIVE] = 500

    def __post_init__(self):
        if not 0 <= self.anneal_start <= self.anneal_end <= 1:
            raise ConfigError(f"dreamcraft_train: need 0 <= anneal_start ({self.anneal_start}) <= anneal_end "
                              f"({self.anneal_end}) <= 1")


def schedule(config: TrainConfig, step: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(alpha, temperature, constraint scale) at `step` for the quantized method."""
    frac = step / config.steps
    span = max(config.anneal_end - config.anneal_start, 1e-6)
    alpha = jnp.clip((frac - config.anneal_start) / span, 0.0, 1.0)
    temperature = config.temperature_start + (config.temperature_end - config.temperature_start) * alpha
    ramp = jnp.clip(frac / max(config.constraint_ramp, 1e-6), 0.0, 1.0)
    return alpha, temperature, ramp


@dataclasses.dataclass
class FieldRun:
    """Everything one training run needs; `train` fills a workdir and returns the hard grid and its metrics."""

    palette: Palette
    guidance: Guidance
    constraints: Sequence[Any]
    field_config: voxel_field.FieldConfig
    config: TrainConfig
    method: str = "quantized"
    seed: int = 0
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mesh: Any = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"dreamcraft: method {self.method!r}: use one of {METHODS}")
        self.model = voxel_field.VoxelField(self.field_config, len(self.palette) - 1)
        self.mesh = self.mesh or sharding.make_mesh(devices=jax.devices())
        ways = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        rays = getattr(self.guidance, "rays_per_step", 0)
        if rays % ways:
            raise ConfigError(f"dreamcraft: {rays} rays per step do not split over the mesh's {ways} data-parallel "
                              "devices; use a multiple")
        warmup = min(self.config.warmup_steps, self.config.steps - 1)  # optax needs decay steps after warmup
        schedule_fn = optax.warmup_cosine_decay_schedule(0.0, self.config.learning_rate, warmup,
                                                         self.config.steps, self.config.learning_rate * 0.1)
        self.tx = optax.adam(schedule_fn)

    # --- the pure pieces -------------------------------------------------------------------------------------

    def init_state(self, seed: int) -> dict[str, Any]:
        key, rng = jax.random.split(jax.random.key(seed))
        params = self.model.init(key)["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": self.tx.init(params),
                "rng": jax.random.key_data(rng)}

    def probs(self, params, step, key=None) -> jax.Array:
        blocks, occupancy = self.model.apply({"params": params})
        if self.method == "baseline":
            return voxel_field.cell_probs(blocks, occupancy)
        alpha, temperature, _ = schedule(self.config, step)
        # The noise fades with the blend: the hard phase trains the noise-free grid that is exported. (With noise
        # to the end, near-tied logits met a distribution target only in expectation over the noise, while the
        # exported argmax was one block type.)
        key = key if self.config.gumbel_noise > 0 else None
        return voxel_field.cell_probs(blocks, occupancy, alpha, temperature, key, self.config.gumbel_noise * (1 - alpha))

    def loss(self, params, step, data, key):
        noise_key, ray_key = jax.random.split(key)
        probs = self.probs(params, step, noise_key)
        alpha, color = vr.cell_appearance(probs, self.palette.colors, self.palette.opacities)
        tr, aux = self.guidance.sample(data, ray_key)
        # Rays of any batch shape (text guidance renders whole views) are split, flat, over the data axes.
        batch_shape, steps = tr.cells.shape[:-1], tr.cells.shape[-1]
        split = NamedSharding(self.mesh, PartitionSpec(("data", "fsdp")))
        tr = jax.tree_util.tree_map(lambda a: jax.lax.with_sharding_constraint(a.reshape(-1, steps), split), tr)
        rgb, opacity = vr.composite(tr, alpha, color, self.background)
        rgb, opacity = rgb.reshape(*batch_shape, 3), opacity.reshape(batch_shape)
        guide, metrics = self.guidance.loss(rgb, opacity, aux)
        total = guide
        if self.method == "quantized" and self.constraints:
            c_loss, terms = constraints_lib.total_loss(self.constraints, probs)
            total = total + schedule(self.config, step)[2] * c_loss
            metrics.update({f"loss/{k}": v for k, v in terms.items()})
        metrics["guidance_loss"] = guide
        return total, metrics

    def train_step(self, state, data):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        (loss, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(state["params"], state["step"], data,
                                                                              key)
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        alpha, temperature, _ = schedule(self.config, state["step"])
        metrics.update(loss=loss, alpha=alpha if self.method == "quantized" else 0.0, temperature=temperature,
                       grad_norm=optax.tree.norm(grads))
        return {**state, "step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    def hard_grid(self, params) -> np.ndarray:
        blocks, occupancy = self.model.apply({"params": params})
        return np.asarray(voxel_field.hard_grid(blocks, occupancy))

    # --- the loop --------------------------------------------------------------------------------------------

    def train(self, workdir: str, on_render: Callable[[int, np.ndarray], None] | None = None,
              should_stop: Callable[[], bool] = rundir.stop_requested) -> dict[str, Any]:
        """Trains to `config.steps` in `workdir` (resuming from its latest checkpoint); returns
        {"status", "step", "grid" (the hard grid), "params", "seconds" (training time, across relaunches)}."""
        replicated = sharding.replicated(self.mesh)
        abstract = jax.eval_shape(self.init_state, self.seed)
        shardings = jax.tree_util.tree_map(lambda _: replicated, abstract)
        ckpt = Checkpointer(workdir, every_steps=self.config.checkpoint_every, keep=2)
        restored = ckpt.restore_latest(jax.tree_util.tree_map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), abstract, shardings))
        if restored is None:
            state = jax.jit(self.init_state, static_argnums=0, out_shardings=shardings)(self.seed)
            meta = {"seconds": 0.0}
        else:
            _, state, meta = restored
            logging.info("dreamcraft: %s seed %d resumes at step %d", self.method, self.seed, int(state["step"]))
        data = jax.device_put(self.guidance.data(), replicated)
        step_fn = jax.jit(self.train_step, in_shardings=(shardings, replicated),
                          out_shardings=(shardings, replicated), donate_argnums=0)
        writer = MetricWriter(workdir)
        seconds, step = float(meta.get("seconds", 0.0)), int(state["step"])
        rays = getattr(self.guidance, "rays_per_step", 0)
        started, window = time.perf_counter(), (time.perf_counter(), step)
        status = "complete"
        try:
            while step < self.config.steps:
                if should_stop():
                    status = "interrupted"
                    break
                state, metrics = step_fn(state, data)
                step += 1
                if step % self.config.log_every == 0 or step == self.config.steps:
                    metrics = jax.device_get(metrics)
                    now = time.perf_counter()
                    rate = (step - window[1]) / max(now - window[0], 1e-9)
                    window = (now, step)
                    writer.write(step, "train", {**metrics, "rays_per_s": rate * rays})
                    logging.info("dreamcraft %s seed %d: step %d/%d | loss %.4f | guidance %.4f | alpha %.2f | "
                                 "%.1f steps/s, %s rays/s | ETA %s", self.method, self.seed, step, self.config.steps,
                                 metrics["loss"], metrics["guidance_loss"], metrics["alpha"], rate,
                                 f"{rate * rays:,.0f}", format_duration((self.config.steps - step) / max(rate, 1e-9)))
                if on_render and self.config.render_every and step % self.config.render_every == 0:
                    on_render(step, self.hard_grid(state["params"]))
                if ckpt.should_save(step):
                    ckpt.save(step, state, {"seconds": seconds + time.perf_counter() - started})
            seconds += time.perf_counter() - started
            ckpt.save(step, state, {"seconds": seconds}, force=True)
        finally:
            ckpt.close()
            writer.close()
        return {"status": status, "step": step, "grid": self.hard_grid(state["params"]), "params": state["params"],
                "seconds": seconds}
