r"""Reference costs of the record ladder at proxy scale, for the speedrunning benchmark's FSR.

    python -m tools.speedrun_bench_refs --out=docs/speedrun_bench_refs.md --seeds=0,1,2
    python -m tools.speedrun_bench_refs --records=gpt2_124m,record_02 --target=3.5 --max_steps=20 --seeds=0

Each (record, seed) trains `<record>.gin` + `cpu_scale.gin` with the real binary until the validation loss
first reaches `--target` (validated every `--eval_every` steps; `train.stop_at_target`), in a fresh workdir.
Per record: the median over seeds of the three costs to the target that FSR can use, training seconds
(the binary's clock: compilation and validation excluded), steps and tokens. Per ladder step i -> i+1:
whether the next record is cheaper on each measure; where it is not, the benchmark task's FSR is
undefined on that measure and is flagged, never scored (`libs.evals.speedrun_scores.fsr`). Run it on an
otherwise idle machine: the seconds are wall-clock measurements. Writes the markdown table and a JSON of
every run (same basename).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from absl import app, flags

from libs.evals import speedrun_scores
from libs.train import launch, metrics
from tools.records import CONFIG_DIR, RECORDS, SCALE_FILE, change_summary

MEASURES = ("train_time_s", "steps", "tokens")

_OUT = flags.DEFINE_string("out", "docs/speedrun_bench_refs.md", "Markdown table to write (and .json beside it).")
_WORKDIR_ROOT = flags.DEFINE_string("workdir_root", "runs/speedrun_bench_refs", "Parent of the per-run workdirs.")
_RECORDS = flags.DEFINE_list("records", RECORDS, "Record config names, in ladder order.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; the reference is the median over them.")
_TARGET = flags.DEFINE_float("target", 2.70, "Target validation loss (nats per byte token at proxy scale).")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 300, "The schedule's length (cpu_scale.gin's): steps a run may take.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 10, "Validation period (steps): the steps' resolution.")
_VAL_TOKENS = flags.DEFINE_integer("val_tokens", 16384, "Validation tokens per evaluation.")


def run_one(record: str, seed: int, root: str, target: float, max_steps: int, eval_every: int,
            val_tokens: int) -> dict[str, Any]:
    """Trains one record to the target in a fresh workdir; returns its costs (None where it missed)."""
    workdir = os.path.join(root, f"{record}_s{seed}")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    bindings = [f"train.total_steps={max_steps}", f"train.seed={seed}", f"train.eval_every={eval_every}",
                f"train.val_tokens={val_tokens}", f"train.target_val_loss={target}", "train.stop_at_target=True",
                f"Checkpointer.every_steps={max_steps}"]
    cmd = [sys.executable, "-m", "experiments.speedrun", f"--gin_file={CONFIG_DIR}/{record}.gin",
           f"--gin_file={SCALE_FILE}", *[f"--gin_bindings={b}" for b in bindings], f"--workdir={workdir}"]
    t0 = time.perf_counter()
    with open(workdir + ".log", "w") as log:
        rc = subprocess.run(cmd, cwd=launch.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    summary = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "summary")
    last = summary[-1] if summary else {}
    step = int(last["target_step"]) if last.get("target_step") is not None else None
    tokens_per_step = _tokens_per_step(workdir)
    return {"record": record, "seed": seed, "returncode": rc, "wall_s": round(time.perf_counter() - t0, 1),
            "reached": step is not None, "steps": step, "tokens": step * tokens_per_step if step else None,
            "train_time_s": last.get("target_train_time_s"), "final_val_loss": last.get("val_loss"),
            "status": last.get("status", "failed")}


def _tokens_per_step(workdir: str) -> int:
    """global batch x sequence length, from the run's saved config."""
    values = {}
    with open(os.path.join(workdir, "config.gin")) as f:
        for line in f:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return int(values["train.global_batch_size"]) * int(values["train.seq_len"])


