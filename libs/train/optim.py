"""Optimizers and learning-rate schedules, configured by gin.

`make_optimizer` builds either plain AdamW over every parameter (the llm.c
baseline) or the speedrun split: Muon on the hidden matrices of the blocks and
Adam on embeddings, head, norms, biases and scalars. Every learning rate follows
one schedule shape (`lr_schedule`) scaled by its own peak value. Every value
check raises `ConfigError` naming its parameter, so the launcher reports one line.
"""

from __future__ import annotations

from typing import Any

import gin
import jax
import jax.numpy as jnp
import optax

from libs.train.launch import ConfigError

MUON_SCALES = ("out_in", "max_dim", "none")


@gin.configurable
def lr_schedule(
    total_steps: int,
    warmup_fraction: float = 0.0,
    decay: str = "cosine",
    decay_fraction: float = 0.0,
    final_fraction: float = 0.0,
) -> optax.Schedule:
    """A multiplier in [0, 1] over steps; phases are fractions of `total_steps`.

    Fractions rather than step counts keep a record's schedule shape when a proxy
    run or an ablation changes the number of steps. Linear warmup over the first
    `warmup_fraction` of training, then:
      "cosine": cosine decay to `final_fraction` at the end (llm.c);
      "linear": linear decay to `final_fraction` at the end;
      "trapezoid": constant, then a linear decay to `final_fraction` over the last
        `decay_fraction` of training (the speedrun's warmdown);
      "constant": no decay.
    """
    _check_steps("lr_schedule", total_steps)
    if decay not in ("cosine", "linear", "trapezoid", "constant"):
        raise ConfigError(f"lr_schedule.decay={decay!r}: expected cosine, linear, trapezoid or constant")
    for name, value in (("warmup_fraction", warmup_fraction), ("decay_fraction", decay_fraction),
                        ("final_fraction", final_fraction)):
        _check_range(f"lr_schedule.{name}", value, 0.0, 1.0)
    if decay == "trapezoid" and warmup_fraction + decay_fraction > 1.0:
        raise ConfigError(
            f"lr_schedule.decay_fraction={decay_fraction!r}: warmup ({warmup_fraction!r}) and warmdown "
            "overlap (their sum exceeds 1)"
        )
    warmup_steps = warmup_fraction * total_steps
    decay_steps = max(decay_fraction * total_steps, 1.0)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = jnp.minimum(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        if decay == "constant":
            return warm
        if decay == "trapezoid":
            frac = jnp.clip((step - (total_steps - decay_steps)) / decay_steps, 0.0, 1.0)
        else:
            frac = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1.0), 0.0, 1.0)
        shape = 0.5 * (1.0 + jnp.cos(jnp.pi * frac)) if decay == "cosine" else 1.0 - frac
        return warm * (final_fraction + (1.0 - final_fraction) * shape)

    return schedule


@gin.configurable
def momentum_warmup(
    total_steps: int, start: float = 0.85, end: float = 0.95, fraction: float = 0.0
) -> optax.Schedule | float:
    """Muon momentum ramped linearly from `start` to `end` over the first `fraction` of training."""
    _check_steps("momentum_warmup", total_steps)
    _check_range("momentum_warmup.start", start, 0.0, 1.0, high_open=True)
    _check_range("momentum_warmup.end", end, 0.0, 1.0, high_open=True)
    _check_range("momentum_warmup.fraction", fraction, 0.0, 1.0)
    steps = fraction * total_steps
    if steps <= 0:
        return end
    return lambda step: start + (end - start) * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / steps)


@gin.configurable
def window_schedule(total_steps: int, block_size: int, start_tokens: int = 0, growth_tokens: int = 0,
                    quantum: int = 1, rounding: str = "floor") -> optax.Schedule | None:
    """The sliding-window width over training, in blocks of `block_size` (GPTConfig.window_block_size).

    tokens = quantum * round((start_tokens + growth_tokens * step / total_steps) / quantum), with `rounding`
    "floor" or "ceil"; the result is tokens // block_size, clipped by the model to [1, max_window_blocks].
    No growth (the default) gives None: the model's largest window throughout. The records' schedules:
    13 (token windows): start 64, growth 1728, quantum 64, floor; 16: start 128, growth 1728, quantum 128,
    floor (their (64 + frac * 1728 + 64) // 128); 19+: start 0, growth 1728, quantum 128, ceil.
    """
    _check_steps("window_schedule", total_steps)
    if rounding not in ("floor", "ceil"):
        raise ConfigError(f"window_schedule.rounding={rounding!r}: expected 'floor' or 'ceil'")
    if quantum < 1 or quantum % block_size:
        raise ConfigError(f"window_schedule.quantum={quantum}: expected a positive multiple of the window block "
                          f"size {block_size}")
    if growth_tokens == 0:
        return None
    if start_tokens < 0 or growth_tokens < 0:
        raise ConfigError(f"window_schedule: start_tokens={start_tokens} and growth_tokens={growth_tokens} must "
                          "be 0 or more")
    den = quantum * total_steps

    def blocks(step):  # integer arithmetic: the records' float formulas land exactly on their boundaries
        num = start_tokens * total_steps + growth_tokens * jnp.asarray(step, jnp.int32)
        quanta = num // den if rounding == "floor" else -((-num) // den)
        return (quantum * quanta) // block_size

    return blocks


