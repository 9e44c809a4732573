r"""Trains every speedrun record at CPU proxy scale and tabulates validation loss.

    python -m tools.record_ladder --out=docs/record_ladder.md --workdir_root=runs/ladder
    python -m tools.record_ladder --records=gpt2_124m,record_02 --steps=5 --seeds=0,1

Each (record, seed) runs the real binary in a subprocess on `<record>.gin` + its
proxy overlay with the same step budget and seed, in a fresh workdir under
`--workdir_root` (an old one is deleted: a workdir resumes). Records 1-11 use
`cpu_scale.gin` (4 layers, 128-token rows, `--steps`); the packed-document
records 12+ use `cpu_scale_packed.gin` (12 layers, 1,024-token rows,
`--packed_steps`), and record 11 runs at that scale too as their baseline.
Deltas compare rows at the same scale only. Writes the markdown table, a JSON
of the raw results (same basename, .json) and a chart of validation loss per
record (same basename, .png).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any

from absl import app, flags

from libs.train import launch, metrics
from tools.records import (CONFIG_DIR, PACKED_SCALE_FILE, RECORDS, SCALE_FILE, aggregate, label,
                           ladder_entries)

_OUT = flags.DEFINE_string("out", "docs/record_ladder.md", "Markdown table to write.")
_WORKDIR_ROOT = flags.DEFINE_string("workdir_root", "runs/ladder", "Parent of the per-run workdirs.")
_STEPS = flags.DEFINE_integer("steps", 250, "Optimizer steps per run at cpu_scale.gin (records 1-11).")
_PACKED_STEPS = flags.DEFINE_integer("packed_steps", 150, "Optimizer steps per run at cpu_scale_packed.gin "
                                     "(records 12+ and their record 11 baseline; a step costs ~13x more).")
_RECORDS = flags.DEFINE_list("records", list(RECORDS), "Record config names, in ladder order.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds; each record runs once per seed.")
_TIE = flags.DEFINE_float(
    "tie", 0.03, "A |delta| at most this (nats), or within the seeds' std, counts as a tie. At 250 steps, "
    "shortening record_09's momentum warmup by 1.3% (all record_10 changes here) moves the loss by ~0.025.")


def proxy_scale(scale_file: str = SCALE_FILE) -> dict[str, str]:
    """`name = value` bindings of a proxy overlay, its includes first (comments stripped)."""
    values = {}
    with open(os.path.join(launch.REPO_ROOT, scale_file)) as f:
        for line in f:
            if m := re.match(r'\s*include\s+"([^"]+)"', line):
                values.update(proxy_scale(m.group(1)))
            elif m := re.match(r"\s*([\w.]+)\s*=\s*([^#]+)", line):
                values[m.group(1)] = m.group(2).strip()
    return values


def scale_name(scale_file: str) -> str:
    return "packed" if scale_file == PACKED_SCALE_FILE else "short"


def run_one(record: str, seed: int, steps: int, root: str, scale_file: str = SCALE_FILE) -> dict[str, Any]:
    """Trains one record at one proxy scale in a fresh workdir; returns its final figures."""
    tag = "_packed" if scale_name(scale_file) == "packed" else ""
    workdir = os.path.join(root, f"{record}{tag}_s{seed}")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    cmd = [sys.executable, "-m", "experiments.speedrun", f"--gin_file={CONFIG_DIR}/{record}.gin",
           f"--gin_file={scale_file}", f"--gin_bindings=train.total_steps={steps}",
           f"--gin_bindings=train.seed={seed}", f"--gin_bindings=train.eval_every={steps}",
           f"--workdir={workdir}"]
    log_path = workdir + ".log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, cwd=launch.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.perf_counter() - t0
    path = os.path.join(workdir, "metrics.jsonl")
    val = metrics.read_metrics(path, "val")
    summary = metrics.read_metrics(path, "summary")
    result = {"record": record, "scale": scale_name(scale_file), "steps": steps, "seed": seed, "returncode": rc, "wall_s": wall, "workdir": workdir,
              "log": log_path, "val_loss": val[-1]["loss"] if val else None, "val_step": val[-1]["step"] if val else None,
              "train_time_s": summary[-1].get("train_time_s") if summary else None,
              "status": summary[-1].get("status") if summary else "failed"}
    if rc or result["val_loss"] is None:
        result["status"] = "failed"
        with open(log_path) as f:
            result["error"] = "".join(f.readlines()[-5:]).strip()
    return result


def _loss(row: dict[str, Any]) -> str:
    if row["val_loss"] is None:
        return "failed"
    return f"{row['val_loss']:.4f} ± {row['val_std']:.4f}" if row["n"] > 1 else f"{row['val_loss']:.4f}"


def _num(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def findings(rows: list[dict[str, Any]], tie: float) -> str:
    """The 'where the proxy agrees' paragraph, from the numbers."""
    compared = [r for r in rows if r["improves"] is not None]
    better = [label(r) for r in compared if r["improves"] and not r["within_noise"]]
    worse = [r for r in compared if not r["improves"] and not r["within_noise"]]
    noisy = [r for r in compared if r["within_noise"]]
    failed = [label(r) for r in rows if r["val_loss"] is None]
    out = []
    if compared:
        out.append(f"In the real speedrun every record beat its predecessor in time to 3.28 validation loss "
                   f"at 124M, mostly by needing fewer tokens. At the proxy scales {len(better)} of {len(compared)} "
                   f"steps up the ladder lower the validation loss at equal tokens by more than a tie"
                   + (f" ({', '.join(better)})" if better else "") + ".")
        if worse:
            out.append(f"The proxy disagrees for {', '.join(label(r) for r in worse)}: "
                       + "; ".join(f"{label(r)} is {r['delta']:+.4f} vs its predecessor" for r in worse) + ".")
        if noisy:
            out.append(f"Ties (|delta| within the seed std or {tie} nats): "
                       + ", ".join(f"{label(r)} ({r['delta']:+.4f})" for r in noisy) + ".")
    for scale in dict.fromkeys(r["scale"] for r in rows):
        ok = [r for r in rows if r["scale"] == scale and r["val_loss"] is not None]
        if len(ok) >= 2:
            first, last = ok[0], ok[-1]
            best = min(ok, key=lambda r: r["val_loss"])
            out.append(f"End to end at the {scale} scale, {label(last)} vs {label(first)}: "
                       f"{last['val_loss'] - first['val_loss']:+.4f} nats; the lowest loss is {label(best)} "
                       f"({best['val_loss']:.4f}).")
    if failed:
        out.append(f"Failed runs (see the logs): {', '.join(failed)}.")
    out.append("Caveats: the proxy fixes tokens and steps, so it measures sample efficiency only; changes that "
               "speed up a step (bf16, kernels, FP8, systems) cannot show, and hyperparameters tuned for 124M "
               "parameters and thousands of steps (learning rates, warmup/decay fractions, momentum warmup, "
               "window schedules) may be far from optimal for a byte-level model of 128 wide trained for a few "
               "hundred steps.")
    if rows and rows[0]["n"] <= 1:
        out.append("With one seed, differences of a few hundredths of a nat may be noise; rerun with --seeds=0,1,2.")
    return " ".join(out)


def plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    from matplotlib.patches import Patch  # pylint: disable=import-outside-toplevel

    ok = [r for r in rows if r["val_loss"] is not None]
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(ok) + 2), 4.5), dpi=120)
    colors = ["tab:gray" if r["improves"] is None else "tab:orange" if r["within_noise"] else
              "tab:green" if r["improves"] else "tab:red" for r in ok]
    x = list(range(len(ok)))
    ax.bar(x, [r["val_loss"] for r in ok], yerr=[r["val_std"] for r in ok], color=colors, alpha=0.6, capsize=3)
    for scale in dict.fromkeys(r["scale"] for r in ok):  # one line per proxy scale: they are not comparable
        idx = [i for i, r in enumerate(ok) if r["scale"] == scale]
        ax.plot(idx, [ok[i]["val_loss"] for i in idx], "o-", color="black", lw=1.2, ms=4)
    if ok:
        lo, hi = min(r["val_loss"] for r in ok), max(r["val_loss"] for r in ok)
        pad = max(0.05, 0.15 * (hi - lo))
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(x, [label(r) for r in ok])
    ax.legend(handles=[Patch(color=c, alpha=0.6, label=l) for c, l in
                       (("tab:gray", "first at its scale"), ("tab:green", "improves"), ("tab:orange", "tie"),
                        ("tab:red", "worse"))], loc="upper right")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def describe_scale(meta: dict[str, Any], scale: str) -> str:
    """One bullet on a proxy scale: the model, rows, steps and tokens of its runs."""
    info = meta["scales"][scale]
    v = info["bindings"]
    return (f"- The {scale} proxy (`{info['file']}` on top of each record): {v.get('GPTConfig.num_layers')} layers "
            f"x {v.get('GPTConfig.model_dim')} wide, {v.get('GPTConfig.num_heads')} heads, vocab "
            f"{v.get('GPTConfig.vocab_size')} (bytes), rows of {v.get('train.seq_len')} tokens, "
            f"{v.get('train.global_batch_size')} per step; {info['steps']} steps = {info['tokens']:,} training "
            f"tokens per run; validation on {v.get('train.val_tokens')} tokens of the held-out stdlib split.")


def markdown(rows, meta, png_name) -> str:
    lines = [
        "# Speedrun record ladder at CPU proxy scale",
        "",
        f"- Date: {meta['date']}",
        f"- Device: {meta['device']} ({meta['cpu_count']} CPU cores visible), jax {meta['jax_version']}; "
        f"seeds {', '.join(map(str, meta['seeds']))}.",
        *[describe_scale(meta, scale) for scale in meta["scales"]],
        f"- Command (every flag explicit): `{meta['command']}`",
        f"- Per run: `python -m experiments.speedrun --gin_file={CONFIG_DIR}/<record>.gin "
        f"--gin_file=<proxy file> --gin_bindings=train.total_steps=<steps> "
        f"--gin_bindings=train.seed=<seed> --gin_bindings=train.eval_every=<steps>`",
        f"- Ladder wall time: {meta['total_wall_s']:.0f} s",
        "",
        "Each delta compares a row with the row before it at the same proxy scale: the packed scale starts again "
        "from record 11, trained there as the baseline of record 12.",
        "",
        "| record | proxy | change | val loss | Δ vs previous | train time s | wall s | improves on previous? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "–" if r["improves"] is None else ("yes" if r["improves"] else "no")
        if r["within_noise"]:
            verdict += " (tie)"
        lines.append(f"| {r['record']} | {r['scale']} | {r['change'].replace('|', '/')} | {_loss(r)} "
                     f"| {_num(r['delta'], '+.4f')} | {_num(r['train_time_s'], '.1f')} | {_num(r['wall_s'], '.1f')} "
                     f"| {verdict} |")
    lines += ["", "Train time is the binary's own clock (compilation and validation excluded); wall time is the "
              "whole subprocess (startup, corpus, compilation, validation, checkpoints).", "",
              "## Where the proxy agrees and where it does not", "", findings(rows, meta["tie"]), "",
              f"![validation loss per record]({png_name})", ""]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    records, seeds = list(_RECORDS.value), [int(s) for s in _SEEDS.value]
    for rec in records:
        if not os.path.exists(os.path.join(launch.REPO_ROOT, CONFIG_DIR, f"{rec}.gin")):
            raise app.UsageError(f"no config {CONFIG_DIR}/{rec}.gin")
    steps_of = {SCALE_FILE: _STEPS.value, PACKED_SCALE_FILE: _PACKED_STEPS.value}
    out, root = os.path.abspath(_OUT.value), os.path.abspath(_WORKDIR_ROOT.value)
    command = " ".join(["python -m tools.record_ladder"] + [shlex.quote(a) for a in (
        f"--out={_OUT.value}", f"--workdir_root={_WORKDIR_ROOT.value}", f"--steps={_STEPS.value}",
        f"--packed_steps={_PACKED_STEPS.value}", f"--records={','.join(records)}",
        f"--seeds={','.join(map(str, seeds))}", f"--tie={_TIE.value:g}")])
    entries = ladder_entries(records)
    jobs = [(rec, scale, seed) for rec, scale in entries for seed in seeds]
    runs, start = [], time.perf_counter()
    for i, (rec, scale, seed) in enumerate(jobs, 1):
        res = run_one(rec, seed, steps_of[scale], root, scale)
        runs.append(res)
        elapsed = time.perf_counter() - start
        eta = elapsed / i * (len(jobs) - i)
        shown = "FAILED (see " + res["log"] + ")" if res["status"] == "failed" else f"val {res['val_loss']:.4f}"
        print(f"[{i}/{len(jobs)}] {rec} ({scale_name(scale)}) seed {seed}: {shown} in {res['wall_s']:.1f}s | "
              f"elapsed {metrics.format_duration(elapsed)} | ETA {metrics.format_duration(eta)}", flush=True)
    total = time.perf_counter() - start
    import jax  # pylint: disable=import-outside-toplevel  # After the runs: never hold a device during them.

    scales = {}
    for file in dict.fromkeys(scale for _, scale in entries):
        bindings = proxy_scale(file)
        tokens = steps_of[file] * int(bindings.get("train.global_batch_size", 0)) * int(bindings.get("train.seq_len", 0))
        scales[scale_name(file)] = {"file": file, "bindings": bindings, "steps": steps_of[file], "tokens": tokens}
    meta = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(), "jax_version": jax.__version__,
            "seeds": seeds, "scales": scales, "command": command, "total_wall_s": total, "tie": _TIE.value}
    rows = aggregate(runs, [(rec, scale_name(scale)) for rec, scale in entries], _TIE.value)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    base = os.path.splitext(out)[0]
    steps_text = ", ".join(f"{name}: {info['steps']} steps" for name, info in scales.items())
    plot(rows, base + ".png", f"Record ladder at CPU proxy scale ({steps_text})")
    with open(out, "w") as f:
        f.write(markdown(rows, meta, os.path.basename(base) + ".png"))
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows, "runs": runs}, f, indent=2)
    print(f"wrote {out}, {base}.json, {base}.png in {metrics.format_duration(total)}")
    if any(r["status"] == "failed" for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