def references(runs: list[dict[str, Any]], records: list[str]) -> list[dict[str, Any]]:
    """Per record the median cost over the seeds that reached the target (None if any seed missed)."""
    rows = []
    for record in records:
        mine = [r for r in runs if r["record"] == record]
        row = {"record": record, "change": change_summary(record), "seeds": len(mine),
               "missed": sum(1 for r in mine if not r["reached"])}
        for measure in MEASURES:
            values = [r[measure] for r in mine if r["reached"]]
            row[measure] = statistics.median(values) if values and not row["missed"] else None
            row[f"{measure}_spread"] = [min(values), max(values)] if values else None
        rows.append(row)
    return rows


def ladder_steps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The benchmark's tasks i -> i+1, with, per measure, whether FSR is defined (the next record is cheaper)."""
    steps = []
    for before, after in zip(rows, rows[1:]):
        step = {"task": f"{before['record']} -> {after['record']}"}
        for measure in MEASURES:
            if before[measure] is None or after[measure] is None:
                step[measure] = "a record missed the target"
                continue
            result = speedrun_scores.fsr(before[measure], after[measure], after[measure])
            step[measure] = "ok" if result.flag is None else result.flag
        steps.append(step)
    return steps


def markdown(rows, steps, meta) -> str:
    def cell(row, measure, spec):
        value, spread = row[measure], row[f"{measure}_spread"]
        if value is None:
            return f"missed ({row['missed']} of {row['seeds']} seeds)"
        return f"{value:{spec}} [{spread[0]:{spec}}, {spread[1]:{spec}}]"

    lines = ["# Speedrunning benchmark: proxy reference costs per record", "",
             f"- Date: {meta['date']}; device: {meta['device']}", f"- Command: `{meta['command']}`",
             f"- Proxy: `{SCALE_FILE}` on top of each record; target validation loss {meta['target']} (validated "
             f"every {meta['eval_every']} steps on {meta['val_tokens']} tokens), at most {meta['max_steps']} steps; "
             f"seeds {meta['seeds']}; median [min, max] over seeds.", f"- Wall time: {meta['wall_s']:.0f} s", "",
             "| record | change | train s to target | steps to target | tokens to target |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['record']} | {row['change']} | {cell(row, 'train_time_s', '.1f')} | "
                     f"{cell(row, 'steps', '.0f')} | {cell(row, 'tokens', ',.0f')} |")
    lines += ["", "Ladder steps (benchmark tasks): `ok` where record i+1 is cheaper than record i on that measure, "
              "so FSR is defined; otherwise the flag, and the task is reported, not scored, on that measure.", "",
              "| task | train s | steps | tokens |", "|---|---|---|---|"]
    lines += [f"| {s['task']} | {s['train_time_s']} | {s['steps']} | {s['tokens']} |" for s in steps]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    import jax  # pylint: disable=import-outside-toplevel  (the device line only)

    records, seeds = list(_RECORDS.value), [int(s) for s in _SEEDS.value]
    t0, runs = time.perf_counter(), []
    for seed in seeds:  # seeds outermost: a drifting machine load spreads over every record alike
        for record in records:
            run = run_one(record, seed, _WORKDIR_ROOT.value, _TARGET.value, _MAX_STEPS.value, _EVAL_EVERY.value,
                          _VAL_TOKENS.value)
            print(f"{record} seed {seed}: " + (f"target at step {run['steps']}, {run['train_time_s']:.1f} s"
                                               if run["reached"] else f"missed ({run['status']})"), flush=True)
            runs.append(run)
    rows = references(runs, records)
    steps = ladder_steps(rows)
    meta = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "device": f"{jax.default_backend()} ({os.cpu_count()} CPU cores visible)",
            "command": "python -m tools.speedrun_bench_refs " + " ".join(sys.argv[1:]), "target": _TARGET.value,
            "eval_every": _EVAL_EVERY.value, "val_tokens": _VAL_TOKENS.value, "max_steps": _MAX_STEPS.value,
            "seeds": seeds, "wall_s": time.perf_counter() - t0}
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
        f.write(markdown(rows, steps, meta))
    with open(os.path.splitext(_OUT.value)[0] + ".json", "w") as f:
        json.dump({"meta": meta, "references": rows, "ladder_steps": steps, "runs": runs}, f, indent=1)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
