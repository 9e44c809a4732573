r"""Reference costs of the record ladder at proxy scale, for the speedrunning benchmark's FSR.

    python -m tools.speedrun_bench_refs --out=docs/speedrun_bench_refs.md --seeds=0,1,2
    python -m tools.speedrun_bench_refs --records=gpt2_124m,record_02 --target=3.5 --max_steps=20 --seeds=0

Each (record, seed) trains `<record>.gin` + `cpu_scale.gin` with the real binary over its schedule
(`libs.envs.speedrun_bench.references`, validated every `--eval_every` steps), in a fresh workdir; its costs
are those of the first validation at or below `--target`. Per record: the median over seeds of the three costs to the target that FSR can use, training seconds
(the binary's clock: compilation and validation excluded), steps and tokens. Per ladder step i -> i+1:
whether the next record is cheaper on each measure; where it is not, the benchmark task's FSR is
undefined on that measure and is flagged, never scored (`libs.evals.speedrun_scores.fsr`). Run it on an
otherwise idle machine: the seconds are wall-clock measurements. Writes the markdown table and a JSON of
every run (same basename). It covers the records at the 4-layer proxy (1-11): one fixed target cannot serve
two proxy scales, and the packed records 12+ get their per-step targets from the benchmark binary
(`experiments.speedrun_bench`, configs/speedrun_bench/proxy.gin).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

from absl import app, flags

from libs.envs.speedrun_bench import references
from libs.envs.speedrun_bench.proxy import Proxy
from tools.records import PACKED_RECORDS, RECORDS, SCALE_FILE, change_summary

_OUT = flags.DEFINE_string("out", "docs/speedrun_bench_refs.md", "Markdown table to write (and .json beside it).")
_WORKDIR_ROOT = flags.DEFINE_string("workdir_root", "runs/speedrun_bench_refs", "Parent of the per-run workdirs.")
_RECORDS = flags.DEFINE_list("records", [r for r in RECORDS if r not in PACKED_RECORDS],
                             "Record config names, in ladder order (records 1-11).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; the reference is the median over them.")
_TARGET = flags.DEFINE_float("target", 3.0, "Target validation loss (nats per byte token at proxy scale).")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 300, "The schedule's length (cpu_scale.gin's): steps a run may take.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 10, "Validation period (steps): the steps' resolution.")
_VAL_TOKENS = flags.DEFINE_integer("val_tokens", 16384, "Validation tokens per evaluation.")


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
    if packed := [r for r in records if r in PACKED_RECORDS]:
        raise app.UsageError(f"--records: {', '.join(packed)} train at the packed proxy; this table covers records "
                             "1-11 (run experiments.speedrun_bench for the later steps)")
    t0, runs = time.perf_counter(), []
    for seed in seeds:  # seeds outermost: a drifting machine load spreads over every record alike
        for record in records:
            proxy = Proxy(target=_TARGET.value, eval_every=_EVAL_EVERY.value, val_tokens=_VAL_TOKENS.value)
            run = references.run_reference(record, seed, _WORKDIR_ROOT.value, proxy,
                                           extra_bindings=[f"train.total_steps={_MAX_STEPS.value}"])
            cost = references.costs_to(run["curve"], _TARGET.value)
            print(f"{record} seed {seed}: " + (f"target at step {cost['steps']}, {cost['train_time_s']:.1f} s"
                                               if cost else f"missed ({run['status']})"), flush=True)
            runs.append(run)
    rows = [{**row, "change": change_summary(row["record"])}
            for row in references.medians(runs, records, _TARGET.value)]
    steps = references.step_flags(rows)
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
