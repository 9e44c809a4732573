"""Sharded train state: abstract shapes -> shardings -> jit(init, out_shardings).

The state is a plain dict {"step", "params", "opt_state", "rng"} so that orbax
saves and restores it without custom types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh

from libs.train import sharding


def param_specs(model: nn.Module, sample_inputs: jax.ShapeDtypeStruct) -> tuple[Any, Any]:
    """Abstract (unboxed) params and their logical PartitionSpecs, without computing anything."""
    boxed = jax.eval_shape(model.init, jax.random.key(0), sample_inputs)["params"]
    return strip_boxes(boxed), nn.get_partition_spec(boxed)


def strip_boxes(tree: Any) -> Any:
    """Removes flax's partitioning metadata boxes without adding sharding constraints."""
    is_box = lambda x: isinstance(x, nn.Partitioned)
    return jax.tree_util.tree_map(lambda x: x.value if is_box(x) else x, tree, is_leaf=is_box)


def state_shardings(
    abstract_params: Any, logical_specs: Any, tx: optax.GradientTransformation, mesh: Mesh, rules
) -> dict[str, Any]:
    """NamedShardings for every leaf of the train state.

    Optimizer moments follow their parameter's sharding; optimizer scalars
    (counts, injected hyperparameters) and the step and RNG are replicated.
    """
    param_sh = sharding.logical_to_sharding(logical_specs, mesh, rules)
    replicated = sharding.replicated(mesh)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    masked = optax.transforms.MaskedNode  # multi_transform's placeholder for other groups' params
    opt_sh = optax.tree_map_params(
        tx,
        lambda leaf, sh: leaf if isinstance(leaf, masked) else sh,
        abstract_opt,
        param_sh,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, (jax.sharding.Sharding, masked)),
    )
    return {"step": replicated, "params": param_sh, "opt_state": opt_sh, "rng": replicated}


def _init_fn(model: nn.Module, tx: optax.GradientTransformation, sample_inputs) -> Callable:
    def init(rng):
        init_rng, state_rng = jax.random.split(rng)
        tokens = jnp.zeros(sample_inputs.shape, sample_inputs.dtype)
        params = strip_boxes(model.init(init_rng, tokens)["params"])
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params), "rng": state_rng}

    return init


def _seed_key(seed: int) -> jax.Array:
    return jax.random.key_data(jax.random.key(seed))


def create_state(
    model: nn.Module, tx: optax.GradientTransformation, sample_inputs, shardings: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Initialises params and optimizer state directly into their shards."""
    return jax.jit(_init_fn(model, tx, sample_inputs), out_shardings=shardings)(_seed_key(seed))


def abstract_state(
    model: nn.Module, tx: optax.GradientTransformation, sample_inputs, shardings: dict[str, Any]
) -> Any:
    """The state's shapes, dtypes and shardings (for restoring a checkpoint)."""
    shapes = jax.eval_shape(_init_fn(model, tx, sample_inputs), _seed_key(0))
    return jax.tree_util.tree_map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )


def make_train_step(
    loss_fn: Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array],
    tx: optax.GradientTransformation,
    microbatches: int,
) -> Callable:
    """A pure train step: (state, inputs, targets) -> (state, metrics); loss_fn(params, inputs, targets, step)
    sees the (traced) step, for schedules of model inputs such as the attention window.

    With `microbatches` > 1 the batch is split along its rows and the gradients
    are accumulated in float32 over a scan (also for parameters stored in
    bfloat16, whose gradients are cast back to their dtype at the end), so the
    update equals one full batch.
    """

    def grads_of(params, inputs, targets, step):
        if microbatches == 1:
            return jax.value_and_grad(loss_fn)(params, inputs, targets, step)
        rows = inputs.shape[0] // microbatches
        # (rows, micro, T) keeps each device's rows together; scan over `micro`.
        split = lambda a: jnp.moveaxis(a.reshape(rows, microbatches, *a.shape[1:]), 1, 0)

        def body(carry, mb):
            loss, grads = jax.value_and_grad(loss_fn)(params, *mb, step)
            return jax.tree_util.tree_map(jnp.add, carry, (loss, grads)), None

        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros_like(p, jnp.float32), params)
        (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), (split(inputs), split(targets)))
        grads = jax.tree_util.tree_map(lambda g, p: (g / microbatches).astype(p.dtype), grads, params)
        return loss / microbatches, grads

    def train_step(state, inputs, targets):
        loss, grads = grads_of(state["params"], inputs, targets, state["step"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state, "rng": state["rng"]}
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return train_step
