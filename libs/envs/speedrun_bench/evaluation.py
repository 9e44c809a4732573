"""The benchmark tasks' evaluator: trains the submitted workspace to the proxy target, reports its costs.

A task folder's evaluate.py calls `main(<task folder>/proxy.json)`. It runs the workspace's training
(`runner`) in a fresh run directory inside the submission, in its own process, then reads the trainer's
summary: {val_loss, train_time_s, steps, tokens} at the first validation at or below the target. A run that
fails, or whose validation loss never reaches the target, is an invalid submission (exit code 3, one line).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from libs.envs.research_tasks import taskkit
from libs.train import metrics

RUN_DIR = ".speedrun_eval"


def costs(workdir: str, target: float) -> dict[str, Any]:
    """The run's costs to the target from its metrics (raises taskkit.Invalid where it missed)."""
    summary = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "summary")
    if not summary:
        raise taskkit.Invalid("the training wrote no summary")
    last = summary[-1]
    if last.get("target_step") is None:
        raise taskkit.Invalid(f"the validation loss missed the target {target}: {last.get('val_loss', float('nan')):.4f} "
                              f"at step {last.get('step')} ({last.get('status')})")
    vals = [r for r in metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"), "val")
            if r["step"] == last["target_step"]]
    steps = int(last["target_step"])
    tokens = int(vals[-1]["tokens_seen"]) if vals else None
    return {"val_loss": round(float(vals[-1]["loss"]) if vals else float("nan"), 4),
            "train_time_s": round(float(last["target_train_time_s"]), 3), "steps": steps, "tokens": tokens}


def evaluate(submission_dir: Path, proxy_path: Path) -> dict[str, Any]:
    """Trains the workspace in `submission_dir` with the proxy of `proxy_path`; returns its costs."""
    with open(proxy_path) as f:
        proxy = json.load(f)
    workdir = submission_dir / RUN_DIR
    shutil.rmtree(workdir, ignore_errors=True)
    for name in ("gpt.py", "losses.py", "optim.py", "record.gin"):
        taskkit.require(submission_dir / name)
    command = [sys.executable, "-m", "libs.envs.speedrun_bench.runner", f"--workspace={submission_dir}",
               f"--workdir={workdir}", f"--proxy={proxy_path}"]
    result = subprocess.run(command, cwd=submission_dir, capture_output=True, text=True, check=False)
    sys.stderr.write(result.stderr[-4000:])
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise taskkit.Invalid(f"training exited with code {result.returncode}: {lines[-1] if lines else 'no output'}")
    return costs(str(workdir), proxy["target"])


def main(proxy_path: str | os.PathLike) -> None:
    args = taskkit.parse_args()
    with taskkit.evaluation():
        result = evaluate(args.submission_dir.resolve(), Path(proxy_path))
    taskkit.report(result)
