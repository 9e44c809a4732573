"""Will it fit? Bytes per device of a training run, from abstract shapes, before launching it.

For a model, an optimizer, a mesh (data x fsdp x tensor) and a batch, `plan` adds up per device:
- parameters, optimizer state and gradients: each leaf's shard, from its logical axes and the rules
  (exact: the shapes and dtypes the trainer will create; nothing is allocated);
- activations kept for the backward pass: an analytic count per transformer layer (the residual
  stream, norm outputs, q/k/v, attention output, the MLP's hidden tensors, attention scores when the
  attention is not a fused kernel), with and without rematerialisation, plus the chunked loss.

`compiled_memory` reads the compiled step's own memory analysis where the backend gives one (small
configs on the fake CPU devices of the tests); `smallest_mesh` searches fsdp x tensor meshes of growing
size for the first that fits a device. Activation figures are estimates: XLA may keep more or less.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import AbstractMesh

from libs.train import state as state_lib
from libs.train.sharding import MESH_AXES

GIB = 1024**3


@dataclasses.dataclass
class MemoryPlan:
    """Bytes per device of one training step's state and activations."""

    mesh: dict[str, int]
    global_batch: int
    seq_len: int
    params: int
    optimizer: int
    gradients: int
    activations: int  # without rematerialisation
    activations_remat: int  # with every block rematerialised
    loss: int  # the chunked loss's logits and their gradient
    remat: bool  # what the config uses
    device_bytes: int = 0

    @property
    def devices(self) -> int:
        return math.prod(self.mesh.values())

    @property
    def total(self) -> int:
        act = self.activations_remat if self.remat else self.activations
        return self.params + self.optimizer + self.gradients + act + self.loss

    @property
    def fits(self) -> bool:
        return not self.device_bytes or self.total <= self.device_bytes

    def table(self) -> str:
        rows = [("parameters", self.params), ("optimizer state", self.optimizer), ("gradients", self.gradients),
                (f"activations{' (remat)' if self.remat else ''}",
                 self.activations_remat if self.remat else self.activations),
                (f"  (activations {'without' if self.remat else 'with'} remat)",
                 self.activations if self.remat else self.activations_remat),
                ("loss chunk", self.loss), ("total", self.total)]
        lines = [f"mesh {self.mesh} = {self.devices} devices; batch {self.global_batch} x {self.seq_len} tokens",
                 *(f"  {name:<32s} {gib(value):>10s}" for name, value in rows)]
        if self.device_bytes:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"  {verdict} in {gib(self.device_bytes)} per device "
                         f"({100 * self.total / self.device_bytes:.0f}% used)")
        return "\n".join(lines)


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def abstract_mesh(mesh: Mapping[str, int]) -> AbstractMesh:
    """A (data, fsdp, tensor) mesh of any size, with no devices behind it."""
    return AbstractMesh(tuple(int(mesh.get(a, 1)) for a in MESH_AXES), MESH_AXES)


def _bytes(tree: Any, shardings: Any, dtype=None) -> int:
    """Bytes of one device's shards of `tree` (abstract arrays) laid out by `shardings`."""
    total = 0
    for leaf, sh in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(shardings)):
        total += math.prod(sh.shard_shape(leaf.shape)) * jnp.dtype(dtype or leaf.dtype).itemsize
    return total


def state_bytes(model: nn.Module, make_tx: Callable[[Any], optax.GradientTransformation], seq_len: int,
                mesh: Mapping[str, int], rules) -> tuple[int, int, int]:
    """(parameters, optimizer state, gradients) bytes per device, with the trainer's own shardings."""
    sample = jax.ShapeDtypeStruct((1, seq_len), jnp.int32)
    with nn.logical_axis_rules(rules):
        params, logical = state_lib.param_specs(model, sample)
        tx = make_tx(params)
        shardings = state_lib.state_shardings(params, logical, tx, abstract_mesh(mesh), rules)
    opt = jax.eval_shape(tx.init, params)
    masked = optax.transforms.MaskedNode
    opt_leaves = jax.tree_util.tree_leaves(opt, is_leaf=lambda x: isinstance(x, masked))
    opt_sh = jax.tree_util.tree_leaves(shardings["opt_state"],
                                       is_leaf=lambda x: isinstance(x, (jax.sharding.Sharding, masked)))
    opt_bytes = sum(math.prod(sh.shard_shape(o.shape)) * o.dtype.itemsize
                    for o, sh in zip(opt_leaves, opt_sh) if not isinstance(o, masked))
    return (_bytes(params, shardings["params"]), opt_bytes,
            _bytes(params, shardings["params"], jnp.float32))  # gradients are accumulated in float32


@dataclasses.dataclass(frozen=True)
class Shape:
    """What the activation count needs to know of a transformer."""

    layers: int
    width: int
    q_width: int  # heads x head_dim
    kv_width: int  # kv_heads x head_dim
    heads: int
    hidden: int  # MLP hidden size
    gated: bool  # SwiGLU (three MLP tensors) or not (two)
    vocab: int
    compute_bytes: int
    stream_bytes: int
    fused_attention: bool  # a flash-style kernel (no T x T scores kept)
    loss_chunk_tokens: int