@gin.configurable
def make_optimizer(
    params: Any,
    total_steps: int,
    kind: str = "adamw",
    adam_lr: float = 6e-4,
    embed_lr: float = 0.0,
    head_lr: float = 0.0,
    scalar_lr: float = 0.0,
    muon_lr: float = 0.02,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    muon_weight_decay: float = 0.0,
    muon_nesterov: bool = True,
    muon_ns_steps: int = 5,
    muon_scale: str = "out_in",
    grad_clip: float = 1.0,
    grad_normalize: bool = False,
) -> optax.GradientTransformation:
    """AdamW everywhere (`kind="adamw"`) or Muon + Adam (`kind="muon"`).

    In the Muon split the groups are: "muon" for 2-D kernels inside blocks,
    "embed" for embedding tables, "head" for an untied head and "scalar" for
    everything else (norms, biases, mixing scalars); `embed_lr`, `head_lr` and
    `scalar_lr` default to `adam_lr` when 0. Weight decay applies to matrices only.

    `muon_scale` sets the per-matrix update scale for a (fan_in, fan_out) kernel:
    "out_in" sqrt(max(1, fan_out / fan_in)) (records 8+, optax's default),
    "max_dim" sqrt(max(fan_in, fan_out)) (records 4-7), "none" 1 (record 3).
    `grad_normalize` divides each parameter's gradient by its norm (record 2)
    instead of clipping the global norm. A fused QKV kernel is one parameter to
    both: one Newton-Schulz orthogonalisation, one norm, its own shape's scale.
    """
    _check_steps("make_optimizer", total_steps)
    if kind not in ("adamw", "muon"):
        raise ConfigError(f"make_optimizer.kind={kind!r}: expected 'adamw' or 'muon'")
    if muon_scale not in MUON_SCALES:
        raise ConfigError(f"make_optimizer.muon_scale={muon_scale!r}: expected one of {MUON_SCALES}")
    for name, value in (("adam_lr", adam_lr), ("muon_lr", muon_lr), ("eps", eps)):
        if not value > 0:
            raise ConfigError(f"make_optimizer.{name}={value!r}: expected a positive number")
    for name, value in (("embed_lr", embed_lr), ("head_lr", head_lr), ("scalar_lr", scalar_lr),
                        ("weight_decay", weight_decay), ("muon_weight_decay", muon_weight_decay),
                        ("grad_clip", grad_clip)):
        if not value >= 0:
            raise ConfigError(f"make_optimizer.{name}={value!r}: expected 0 or more")
    _check_range("make_optimizer.b1", b1, 0.0, 1.0, high_open=True)
    _check_range("make_optimizer.b2", b2, 0.0, 1.0, high_open=True)
    if muon_ns_steps < 1:
        raise ConfigError(f"make_optimizer.muon_ns_steps={muon_ns_steps!r}: expected a positive integer")
    sched = lr_schedule(total_steps)
    if grad_normalize:
        clip = normalize_per_parameter()
    else:
        clip = optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity()

    def adam(lr, decay):
        return optax.inject_hyperparams(optax.adamw)(
            learning_rate=lambda s: lr * sched(s), b1=b1, b2=b2, eps=eps, weight_decay=decay, mask=_matrix_mask
        )

    if kind == "adamw":
        return optax.chain(clip, adam(adam_lr, weight_decay))
    muon = optax.inject_hyperparams(optax.contrib.muon)(
        learning_rate=lambda s: muon_lr * sched(s),
        beta=momentum_warmup(total_steps),
        weight_decay=muon_weight_decay,
        nesterov=muon_nesterov,
        ns_steps=muon_ns_steps,
    )
    if muon_scale != "out_in":
        muon = optax.chain(muon, _muon_rescale(muon_scale))
    groups = {
        "muon": muon,
        "embed": adam(embed_lr or adam_lr, 0.0),
        "head": adam(head_lr or adam_lr, 0.0),
        "scalar": adam(scalar_lr or adam_lr, 0.0),
    }
    return optax.chain(clip, optax.multi_transform(groups, param_groups(params)))


def param_groups(params: Any) -> Any:
    """Labels each parameter "muon", "embed", "head" or "scalar" by its path and rank."""

    def label(path, leaf):
        keys = [str(getattr(k, "key", k)) for k in path]
        if any(k.startswith("block_") for k in keys) and leaf.ndim == 2:
            return "muon"
        if keys[0] == "head":
            return "head"
        if keys[0] == "embed" or keys[0].startswith("value_embed_") or keys[0] == "pos_embed":
            return "embed"
        return "scalar"

    return jax.tree_util.tree_map_with_path(label, params)


def normalize_per_parameter(eps: float = 1e-6) -> optax.GradientTransformation:
    """Divides each parameter's gradient by its own norm (record 2's replacement for clipping)."""
    return optax.stateless(lambda g, _: jax.tree_util.tree_map(lambda x: x / (jnp.linalg.norm(x) + eps), g))


def _muon_rescale(mode: str) -> optax.GradientTransformation:
    """Turns optax's sqrt(max(1, fan_out / fan_in)) Muon scale into another convention."""
    if mode not in ("max_dim", "none"):
        raise ConfigError(f"make_optimizer.muon_scale={mode!r}: expected 'max_dim' or 'none' here")

    def factor(shape):
        fan_in, fan_out = shape
        default = max(1.0, fan_out / fan_in) ** 0.5
        return (max(fan_in, fan_out) ** 0.5 if mode == "max_dim" else 1.0) / default

    return optax.stateless(lambda u, _: jax.tree_util.tree_map(lambda x: x * factor(x.shape), u))


def _matrix_mask(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)


def _check_steps(where: str, total_steps: int) -> None:
    if not total_steps > 0:
        raise ConfigError(f"{where}: total_steps={total_steps!r} (train.total_steps): expected a positive integer")


def _check_range(name: str, value: float, low: float, high: float, high_open: bool = False) -> None:
    inside = low <= value < high if high_open else low <= value <= high
    if not inside:
        raise ConfigError(f"{name}={value!r}: expected a value in [{low}, {high}{')' if high_open else ']'}")
