r"""Packed-document sliding-window attention: correctness and speed of each implementation (GPU).

    python -m tools.bench_packed_attention --json_out=/tmp/packed_attention.json

1. Correctness: at --check_len tokens, bf16 inputs, every implementation against the float32 dense reference
   (max abs error of the output and of the input gradients).
2. Speed: forward + backward of one attention layer at the record shape (one sequence of --length tokens,
   --heads heads of --head_dim, windows of --window_blocks blocks of 128), median of --iters timed calls, for
   "banded" (XLA) and "banded_cudnn" at each --chunks, side by side with two anchors that do *not* mask
   documents: cuDNN causal attention over the whole sequence, and cuDNN's static sliding window of the same
   width (what FlashAttention-3's window does; the floor the banded kernels are measured against).
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from libs.models import packed_attention as pa

_LENGTH = flags.DEFINE_integer("length", 49152, "Tokens per sequence (record 21: 48K per device).")
_HEADS = flags.DEFINE_integer("heads", 6, "Attention heads.")
_HEAD_DIM = flags.DEFINE_integer("head_dim", 128, "Head dimension.")
_WINDOW = flags.DEFINE_integer("window_blocks", 14, "Window in blocks of 128 (1792 tokens at the records' end).")
_CHUNKS = flags.DEFINE_list("chunks", ["1024", "2048", "4096", "8192"], "Queries per band to time.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed calls per variant.")
_CHECK_LEN = flags.DEFINE_integer("check_len", 4096, "Tokens of the correctness check.")
_JSON = flags.DEFINE_string("json_out", "", "Write the figures here.")
BLOCK = 128


def _inputs(length, dtype, seed=0, mean_doc=1500):
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    shape = (1, length, _HEADS.value, _HEAD_DIM.value)
    q, k, v = (jax.random.normal(key, shape, dtype) for key in keys[:3])
    starts = jax.random.uniform(keys[3], (1, length)) < 1.0 / mean_doc  # documents of ~mean_doc tokens
    return q, k, v, jnp.cumsum(starts, axis=-1, dtype=jnp.int32)


def _value_and_grads(fn):
    def loss(q, k, v, cot):
        return jnp.sum(fn(q, k, v).astype(jnp.float32) * cot)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def check(length) -> dict:
    q, k, v, seg = _inputs(length, jnp.bfloat16, seed=1)
    cot = jax.random.normal(jax.random.PRNGKey(2), q.shape, jnp.float32)
    f32 = [x.astype(jnp.float32) for x in (q, k, v)]
    window = jnp.int32(_WINDOW.value // 2)
    ref = _value_and_grads(lambda q, k, v: pa.reference_attention(q, k, v, seg, window, BLOCK))
    _, want = ref(*f32, cot)
    want_out = pa.reference_attention(*f32, seg, window, BLOCK)
    out = {}
    for impl in ("banded", "banded_cudnn") if jax.default_backend() == "gpu" else ("banded",):
        attn = pa.PackedAttention(block_size=BLOCK, max_window_blocks=_WINDOW.value, chunk=1024, impl=impl)
        got_out = attn(q, k, v, seg, window)
        _, got = _value_and_grads(lambda q, k, v: attn(q, k, v, seg, window))(q, k, v, cot)
        out[impl] = {"max_abs_err_out": float(jnp.max(jnp.abs(got_out.astype(jnp.float32) - want_out))),
                     "max_rel_err_grads": [float(jnp.max(jnp.abs(g.astype(jnp.float32) - w)) / jnp.max(jnp.abs(w)))
                                           for g, w in zip(got, want)]}
        print(f"check at {length} tokens, window {int(window)} blocks: {impl}: {out[impl]}", flush=True)
    return out


def _time(fn, args) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(_ITERS.value):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def speed() -> list[dict]:
    length, window = _LENGTH.value, _WINDOW.value
    q, k, v, seg = _inputs(length, jnp.bfloat16)
    cot = jax.random.normal(jax.random.PRNGKey(3), q.shape, jnp.float32)
    variants = {
        "anchor: cuDNN causal, whole sequence, no document mask":
            lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn"),
        f"anchor: cuDNN causal static window {window * BLOCK}, no document mask":
            lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn",
                                                         local_window_size=(window * BLOCK - 1, 0)),
    }
    for impl in ("banded", "banded_cudnn") if jax.default_backend() == "gpu" else ("banded",):
        for chunk in (int(c) for c in _CHUNKS.value):
            attn = pa.PackedAttention(block_size=BLOCK, max_window_blocks=window, chunk=chunk, impl=impl)
            variants[f"{impl} chunk {chunk}"] = (lambda a: lambda q, k, v: a(q, k, v, seg, jnp.int32(window)))(attn)
    rows = []
    for name, fn in variants.items():
        try:
            ms = _time(_value_and_grads(fn), (q, k, v, cot))
            rows.append({"variant": name, "ms_fwd_bwd": ms, "tokens_per_s": length / ms * 1e3})
        except Exception as e:  # noqa: BLE001 -- one failing variant must not hide the others' figures
            rows.append({"variant": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})
        print(rows[-1], flush=True)
    return rows


def main(argv):
    del argv
    device = jax.devices()[0]
    result = {"device": f"{device.platform} {getattr(device, 'device_kind', '')}", "jax": jax.__version__,
              "length": _LENGTH.value, "heads": _HEADS.value, "head_dim": _HEAD_DIM.value,
              "window_blocks": _WINDOW.value, "check": check(_CHECK_LEN.value), "speed": speed()}
    print(f"\n{result['device']}, jax {jax.__version__}: one layer, fwd+bwd, {_LENGTH.value} tokens, "
          f"{_HEADS.value}x{_HEAD_DIM.value}, window {_WINDOW.value}x{BLOCK}")
    for row in result["speed"]:
        print(f"  {row['variant']:<60} " + (f"{row['ms_fwd_bwd']:8.2f} ms" if "ms_fwd_bwd" in row else row["error"]))
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    app.run(main)
