r"""Train-step throughput of a speedrun config on random tokens, optionally vs an anchor.

    python -m tools.bench_speedrun                       # small CPU config, < 1 min
    python -m tools.bench_speedrun --gin_file=configs/speedrun/llama3_small.gin   # any model family
    python -m tools.bench_speedrun --gin_file=configs/speedrun/gpt2_124m.gin \
        --batch=64 --steps=20 --warmup=3 --json_out=/tmp/bench.json \
        --anchor=/work/shared/anchors/jax_gpt2_ref.py

Builds the config's model, optimizer and jitted step with `trainer.build` (no
data pipeline), runs one compiling step, `--warmup` more, then times `--steps`
steps. `--batch` is per device; the global batch is batch x device count.

Several configs, one table (each config in its own subprocess, so each starts with a clean device):

    python -m tools.bench_speedrun --configs=configs/speedrun/gpt2_124m.gin,configs/speedrun/record_11.gin \
        --batch=64 --steps=20 --warmup=3 --append_to=docs/benchmarks.md

prints a markdown table of ms/step, tokens/s, MFU and peak memory per config and, with --append_to,
appends it to that file under a heading with the device and date.

With `--anchor` the plain-Flax GPT-2 reference script runs first, in a
subprocess (before this process claims the accelerator's memory), with the same
layers, width, heads, vocabulary, context and per-device batch. The anchor is
always a GPT-2 (LayerNorm, GELU, tied, learned positions) model, so compare it
with gpt2_124m.gin-based configs.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import gin
import jax
import jax.numpy as jnp
from absl import app, flags

from libs.models import gpt, registry
from libs.train import launch, metrics, trainer

DEFAULT_GIN_FILES = ["configs/speedrun/smoke.gin"]

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], f"Gin files, in order (default: {DEFAULT_GIN_FILES}).")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_BATCH = flags.DEFINE_integer("batch", 16, "Sequences per device per step.")
_MICROBATCHES = flags.DEFINE_integer("microbatches", 1, "Gradient-accumulation splits of each step.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after the compiling step.")
_ANCHOR = flags.DEFINE_string("anchor", None, "Path of jax_gpt2_ref.py to run side by side.")
_ANCHOR_TIMEOUT = flags.DEFINE_integer("anchor_timeout", 1800, "Seconds before the anchor is abandoned.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write the figures to this JSON file.")
_CONFIGS = flags.DEFINE_list("configs", [], "Several gin files, one bench each (a subprocess per config) and one "
                             "table; --gin_bindings apply to all. Excludes --gin_file and --anchor.")
_APPEND_TO = flags.DEFINE_string("append_to", None, "With --configs: append the table (with device and date) to "
                                 "this markdown file, e.g. docs/benchmarks.md.")
_CONFIG_TIMEOUT = flags.DEFINE_integer("config_timeout", 1800, "With --configs: seconds per config.")


def _train_default(name: str) -> Any:
    """The bound value of `train.<name>`, else the function's default."""
    try:
        return gin.query_parameter(f"train.{name}")
    except ValueError:
        return inspect.signature(trainer.train).parameters[name].default


def run_anchor(path: str, cfg: gpt.GPTConfig, seq_len: int, batch: int, steps: int, on_gpu: bool,
               optimizer: str, timeout: int) -> dict[str, Any]:
    """Runs the anchor script; returns its `key=value` fields (numbers parsed)."""
    cmd = [sys.executable, path, f"--layers={cfg.num_layers}", f"--dim={cfg.model_dim}",
           f"--heads={cfg.num_heads}", f"--vocab={cfg.vocab_size}", f"--seq={seq_len}",
           f"--batch={batch}", f"--steps={steps}", f"--opt={optimizer}"]
    if on_gpu:
        cmd.append("--attn=cudnn")
    print("anchor: " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("jax_ref")), None)
    if proc.returncode or line is None:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"anchor failed (exit {proc.returncode}):\n{tail}")
    fields: dict[str, Any] = {"command": cmd, "line": line}
    for key, value in re.findall(r"(\w+)=(\S+)", line):
        try:
            fields[key] = float(value.replace(",", "").rstrip("M"))
        except ValueError:
            fields[key] = value
    # The script prints whole TFLOP/s; recompute with its own FLOP count (6N + 12 L D T).
    flops_tok = 6 * fields.get("params", 0.0) * 1e6 + 12 * cfg.num_layers * cfg.model_dim * seq_len
    fields["tflops"] = flops_tok * fields.get("tok_per_s", 0.0) / 1e12
    return fields


