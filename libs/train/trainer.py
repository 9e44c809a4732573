"""The language-model training loop shared by the speedrun and Llama configs (any `registry` family).

    mesh from config -> abstract state -> shardings -> jit(init) or restore
    -> loop: this process's batch -> jit(step) -> progress / metrics every N
       -> validation every N -> async checkpoint every N -> the whole schedule (or stop at the target)
    -> final metrics, loss plot, wait for checkpoints

SIGTERM / Ctrl-C (`rundir.stop_requested()`) save a checkpoint at the current step and end the loop
with status "interrupted"; a rerun resumes from it. The time to the target is reported both at its
first crossing and for the full schedule, as the records were timed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Annotated, Any

import gin
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import linen as nn
from jax.sharding import Mesh

from libs.models import layers, registry
from libs.train import (checkpoint, corpus, data, distributed, metrics, optim, rundir, sharding, shards, state,
                        tfds_source)
from libs.train.errors import UserError
from libs.train.launch import NON_NEGATIVE, POSITIVE


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@gin.configurable(denylist=["workdir"])
def train(
    workdir: str,
    total_steps: Annotated[int, POSITIVE] = 1000,
    seq_len: Annotated[int, POSITIVE] = 1024,
    global_batch_size: Annotated[int, POSITIVE] = 512,
    microbatches: Annotated[int, POSITIVE] = 1,
    train_data: str = "stdlib",
    val_data: str = "stdlib",
    stdlib_tokenizer: str = "bytes",
    tfds_data_dir: str | None = None,
    val_tokens: Annotated[int, NON_NEGATIVE] = 10_485_760,
    val_batch_size: Annotated[int, NON_NEGATIVE] = 0,
    val_seq_len: Annotated[int, NON_NEGATIVE] = 0,
    eval_every: Annotated[int, NON_NEGATIVE] = 250,
    log_every: Annotated[int, POSITIVE] = 10,
    target_val_loss: float = 0.0,
    stop_at_target: bool = False,
    seed: int = 0,
    plot: bool = True,
) -> dict[str, Any]:
    """Trains the gin-configured model (`make_model.family`: the GPT by default) and returns a summary dict.

    Args:
      workdir: run directory; a rerun in the same directory resumes.
      total_steps: optimizer steps (the schedule's length).
      seq_len: tokens per sequence.
      global_batch_size: sequences per optimizer step, across all devices.
      microbatches: gradient-accumulation splits of each step's batch.
      train_data / val_data: glob of FineWeb-format shards, or "stdlib" for the
        embedded corpus built from this interpreter's standard library.
      stdlib_tokenizer: tokenizer for the "stdlib" corpus (bytes | gpt2 | auto).
      tfds_data_dir: where "tfds:NAME..." sources are prepared (None: $TFDS_DATA_DIR, else ~/tensorflow_datasets);
        they are tokenized with stdlib_tokenizer (libs/train/tfds_source.py).
      val_tokens: validation budget in tokens (rounded down to whole batches).
      val_batch_size: sequences per validation batch (0: global_batch_size / microbatches).
      val_seq_len: tokens per validation sequence (0: seq_len); record 21 validates on 4 x 64Ki-token rows.
      eval_every / log_every: validation and progress-line periods in steps.
      target_val_loss: record the first validation at or below this (0: none): its step and time.
      stop_at_target: stop there instead of finishing the schedule (the records' times are full runs).
      seed: parameter-init seed.
      plot: write `loss.png` at the end.
    """
    exp = build(total_steps, seq_len, global_batch_size, microbatches, val_seq_len or seq_len)
    loader, val_batches = _data(train_data, val_data, stdlib_tokenizer, seq_len, global_batch_size,
                                val_batch_size or global_batch_size // microbatches, val_tokens, tfds_data_dir,
                                val_seq_len or seq_len)
    with exp.context():
        ckpt = checkpoint.Checkpointer(workdir)
        restored = ckpt.restore_latest(exp.abstract_state(), on_error=_refuse_config_mismatch)
        if restored is None:
            train_state, start, meta = exp.init_state(seed), 0, {"train_time_s": 0.0}
        else:
            start, train_state, meta = restored
            logging.info("resuming from step %d in %s", start, ckpt.directory)
        logging.info("model: %.2fM parameters, %.3g FLOPs/token; mesh %s; %s", exp.n_params / 1e6,
                     exp.flops_per_token, dict(exp.mesh.shape), jax.devices()[0].device_kind)
        loop = _Loop(exp, workdir, loader, val_batches, ckpt, total_steps, eval_every, log_every,
                     target_val_loss, stop_at_target, plot)
        try:
            return loop.run(train_state, start, meta)
        except (shards.ShardError, OSError) as e:
            raise UserError(f"training data failed at run time: {e}; the last good checkpoint is step "
                            f"{ckpt.latest_step()} in {ckpt.directory}") from e
        finally:
            loader.close()


def _refuse_config_mismatch(error: Exception) -> None:
    """Stops at a restore error that says the checkpoint belongs to another model or optimizer config."""
    text = str(error)
    if any(word in text for word in ("shape", "Shape", "structure", "tree", "Tree", "dtype")):
        raise UserError(f"the checkpoint does not fit this config's model or optimizer ({text.splitlines()[0]}); "
                        "use another --workdir") from None


@dataclasses.dataclass
class Experiment:
    """Everything jitted and sharded for one model/optimizer config (no data)."""

    cfg: Any  # gpt.GPTConfig | llama.LlamaConfig
    mesh: Mesh
    rules: tuple
    model: nn.Module  # gpt.GPT | llama.Llama
    tx: Any
    sample: jax.ShapeDtypeStruct
    shardings: dict[str, Any]
    batch_sharding: Any
    step_fn: Any
    eval_fn: Any
    n_params: int
    flops_per_token: float

    def context(self):
        """Mesh and logical-axis rules; tracing the model needs both."""
        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(nn.logical_axis_rules(self.rules))
        return stack

    def init_state(self, seed: int):
        return state.create_state(self.model, self.tx, self.sample, self.shardings, seed)

    def abstract_state(self):
        return state.abstract_state(self.model, self.tx, self.sample, self.shardings)


def build(total_steps: int, seq_len: int, global_batch_size: int, microbatches: int,
          val_seq_len: int = 0) -> Experiment:
    """Builds the model, optimizer, shardings and jitted step for the gin config."""
    spec = registry.make_model()
    cfg, model, cfg_name = spec.cfg, spec.module, type(spec.cfg).__name__
    for name, length in (("seq_len", seq_len), ("val_seq_len", val_seq_len)):
        if length > cfg.max_seq_len:
            raise UserError(f"train.{name}={length} exceeds {cfg_name}.max_seq_len={cfg.max_seq_len}")
    mesh, rules = sharding.make_mesh(), sharding.logical_rules()
    _check_head_split(cfg, mesh, rules)
    split = sharding.batch_axis_size(mesh, rules) * microbatches
    if global_batch_size % split:
        raise UserError(
            f"train.global_batch_size={global_batch_size} must divide by batch shards x microbatches = {split}"
        )
    sample = jax.ShapeDtypeStruct((1, seq_len), jnp.int32)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        abstract_params, specs = state.param_specs(model, sample)
        tx = optim.make_optimizer(abstract_params, total_steps)
        shardings = state.state_shardings(abstract_params, specs, tx, mesh, rules)
    window = optim.window_schedule(total_steps, getattr(cfg, "window_block_size", 1))
    step_inputs = (lambda step: {}) if window is None else (lambda step: {"window_blocks": window(step)})
    loss_fn = lambda p, x, y, step: model.apply({"params": p}, x, y, **step_inputs(step))
    batch_sh, replicated = sharding.batch_sharding(mesh, rules), sharding.replicated(mesh)
    step_fn = jax.jit(
        state.make_train_step(loss_fn, tx, microbatches),
        in_shardings=(shardings, batch_sh, batch_sh),
        out_shardings=(shardings, replicated),
        donate_argnums=(0,),
    )
    eval_loss = lambda p, x, y, step: model.apply({"params": p}, x, y, train=False, **step_inputs(step))
    eval_jit = jax.jit(eval_loss, in_shardings=(shardings["params"], batch_sh, batch_sh, replicated))
    # The step sets scheduled inputs (the attention window); by default the last step's, as a final evaluation.
    # A host value (not a device array): every process of a multi-process run passes the same replicated step.
    eval_fn = lambda p, x, y, step=total_steps: eval_jit(p, x, y, np.int32(step))
    return Experiment(cfg, mesh, rules, model, tx, sample, shardings, batch_sh, step_fn, eval_fn,
                      layers.count_params(abstract_params), spec.flops_per_token(abstract_params, seq_len))


def _check_head_split(cfg, mesh: Mesh, rules) -> None:
    """Head-sharded axes must divide by their mesh axes (else XLA fails later with a shape error)."""
    name = type(cfg).__name__
    if not hasattr(cfg, "num_kv_heads"):  # The GPT shards its flattened head columns; nothing to check.
        return
    for field, axis in (("num_heads", "heads"), ("num_kv_heads", "kv_heads")):
        count = getattr(cfg, field)
        ways = sharding.axis_size(mesh, rules, axis)
        if count % ways:
            raise UserError(f"{name}.{field}={count} does not divide by the {ways}-way split of '{axis}' "
                            f"(mesh {dict(mesh.shape)}); change make_mesh or the '{axis}' rule of logical_rules")


def _data(train_data, val_data, tokenizer, seq_len, batch, val_batch, val_tokens, tfds_data_dir=None,
          val_seq_len=None):
    try:
        if "stdlib" in (train_data, val_data):
            paths = corpus.build_stdlib_corpus(tokenizer=tokenizer)
            train_data = paths.train_pattern if train_data == "stdlib" else train_data
            val_data = paths.val_pattern if val_data == "stdlib" else val_data
        if tfds_source.is_spec(train_data):  # Converted to shards once (cached), then read like any shards.
            train_data = tfds_source.build_shards(train_data, "train", tokenizer, tfds_data_dir).pattern
        if tfds_source.is_spec(val_data):
            val_data = tfds_source.build_shards(val_data, "val", tokenizer, tfds_data_dir).pattern
        pid, count = jax.process_index(), jax.process_count()
        loader = data.Loader(train_data, seq_len, batch, pid, count)
        val = data.validation_batches(val_data, val_seq_len or seq_len, val_batch, val_tokens, pid, count)
    except (shards.ShardError, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    return loader, val


@dataclasses.dataclass
class _Loop:
    """The host-side loop: feeding, logging, validation, checkpoints, stopping."""

    exp: Experiment
    workdir: str
    loader: data.Loader
    val_batches: Any
    ckpt: checkpoint.Checkpointer
    total_steps: int
    eval_every: int
    log_every: int
    target: float
    stop_at_target: bool
    plot: bool

    def __post_init__(self):
        self.writer = metrics.MetricWriter(self.workdir)
        self.step_fn = self.exp.step_fn
        self.progress = metrics.Progress(self.total_steps, self.loader.tokens_per_step, self.exp.flops_per_token,
                                         metrics.peak_flops())

    def _device_batch(self, inputs: np.ndarray, targets: np.ndarray):
        vocab = self.exp.cfg.vocab_size
        if inputs.max(initial=0) >= vocab or targets.max(initial=0) >= vocab:
            raise UserError(f"token id {max(inputs.max(), targets.max())} >= "
                            f"{type(self.exp.cfg).__name__}.vocab_size {vocab}")
        sh = self.exp.batch_sharding
        return jax.make_array_from_process_local_data(sh, inputs), jax.make_array_from_process_local_data(sh, targets)

    def _stop_now(self, step: int) -> bool:
        """A signal asked to stop. All processes of a multi-process run stop at the same step: they agree
        every `log_every` steps (a process signalled alone would otherwise wait forever in a collective)."""
        if jax.process_count() == 1:
            return rundir.stop_requested()
        if step % self.log_every or not distributed.any_process(rundir.stop_requested()):
            return False
        if not rundir.stop_requested():
            rundir.request_stop()  # another process was signalled: record and exit the same way
        return True

    def validate(self, params, step: int) -> float:
        losses = [self.exp.eval_fn(params, *self._device_batch(*b), step) for b in self.val_batches]
        return float(np.mean(jax.device_get(losses)))

    def run(self, train_state, step: int, meta: dict[str, Any]) -> dict[str, Any]:
        train_time = float(meta.get("train_time_s", 0.0))
        tokens_per_step = self.loader.tokens_per_step
        crossing = dict(meta.get("target") or {})  # the first validation at or below the target
        status, val_loss, last = "complete", float(meta.get("val_loss", float("nan"))), {}
        logging.info("training from step %d to %d, %d tokens/step", step, self.total_steps, tokens_per_step)
        try:
            if step == 0 and self.eval_every > 0:  # The untrained baseline anchors the curve.
                val_loss = self.validate(train_state["params"], 0)
                logging.info("validation step 0: loss %.4f", val_loss)
                self.writer.write(0, "val", {"loss": val_loss, "train_time_s": 0.0, "tokens_seen": 0})
            clock = None
            while step < self.total_steps:
                if self._stop_now(step):
                    status = "interrupted"
                    train_time += time.perf_counter() - clock if clock is not None else 0.0
                    meta = {**meta, "train_time_s": train_time, "tokens_seen": step * tokens_per_step}
                    self.ckpt.save(step, train_state, meta, force=True)
                    logging.info("interrupted at step %d: checkpoint saved; rerun to resume", step)
                    break
                train_state, out = self.step_fn(train_state, *self._device_batch(*self.loader.batch(step)))
                step += 1
                if clock is None:  # The first step after a start compiles; keep it off the clock.
                    jax.block_until_ready(out)
                    logging.info("first step (with compilation) done")
                    clock = time.perf_counter()
                    self.progress.start(step)
                log_now = step % self.log_every == 0 or step == self.total_steps
                eval_now = self.eval_every > 0 and (step % self.eval_every == 0 or step == self.total_steps)
                save_now = self.ckpt.should_save(step) or step == self.total_steps
                if not (log_now or eval_now or save_now or rundir.stop_requested()):
                    continue
                last = {k: float(v) for k, v in jax.device_get(out).items()}
                if not all(math.isfinite(v) for v in last.values()):
                    status = "diverged"
                    raise TrainingDiverged(
                        f"non-finite loss or gradient at step {step} ({last}); stopped. Last good checkpoint: "
                        f"step {self.ckpt.latest_step()} in {self.ckpt.directory}"
                    )
                train_time += time.perf_counter() - clock
                if log_now:
                    line, stats = self.progress.line(step, last["loss"])
                    logging.info("%s", line)
                    self.writer.write(step, "train", {**last, **stats, "train_time_s": train_time})
                if eval_now:
                    val_loss = self.validate(train_state["params"], step)
                    logging.info("validation step %d: loss %.4f (%d batches)", step, val_loss, len(self.val_batches))
                    self.writer.write(step, "val", {"loss": val_loss, "train_time_s": train_time,
                                                    "tokens_seen": step * tokens_per_step})
                    if self.target > 0 and val_loss <= self.target and not crossing:
                        crossing = {"step": step, "train_time_s": train_time, "val_loss": val_loss,
                                    "tokens_seen": step * tokens_per_step}
                        logging.info("target validation loss %.4f first reached at step %d: %.1f s of training, "
                                     "%d tokens", self.target, step, train_time, step * tokens_per_step)
                        if self.stop_at_target:
                            status = "target"
                meta = {"train_time_s": train_time, "tokens_seen": step * tokens_per_step,
                        "data_epoch": self.loader.epoch(step), "val_loss": val_loss, "target": crossing}
                if save_now or status == "target":
                    self.ckpt.save(step, train_state, meta)
                clock = time.perf_counter()
                self.progress.start(step)
                if status == "target":
                    break
        finally:
            self.ckpt.close()
            summary = {"status": status, "step": step, "train_time_s": train_time, "val_loss": val_loss,
                       "tokens_seen": step * tokens_per_step, "params": self.exp.n_params,
                       "target_val_loss": self.target, "target_step": crossing.get("step"),
                       "target_train_time_s": crossing.get("train_time_s"), **last}
            self.writer.write(step, "summary", summary)
            self.writer.close()
            if self.plot and jax.process_index() == 0:
                metrics.plot_losses(self.writer.path, os.path.join(self.workdir, "loss.png"))
        logging.info("done: %s", summary)
        return summary