def activation_bytes(shape: Shape, tokens: int, seq_len: int, tensor: int) -> tuple[int, int, int]:
    """(activations without remat, with remat, loss) per device for `tokens` tokens on this device."""
    c, s = shape.compute_bytes, shape.stream_bytes
    per_token = (2 * s + 2 * c) * shape.width  # block input and mid-block residual; both norm outputs
    per_token += c * (2 * shape.q_width + 3 * shape.kv_width) / tensor  # q, k, v (+ rotated q, k) and output
    per_token += c * (3 if shape.gated else 2) * shape.hidden / tensor
    if not shape.fused_attention:  # scores and probabilities in float32
        per_token += 2 * 4 * shape.heads / tensor * seq_len
    layer = per_token * tokens
    no_remat = int(shape.layers * layer)
    remat = int(shape.layers * s * shape.width * tokens + layer)  # block inputs, plus one block recomputed
    chunk = min(tokens, shape.loss_chunk_tokens or tokens)
    loss = int(3 * 4 * chunk * shape.vocab / tensor)  # float32 logits, softmax and their gradient
    return no_remat, remat, loss


def plan(model: nn.Module, shape: Shape, make_tx: Callable[[Any], optax.GradientTransformation], seq_len: int,
         global_batch: int, mesh: Mapping[str, int], rules, remat: bool, device_bytes: int = 0) -> MemoryPlan:
    mesh = {a: int(mesh.get(a, 1)) for a in ("data", "fsdp", "tensor")}
    params, opt, grads = state_bytes(model, make_tx, seq_len, mesh, rules)
    batch_split = mesh["data"] * mesh["fsdp"]  # act_batch -> (data, fsdp) in the default rules
    tokens = math.ceil(global_batch / batch_split) * seq_len
    act, act_remat, loss = activation_bytes(shape, tokens, seq_len, mesh["tensor"])
    return MemoryPlan(mesh, global_batch, seq_len, params, opt, grads, act, act_remat, loss, remat, device_bytes)


def smallest_mesh(plan_for: Callable[[dict[str, int]], MemoryPlan], heads: int, kv_heads: int,
                  max_devices: int = 65536) -> MemoryPlan | None:
    """The fitting plan with the fewest devices: fsdp x tensor, tensor a power of two dividing the KV heads
    (at most 8, one node's NVLink domain), devices powers of two."""
    devices = 1
    while devices <= max_devices:
        options = []
        tensor = 1
        while tensor <= min(8, devices) and kv_heads % tensor == 0 and heads % tensor == 0:
            options.append(plan_for({"data": 1, "fsdp": devices // tensor, "tensor": tensor}))
            tensor *= 2
        fitting = [p for p in options if p.fits]
        if fitting:
            return min(fitting, key=lambda p: p.total)
        devices *= 2
    return None


def compiled_memory(lowered: Any) -> dict[str, int] | None:
    """The compiled step's memory analysis per device (None where the backend gives none)."""
    try:
        analysis = lowered.compile().memory_analysis()
    except (NotImplementedError, AttributeError):
        return None
    if analysis is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes")
    return {f: int(getattr(analysis, f, 0) or 0) for f in fields}


def transformer_shape(model: Any, fused_attention: bool) -> Shape:
    """The activation-relevant sizes of a `registry.Model` (GPT or Llama)."""
    cfg = model.cfg
    head_dim = cfg.dims_per_head
    llama = model.family == "llama"
    compute = jnp.dtype(cfg.dtype).itemsize
    stream = compute if llama else jnp.dtype(cfg.residual_stream_dtype).itemsize
    return Shape(layers=cfg.num_layers, width=cfg.model_dim, q_width=cfg.num_heads * head_dim,
                 kv_width=(cfg.num_kv_heads if llama else cfg.num_heads) * head_dim, heads=cfg.num_heads,
                 hidden=cfg.ffn_dim if llama else cfg.hidden_dim, gated=llama, vocab=cfg.vocab_size,
                 compute_bytes=compute, stream_bytes=stream, fused_attention=fused_attention,
                 loss_chunk_tokens=cfg.loss_chunk_tokens)


def plan_config(seq_len: int, global_batch: int, mesh: Mapping[str, int], device_bytes: int = 0,
                fused_attention: bool = True, total_steps: int = 1000) -> MemoryPlan:
    """`plan` for the model and optimizer of the parsed gin config (`make_model`, `make_optimizer`)."""
    from libs.models import registry  # pylint: disable=import-outside-toplevel (models import libs.train)
    from libs.train import optim, sharding  # pylint: disable=import-outside-toplevel

    model = registry.make_model()
    shape = transformer_shape(model, fused_attention)
    return plan(model.module, shape, lambda params: optim.make_optimizer(params, total_steps), seq_len,
                global_batch, mesh, sharding.logical_rules(), bool(model.cfg.remat), device_bytes)