def benchmark(batch: int, steps: int, warmup: int, microbatches: int = 1) -> dict[str, Any]:
    """Times the jitted train step of the parsed gin config on random tokens."""
    seq_len = int(_train_default("seq_len"))
    total_steps = int(_train_default("total_steps"))
    n_dev = jax.device_count()
    global_batch = batch * n_dev
    exp = trainer.build(total_steps, seq_len, global_batch_size=global_batch, microbatches=microbatches)
    cfg = exp.cfg
    high = min(cfg.vocab_size, cfg.logit_vocab_size or cfg.vocab_size, 50257)
    with exp.context():
        keys = jax.random.split(jax.random.PRNGKey(1234))
        inputs, targets = (jax.device_put(jax.random.randint(k, (global_batch, seq_len), 0, high, jnp.int32),
                                          exp.batch_sharding) for k in keys)
        state = exp.init_state(0)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        state, out = exp.step_fn(state, inputs, targets)
        jax.block_until_ready((state, out))
        compile_s = time.perf_counter() - t0
        for _ in range(warmup):
            state, out = exp.step_fn(state, inputs, targets)
        jax.block_until_ready((state, out))
        t0 = time.perf_counter()
        for _ in range(steps):
            state, out = exp.step_fn(state, inputs, targets)
        jax.block_until_ready((state, out))
        step_s = (time.perf_counter() - t0) / max(steps, 1)
    tokens_per_step = global_batch * seq_len
    tok_s = tokens_per_step / step_s
    peak = metrics.peak_flops()
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "device_kind": jax.devices()[0].device_kind,
        "device_count": n_dev,
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "params": int(exp.n_params),
        "flops_per_token": float(exp.flops_per_token),
        "family": type(cfg).__name__, "layers": cfg.num_layers, "model_dim": cfg.model_dim,
        "num_heads": cfg.num_heads, "num_kv_heads": getattr(cfg, "num_kv_heads", cfg.num_heads),
        "vocab_size": cfg.vocab_size, "dtype": cfg.dtype,
        "seq_len": seq_len, "batch_per_device": batch, "global_batch": global_batch,
        "microbatches": microbatches, "tokens_per_step": tokens_per_step,
        "steps": steps, "warmup": warmup,
        "compile_s": compile_s,
        "ms_per_step": step_s * 1e3,
        "tokens_per_s": tok_s,
        "tflops": tok_s * exp.flops_per_token / 1e12,
        "peak_flops_per_device": peak,
        "mfu": tok_s * exp.flops_per_token / (peak * n_dev) if peak else None,
        "peak_mem_bytes": stats.get("peak_bytes_in_use"),
        "final_loss": float(jax.device_get(out)["loss"]),
    }


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def report(r: dict[str, Any]) -> str:
    mem = r["peak_mem_bytes"]
    lines = [
        f"device         {r['device_kind']} x{r['device_count']} ({r['backend']}), jax {r['jax_version']}",
        f"model          {r['family']}, {r['params'] / 1e6:.2f}M params, {r['layers']} layers x "
        f"{r['model_dim']} wide, {r['num_heads']} heads ({r['num_kv_heads']} K/V), vocab {r['vocab_size']}, "
        f"{r['dtype']}",
        f"FLOPs/token    {r['flops_per_token']:.4g}",
        f"batch          {r['global_batch']} x {r['seq_len']} = {r['tokens_per_step']:,} tokens/step "
        f"({r['batch_per_device']}/device, {r['microbatches']} microbatch(es))",
        f"compile        {r['compile_s']:.2f} s (first step)",
        f"step time      {r['ms_per_step']:.2f} ms/step (mean of {r['steps']} after {r['warmup']} warmup)",
        f"throughput     {r['tokens_per_s']:,.0f} tokens/s, {r['tflops']:.3f} TFLOP/s achieved",
        f"MFU            {_fmt(r['mfu'] and 100 * r['mfu'], '.1f')}{'%' if r['mfu'] else ''}",
        f"peak memory    {_fmt(mem and mem / 2**30, '.2f')}{' GiB' if mem else ''} (device 0)",
        f"final loss     {r['final_loss']:.4f}",
    ]
    return "\n".join(lines)


