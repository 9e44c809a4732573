#!/usr/bin/env bash
# GPU speed check of the speedrun train step (docs/benchmarks.md, "Speedrun train step").
#
#   bash tools/gpu_check.sh [ANCHOR]      # run from the repo root, on a machine with a GPU
#
# Prints nvidia-smi, the Python/JAX versions and jax.devices(), then times
#   1. configs/speedrun/gpt2_124m.gin at 64 x 1024 tokens/step, side by side with the plain-Flax anchor;
#   2. configs/speedrun/record_11.gin at the same shape;
#   3. configs/speedrun/record_21.gin at its real per-device batch: one packed row of 49,152 tokens.
# Everything (logs and JSON figures) goes to ${OUT:-/tmp/gpu_check}. Each bench runs even if the other
# failed; the exit status is non-zero if any did.
#
# ANCHOR (first argument, or env ANCHOR): path of jax_gpt2_ref.py. Default: the first of
# shared/anchors/, .device/anchors/, ../shared/anchors/ that holds it; none -> the anchor is skipped.
# PYTHON (env) picks the interpreter (default python3). Missing packages (gin-config, tensorboardX)
# must be importable already, e.g. from wheels installed with pip --target and put on PYTHONPATH.
set -u -o pipefail

OUT="${OUT:-/tmp/gpu_check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

ANCHOR="${1:-${ANCHOR:-}}"
if [ -z "$ANCHOR" ]; then
  for p in shared/anchors/jax_gpt2_ref.py .device/anchors/jax_gpt2_ref.py ../shared/anchors/jax_gpt2_ref.py; do
    if [ -f "$p" ]; then ANCHOR="$p"; break; fi
  done
fi
ANCHOR_FLAG=()
if [ -n "$ANCHOR" ] && [ -f "$ANCHOR" ]; then
  ANCHOR_FLAG=(--anchor="$ANCHOR")
else
  echo "gpu_check: no anchor script found (${ANCHOR:-none given}); the gpt2_124m bench runs without it"
fi

{
  date -u
  nvidia-smi || echo "gpu_check: nvidia-smi failed"
  "$PY" -c 'import sys, jax, jaxlib, flax, optax, gin; print(sys.version); print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "flax", flax.__version__, "optax", optax.__version__, "gin", gin.__file__); print(jax.devices())'
} 2>&1 | tee "$OUT/env.log"
env_rc=$?

"$PY" -m tools.bench_speedrun --gin_file=configs/speedrun/gpt2_124m.gin --batch=64 --steps=20 --warmup=3 \
  --json_out="$OUT/bench_gpt2.json" ${ANCHOR_FLAG[@]+"${ANCHOR_FLAG[@]}"} 2>&1 | tee "$OUT/bench_gpt2.log"
gpt2_rc=$?

"$PY" -m tools.bench_speedrun --gin_file=configs/speedrun/record_11.gin --batch=64 --steps=20 --warmup=3 \
  --json_out="$OUT/bench_r11.json" 2>&1 | tee "$OUT/bench_r11.log"
r11_rc=$?

"$PY" -m tools.bench_speedrun --gin_file=configs/speedrun/record_21.gin --batch=1 --steps=20 --warmup=3 \
  --json_out="$OUT/bench_r21.json" 2>&1 | tee "$OUT/bench_r21.log"
r21_rc=$?

echo "gpu_check: exit codes env=$env_rc gpt2_124m=$gpt2_rc record_11=$r11_rc record_21=$r21_rc"
[ "$env_rc" -eq 0 ] && [ "$gpt2_rc" -eq 0 ] && [ "$r11_rc" -eq 0 ] && [ "$r21_rc" -eq 0 ]
