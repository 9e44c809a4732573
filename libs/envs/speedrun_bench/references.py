"""Reference costs of the records at the proxy scale: each record's own config trained by the project's
binary (`experiments.speedrun`), the human times t_i of the benchmark's FSR.

`run_reference` trains one (record, seed) over its whole schedule in a fresh workdir, with the proxy's fixed
settings (the `Proxy.bindings` the task evaluation uses), and keeps its validation curve; `costs_to` reads
from a curve what reaching any target cost (steps, tokens and training seconds at the first validation at or
below it: what a run stopped at that target measures); `medians` takes the median over seeds;
`step_target` is the per-step rule's target; `step_flags` says, per ladder step and cost, whether record i+1
is cheaper than record i beyond the seeds' spread (else the task's FSR is undefined on that cost and is
flagged, never scored).
"""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from libs.envs.speedrun_bench.proxy import MEASURES, Proxy
from libs.evals import speedrun_scores
from libs.train import launch, metrics

CONFIG_DIR = "configs/speedrun"


def run_reference(record: str, seed: int, root: str, proxy: Proxy, log=None, extra_bindings: Sequence[str] = ()
                  ) -> dict[str, Any]:
    """Trains `record` (its gin file + the proxy's scale file + its settings, no stop at the target, then
    `extra_bindings`) in `<root>/<record>_s<seed>`; returns the run with its validation curve."""
    workdir = os.path.join(root, f"{record}_s{seed}")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    bindings = (*proxy.bindings(seed, stop=False), *extra_bindings)
    scale = [f"--gin_file={proxy.scale_file}"] if proxy.scale_file else []
    cmd = [sys.executable, "-m", "experiments.speedrun", f"--gin_file={CONFIG_DIR}/{record}.gin", *scale,
           *[f"--gin_bindings={b}" for b in bindings], f"--workdir={workdir}"]
    t0 = time.perf_counter()
    with open(workdir + ".log", "w") as out:
        rc = subprocess.run(cmd, cwd=launch.REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    summary = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "summary")
    curve = [[r["step"], r["loss"], r["train_time_s"], r["tokens_seen"]]
             for r in metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "val")]
    run = {"record": record, "seed": seed, "returncode": rc, "wall_s": round(time.perf_counter() - t0, 1),
           "status": summary[-1].get("status", "failed") if summary else "failed", "curve": curve}
    if log:
        best = min((point[1] for point in curve), default=float("nan"))
        log(f"reference {record} seed {seed}: {run['status']}, {len(curve)} validations, best loss {best:.4f}"
            + ("" if rc == 0 else f" (exit code {rc}; see {workdir}.log)"))
    return run


def costs_to(curve: Sequence[Sequence[float]], target: float) -> dict[str, float] | None:
    """{steps, tokens, train_time_s} at the curve's first validation at or below `target` (None: never)."""
    for step, loss, train_time_s, tokens in curve:
        if step > 0 and loss <= target:
            return {"steps": step, "tokens": tokens, "train_time_s": train_time_s}
    return None


def medians(runs: Sequence[dict[str, Any]], records: Sequence[str], target: float) -> list[dict[str, Any]]:
    """Per record the median cost to `target` over its seeds (None on a cost if any seed missed it)."""
    rows = []
    for record in records:
        costs = [costs_to(r["curve"], target) for r in runs if r["record"] == record]
        row = {"record": record, "target": target, "seeds": len(costs), "missed": sum(c is None for c in costs)}
        for measure in MEASURES:
            values = [c[measure] for c in costs if c is not None]
            row[measure] = statistics.median(values) if values and not row["missed"] else None
            row[f"{measure}_spread"] = [min(values), max(values)] if values else None
        rows.append(row)
    return rows


def best_loss(runs: Sequence[dict[str, Any]], record: str) -> float | None:
    """The record's lowest validation loss in its worst seed (every seed of it reaches this)."""
    bests = [min(point[1] for point in r["curve"]) for r in runs if r["record"] == record and r["curve"]]
    return max(bests) if bests else None


def step_target(runs: Sequence[dict[str, Any]], step: tuple[str, str], margin: float) -> float | None:
    """The per-step rule: the higher of the two records' worst-seed best losses plus `margin`, so that every
    reference run of both reaches it, as late in training as that allows (where the records differ most)."""
    bests = [best_loss(runs, record) for record in step]
    if any(b is None for b in bests):
        return None
    return round(max(bests) + margin, 4)


def step_flags(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ladder step i -> i+1 and cost: "ok" where record i+1 is cheaper (FSR defined), else why not."""
    return [step_flag(before, after) for before, after in itertools.pairwise(rows)]


WITHIN_SPREAD = "gap within the seeds' spread"


def step_flag(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per cost: "ok", or why FSR is not scored on it: a record missed the target, record i+1 is not
    cheaper, or the two records' seed ranges overlap (the speedup is within seed noise: a single run of
    either record could land on the other's cost)."""
    step = {"task": f"{before['record']} -> {after['record']}"}
    for measure in MEASURES:
        if before[measure] is None or after[measure] is None:
            step[measure] = "a record missed the target"
            continue
        result = speedrun_scores.fsr(before[measure], after[measure], after[measure])
        spread_i, spread_next = before.get(f"{measure}_spread"), after.get(f"{measure}_spread")
        if result.flag is not None:
            step[measure] = result.flag
        elif spread_i and spread_next and spread_next[1] >= spread_i[0]:
            step[measure] = WITHIN_SPREAD
        else:
            step[measure] = "ok"
    return step