def compare(r: dict[str, Any], a: dict[str, Any]) -> str:
    peak = r["peak_flops_per_device"]
    rows = [
        ("params", f"{r['params'] / 1e6:.2f}M", f"{a.get('params', float('nan')):.2f}M"),
        ("compile s", f"{r['compile_s']:.2f}", _fmt(a.get("compile_s"), ".1f")),
        ("ms/step", f"{r['ms_per_step']:.2f}", _fmt(a.get("ms_per_step"), ".2f")),
        ("tokens/s (per device)", f"{r['tokens_per_s'] / r['device_count']:,.0f}", _fmt(a.get("tok_per_s"), ",.0f")),
        ("TFLOP/s (per device)", f"{r['tflops'] / r['device_count']:.3f}", _fmt(a.get("tflops"), ".3f")),
        ("MFU", _fmt(r["mfu"], ".3f"), _fmt(peak and a.get("tflops", 0) * 1e12 / peak, ".3f")),
        ("peak mem GiB", _fmt(r["peak_mem_bytes"] and r["peak_mem_bytes"] / 2**30, ".2f"),
         _fmt(a.get("peak_mem_gib"), ".1f")),
    ]
    out = [f"{'':24s}{'speedrun':>16s}{'anchor':>16s}"] + [f"{k:24s}{s:>16s}{t:>16s}" for k, s, t in rows]
    out.append(f"ratio speedrun/anchor step time: {r['anchor_ratio']:.3f} "
               f"({'slower' if r['anchor_ratio'] > 1 else 'faster'} than the anchor)")
    return "\n".join(out)


def bench_configs(configs: list[str], common: list[str], timeout: int) -> list[dict[str, Any]]:
    """One subprocess bench per config; a failed config gets a row with its error's last line."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, config in enumerate(configs):
            out = os.path.join(tmp, f"{index}.json")
            cmd = [sys.executable, "-m", "tools.bench_speedrun", f"--gin_file={config}", f"--batch={_BATCH.value}",
                   f"--steps={_STEPS.value}", f"--warmup={_WARMUP.value}", f"--microbatches={_MICROBATCHES.value}",
                   f"--json_out={out}", *[f"--gin_bindings={b}" for b in common]]
            print(f"[{index + 1}/{len(configs)}] {config}", flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
                error = None if proc.returncode == 0 else ((proc.stderr or proc.stdout).strip().splitlines()
                                                           or [f"exit {proc.returncode}"])[-1]
            except subprocess.TimeoutExpired:
                error = f"no result within --config_timeout={timeout} s"
            if error is None:
                with open(out) as f:
                    rows.append({"config": config, **json.load(f)})
                print(f"    {rows[-1]['ms_per_step']:.2f} ms/step", flush=True)
            else:
                rows.append({"config": config, "error": error})
                print(f"    failed: {error}", flush=True)
    return rows


def config_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per config."""
    lines = ["| config | params | tokens/step | ms/step | tokens/s | MFU | peak memory | compile |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['config']}` | failed: {r['error'][:120]} | | | | | | |")
            continue
        mem = r["peak_mem_bytes"]
        lines.append(f"| `{r['config']}` | {r['params'] / 1e6:.2f}M | {r['tokens_per_step']:,} | "
                     f"{r['ms_per_step']:.2f} | {r['tokens_per_s']:,.0f} | "
                     f"{_fmt(r['mfu'] and 100 * r['mfu'], '.1f')}{'%' if r['mfu'] else ''} | "
                     f"{_fmt(mem and mem / 2**30, '.2f')}{' GiB' if mem else ''} | {r['compile_s']:.1f} s |")
    return "\n".join(lines)


