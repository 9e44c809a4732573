"""A sweep's results table: results.md, results.csv and results.png from its run folders.

Each run's figures come from its `status.json` result, else from the last "summary" record of its
`metrics.jsonl`. Rows are sorted by the chosen metric (runs without it last); runs that did not finish
are flagged with their error and the last lines of their `run.log`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from libs.train import metrics, rundir
from libs.train.errors import UserError

STANDARD_COLUMNS = ("step", "train_time_s")
LOG_TAIL_LINES = 5


@dataclasses.dataclass
class Row:
    name: str
    values: tuple[Any, ...]  # one per axis
    status: str
    figures: dict[str, Any]  # the result / summary record
    wall_s: float | None
    error: str = ""
    log_tail: list[str] = dataclasses.field(default_factory=list)

    def metric(self, name: str) -> float | None:
        value = self.figures.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return None


@dataclasses.dataclass
class Report:
    table_path: str
    csv_path: str
    png_path: str | None
    best: str  # "name metric=value (workdir)", or "" when no run has the metric
    counts: str  # "3 finished, 1 interrupted"


def collect(sweep_dir: str, runs: Sequence[tuple[str, tuple[Any, ...]]], outcomes: Mapping[str, str],
            wall_times: Mapping[str, float]) -> list[Row]:
    """One row per run (name, its value on each axis), read from its folder `sweep_dir/name`."""
    rows = []
    for name, values in runs:
        workdir = os.path.join(sweep_dir, name)
        record = rundir.RunDir(workdir).read_status() if os.path.isdir(workdir) else None
        record = record or {}
        status = outcomes.get(name) or record.get("status") or "pending"
        figures = record.get("result") if isinstance(record.get("result"), dict) else {}
        if not figures:
            figures = _last_summary(os.path.join(workdir, "metrics.jsonl"))
        row = Row(name, tuple(values), status, figures, wall_times.get(name))
        if status not in ("finished", "pending"):
            row.error = str(record.get("error") or "")
            row.log_tail = log_tail(os.path.join(workdir, "run.log"))
        rows.append(row)
    return rows


def _last_summary(path: str) -> dict[str, Any]:
    try:
        summaries = metrics.read_metrics(path, "summary")
    except UserError:
        return {}
    return summaries[-1] if summaries else {}


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last non-empty lines of a log (empty when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def sort_rows(rows: list[Row], metric: str, maximize: bool = False) -> list[Row]:
    """By the metric (ascending, or descending with `maximize`); rows without it last, in sweep order."""
    sign = -1.0 if maximize else 1.0
    return sorted(rows, key=lambda r: (r.metric(metric) is None, sign * (r.metric(metric) or 0.0)))


def best_row(rows: Sequence[Row], metric: str, maximize: bool = False) -> Row | None:
    finished = [r for r in sort_rows(list(rows), metric, maximize) if r.status == "finished"]
    return finished[0] if finished and finished[0].metric(metric) is not None else None


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return str(value)


def display(value: Any) -> str:
    """A value as a person reads it: strings without quotes, everything else as a literal."""
    return value if isinstance(value, str) else repr(value)


def write_markdown(path: str, rows: Sequence[Row], labels: Sequence[str], metric: str, title: str,
                   counts: str, maximize: bool) -> None:
    header = ["run", *labels, "status", metric, *STANDARD_COLUMNS, "wall_s"]
    lines = [f"# Sweep: {title}", "",
             f"{len(rows)} runs: {counts}. Sorted by `{metric}` ({'descending' if maximize else 'ascending'}).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        status = r.status if r.status in ("finished", "pending") else f"**{r.status}**"
        cells = [f"`{r.name}`", *(display(v) for v in r.values), status, _cell(r.metric(metric)),
                 *(_cell(r.figures.get(c), 1) for c in STANDARD_COLUMNS), _cell(r.wall_s, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    flagged = [r for r in rows if r.status not in ("finished", "pending")]
    if flagged:
        lines += ["", "## Runs that did not finish", ""]
        for r in flagged:
            lines += [f"### `{r.name}`: {r.status}", ""]
            if r.error:
                lines += [f"error: {r.error}", ""]
            if r.log_tail:
                lines += ["```", *r.log_tail, "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def write_csv(path: str, rows: Sequence[Row], labels: Sequence[str], metric: str, sweep_dir: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", *labels, "status", metric, *STANDARD_COLUMNS, "wall_s", "error", "workdir"])
        for r in rows:
            error = r.error or (r.log_tail[-1] if r.log_tail else "")
            writer.writerow([r.name, *(display(v) for v in r.values), r.status, r.metric(metric),
                             *(r.figures.get(c) for c in STANDARD_COLUMNS), r.wall_s, error,
                             os.path.join(sweep_dir, r.name)])


def plot(path: str, rows: Sequence[Row], axis_values: Sequence[Sequence[Any]], labels: Sequence[str], metric: str,
         shown: Sequence[int]) -> str | None:
    """The metric against each axis in `shown`: every run as a point, the mean over the other axes as a line."""
    points = [r for r in rows if r.metric(metric) is not None]
    if not points:
        return None
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, subplots = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.6), dpi=110, squeeze=False)
    for ax, i in zip(subplots[0], shown):
        values = list(axis_values[i])
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        position = (lambda v: float(v)) if numeric else (lambda v, vs=values: float(vs.index(v)))
        xs = [position(r.values[i]) for r in points]
        ys = [r.metric(metric) for r in points]
        ax.scatter(xs, ys, s=18, alpha=0.7, label="runs")
        means = []
        for v in values:
            group = [r.metric(metric) for r in points if r.values[i] == v]
            if group:
                means.append((position(v), sum(group) / len(group)))
        means.sort()
        ax.plot([m[0] for m in means], [m[1] for m in means], "-", lw=1.5, color="C1", label="mean")
        if numeric and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(values)), [display(v) for v in values], rotation=30 if len(values) > 4 else 0)
        ax.set_xlabel(labels[i])
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
    subplots[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def count_statuses(rows: Sequence[Row]) -> str:
    order = ["finished", "interrupted", "failed", "running", "pending"]
    seen = {r.status for r in rows}
    statuses = [s for s in order if s in seen] + sorted(seen - set(order))
    return ", ".join(f"{sum(r.status == s for r in rows)} {s}" for s in statuses)


def write_report(sweep_dir: str, runs: Sequence[tuple[str, tuple[Any, ...]]], labels: Sequence[str],
                 axis_values: Sequence[Sequence[Any]], outcomes: Mapping[str, str], wall_times: Mapping[str, float],
                 metric: str = "val_loss", maximize: bool = False, plotted: Sequence[int] | None = None) -> Report:
    """Writes results.md, results.csv and results.png in `sweep_dir`; returns their paths and the best run.

    `runs`: (name, values) with one value per axis; `plotted`: the axes drawn (default: all).
    """
    rows = sort_rows(collect(sweep_dir, runs, outcomes, wall_times), metric, maximize)
    counts = count_statuses(rows)
    table = os.path.join(sweep_dir, "results.md")
    csv_path = os.path.join(sweep_dir, "results.csv")
    write_markdown(table, rows, labels, metric, os.path.basename(sweep_dir.rstrip(os.sep)), counts, maximize)
    write_csv(csv_path, rows, labels, metric, sweep_dir)
    shown = list(range(len(labels))) if plotted is None else list(plotted)
    png = plot(os.path.join(sweep_dir, "results.png"), rows, axis_values, labels, metric, shown)
    best = best_row(rows, metric, maximize)
    best_text = (f"{best.name} {metric}={best.metric(metric):.4f} ({os.path.join(sweep_dir, best.name)})"
                 if best else "")
    return Report(table, csv_path, png, best_text, counts)
