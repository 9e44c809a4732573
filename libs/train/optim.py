"""Optimizers and learning-rate schedules, configured by gin.

`make_optimizer` builds either plain AdamW over every parameter (the llm.c
baseline) or the speedrun split: Muon on the hidden matrices of the blocks and
Adam on embeddings, head, norms, biases and scalars. Every learning rate follows
one schedule shape (`lr_schedule`) scaled by its own peak value.
"""

from __future__ import annotations

from typing import Any

import gin
import jax
import jax.numpy as jnp
import optax


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
    if decay not in ("cosine", "linear", "trapezoid", "constant"):
        raise ValueError(f"lr_schedule.decay={decay!r}: expected cosine, linear, trapezoid or constant")
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
    steps = fraction * total_steps
    if steps <= 0:
        return end
    return lambda step: start + (end - start) * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / steps)


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
    instead of clipping the global norm.
    """
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
    if kind != "muon":
        raise ValueError(f"make_optimizer.kind={kind!r}: expected 'adamw' or 'muon'")
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
        raise ValueError(f"make_optimizer.muon_scale={mode!r}: expected 'out_in', 'max_dim' or 'none'")

    def factor(shape):
        fan_in, fan_out = shape
        default = max(1.0, fan_out / fan_in) ** 0.5
        return (max(fan_in, fan_out) ** 0.5 if mode == "max_dim" else 1.0) / default

    return optax.stateless(lambda u, _: jax.tree_util.tree_map(lambda x: x * factor(x.shape), u))


def _matrix_mask(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)