def _main_configs() -> None:
    if _GIN_FILE.value or _ANCHOR.value:
        print("error: --configs runs each config alone; drop --gin_file / --anchor", file=sys.stderr)
        sys.exit(launch.EXIT_USER_ERROR)
    missing = [c for c in _CONFIGS.value if not os.path.isfile(c)]
    if missing:
        print(f"error: --configs: no such gin file: {missing[0]}", file=sys.stderr)
        sys.exit(launch.EXIT_USER_ERROR)
    rows = bench_configs(_CONFIGS.value, _GIN_BINDINGS.value, _CONFIG_TIMEOUT.value)
    done = [r for r in rows if "error" not in r]
    device = (f"{done[0]['device_kind']} x{done[0]['device_count']} ({done[0]['backend']}), jax "
              f"{done[0]['jax_version']}") if done else "unknown device (every config failed)"
    command = " ".join(["python -m tools.bench_speedrun", f"--configs={','.join(_CONFIGS.value)}",
                        f"--batch={_BATCH.value}", f"--steps={_STEPS.value}", f"--warmup={_WARMUP.value}",
                        *[f"--gin_bindings='{b}'" for b in _GIN_BINDINGS.value]])
    section = (f"\n## Configs side by side: {device}, {time.strftime('%Y-%m-%d %H:%M %Z')}\n\n"
               f"`{command}` (batch per device; mean of the timed steps after the compiling and warmup steps; "
               f"random tokens)\n\n{config_table(rows)}\n")
    print(section)
    if _APPEND_TO.value:
        with open(_APPEND_TO.value, "a") as f:
            f.write(section)
        print(f"appended to {_APPEND_TO.value}")
    if _JSON_OUT.value:
        with open(_JSON_OUT.value, "w") as f:
            json.dump(rows, f, indent=2)
    if len(done) < len(rows):
        sys.exit(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIGS.value:
        _main_configs()
        return
    gin_files = _GIN_FILE.value or DEFAULT_GIN_FILES
    try:
        launch.parse_config(gin_files, _GIN_BINDINGS.value)
    except launch.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(launch.EXIT_USER_ERROR)
    anchor = None
    if _ANCHOR.value:
        # Before this process touches a device: XLA would claim most accelerator memory.
        spec = registry.make_model()
        if spec.family != "gpt":
            print(f"error: --anchor is a GPT-2 script; make_model.family={spec.family!r} has no anchor",
                  file=sys.stderr)
            sys.exit(launch.EXIT_USER_ERROR)
        cfg = spec.cfg
        platforms = (jax.config.jax_platforms or "").lower()
        on_gpu = "cuda" in platforms or "gpu" in platforms or (not platforms and _gpu_visible())
        kind = str(_query("make_optimizer.kind", "adamw"))
        if cfg.norm != "layernorm" or not cfg.tie_embeddings or cfg.positional != "learned":
            print("note: the anchor is a GPT-2 (LayerNorm, tied, learned positions); this config differs")
        anchor = run_anchor(_ANCHOR.value, cfg, int(_train_default("seq_len")), _BATCH.value, _STEPS.value,
                            on_gpu, "muon" if kind == "muon" else "adamw", _ANCHOR_TIMEOUT.value)
    try:
        result = benchmark(_BATCH.value, _STEPS.value, _WARMUP.value, _MICROBATCHES.value)
    except launch.UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(launch.EXIT_USER_ERROR)
    result.update(gin_files=list(gin_files), gin_bindings=list(_GIN_BINDINGS.value))
    print(report(result))
    if anchor is not None:
        result["anchor"] = anchor
        result["anchor_ratio"] = result["ms_per_step"] / anchor["ms_per_step"]
        print(anchor["line"])
        print(compare(result, anchor))
    if _JSON_OUT.value:
        with open(_JSON_OUT.value, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {_JSON_OUT.value}")


def _query(name: str, default: Any) -> Any:
    try:
        return gin.query_parameter(name)
    except ValueError:
        return default


def _gpu_visible() -> bool:
    """Whether a CUDA device is present, without initialising a JAX backend."""
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


if __name__ == "__main__":
    app.run(main)
