"""Scores for the Automated LLM Speedrunning Benchmark (arXiv 2506.22419) on a record ladder.

Task "record i -> record i+1": the agent starts from record i and should reach record i+1.
Its fraction of speedup recovered is

    FSR = (t_i - t_agent) / (t_i - t_{i+1})

as in facebookresearch/llm-speedrunner (analysis/parse_levels.py). The "time" t is any cost
to reach the target loss: wall-clock seconds, steps or tokens; the functions only take numbers,
so one measure must be used for all three. A failed run (no valid time) scores 0, negative
values count as 0 and, as in the reference notebooks, values above `cap` (default 3) are
zeroed as implausible. If t_i <= t_{i+1} the next record is not faster on this measure and FSR
is undefined: `fsr` returns `FsrResult(None, NO_SPEEDUP)` and aggregates skip and count it
(the reference code scores such tasks 0 instead).

Aggregates over tasks (mean, median, IQM = scipy's trim_mean(x, 0.25), as rliable's
aggregate_iqm) come with percentile-bootstrap intervals that resample tasks with replacement.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import trim_mean  # scipy is a dependency of jax.

NO_SPEEDUP = "no speedup between the references"
FAILED = "failed run (no valid time)"
ABOVE_CAP = "above the cap, zeroed"
NEGATIVE = "slower than record i, zeroed"


@dataclass(frozen=True)
class FsrResult:
    """One task's FSR; `fsr` is None only when undefined (see `flag`)."""

    fsr: float | None
    flag: str | None = None


def _number(value, name: str, what: str = "a finite cost >= 0") -> float:
    """float(value), or ValueError naming `name` unless it is finite and >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what}, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return v


def fsr(t_record: float, t_next: float, t_agent: float | None, cap: float | None = 3.0) -> FsrResult:
    """FSR of an agent's cost `t_agent` (None = failed run) on the task record -> next record."""
    t_i, t_n = _number(t_record, "t_record"), _number(t_next, "t_next")
    t_a = None if t_agent is None else _number(t_agent, "t_agent")
    if cap is not None and _number(cap, "cap", "a finite number > 0 or None") == 0:
        raise ValueError(f"cap must be a finite number > 0 or None, got {cap!r}")
    if t_i <= t_n:
        return FsrResult(None, NO_SPEEDUP)
    if t_a is None:
        return FsrResult(0.0, FAILED)
    value = (t_i - t_a) / (t_i - t_n)
    if value < 0:
        return FsrResult(0.0, NEGATIVE)
    if cap is not None and value > float(cap):
        return FsrResult(0.0, ABOVE_CAP)
    return FsrResult(value)


def iqm(values, axis=None):
    """Interquartile mean: the mean of the middle 50% (scipy trim_mean, cut 25% per side)."""
    return trim_mean(values, 0.25, axis=axis)


STATISTICS: dict[str, Callable] = {"mean": np.mean, "median": np.median, "iqm": iqm}


def _defined_values(scores: Sequence[float | FsrResult | None], name: str = "scores"
                    ) -> tuple[np.ndarray, int]:
    """(defined FSRs, number skipped); None or FsrResult(None) is skipped."""
    if len(scores) == 0:
        raise ValueError(f"{name} is empty: need at least one task")
    kept, skipped = [], 0
    for i, s in enumerate(scores):
        s = s.fsr if isinstance(s, FsrResult) else s
        if s is None:
            skipped += 1
            continue
        kept.append(_number(s, f"{name}[{i}]", "a finite FSR >= 0 or None"))
    return np.asarray(kept, dtype=np.float64), skipped


def bootstrap_interval(values: Sequence[float], statistic: str = "mean", n_resamples: int = 2000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of `statistic` over `values` (resampled with replacement)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"values must be a non-empty 1-D list of finite numbers, got shape {x.shape}")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(STATISTICS)}, got {statistic!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(int(n_resamples), x.size))]
    stats = STATISTICS[statistic](samples, axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Aggregate:
    """Mean, median and IQM over the n defined tasks; `skipped` tasks had no FSR."""

    n: int
    skipped: int
    mean: Estimate | None
    median: Estimate | None
    iqm: Estimate | None


def aggregate_fsr(scores: Sequence[float | FsrResult | None], n_resamples: int = 2000,
                  confidence: float = 0.95, seed: int = 0) -> Aggregate:
    """Aggregates per-task FSRs; undefined ones are skipped (all estimates None if none is left)."""
    x, skipped = _defined_values(scores)
    if x.size == 0:
        return Aggregate(0, skipped, None, None, None)
    est = {name: Estimate(float(fn(x)), *bootstrap_interval(x, name, n_resamples, confidence, seed))
           for name, fn in STATISTICS.items()}
    return Aggregate(int(x.size), skipped, **est)


def expected_max_of_k(values: Sequence[float], k: int) -> float:
    """E[max of k of the n runs drawn without replacement], exact and unbiased.

    With x_(1) <= ... <= x_(n) sorted, x_(j) is the max of a k-subset for C(j-1, k-1) of the
    C(n, k) subsets, so E = sum_j C(j-1, k-1) / C(n, k) * x_(j). k = 1 gives the mean, k = n
    the max.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"values must be a non-empty 1-D list of finite numbers, got {values!r}")
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= x.size:
        raise ValueError(f"k must be an integer in [1, n={x.size}], got {k!r}")
    k, total = int(k), math.comb(x.size, int(k))
    weights = np.array([math.comb(j - 1, k - 1) / total for j in range(1, x.size + 1)])
    return float(np.dot(weights, x))


def best_of_k(runs_per_task: Mapping[str, Sequence[float]], k: int) -> dict[str, float]:
    """{task: expected_max_of_k(runs, k)} for per-task lists of run FSRs."""
    if not runs_per_task:
        raise ValueError("runs_per_task is empty: need at least one task")
    out = {}
    for task, runs in runs_per_task.items():
        if len(runs) < k:
            raise ValueError(f"task {task!r} has {len(runs)} runs, fewer than k={k}")
        out[task] = expected_max_of_k(runs, k)
    return out


def cell_aggregates(records: Sequence[Mapping], n_resamples: int = 2000, confidence: float = 0.95,
                    seed: int = 0) -> dict[tuple[str, str], Aggregate]:
    """{(hint, scaffold): Aggregate} over tasks; several runs of a task are averaged first.

    Each record is {"task", "hint", "scaffold", "fsr" (float or None = undefined), "flag"}.
    A task all of whose records are None is counted in `skipped`.
    """
    if len(records) == 0:
        raise ValueError("records is empty: need at least one record")
    by_cell: dict[tuple[str, str], dict[str, list]] = {}
    for i, r in enumerate(records):
        missing = [key for key in ("task", "hint", "scaffold", "fsr") if key not in r]
        if missing:
            raise ValueError(f"records[{i}] lacks {missing}")
        cell = by_cell.setdefault((str(r["hint"]), str(r["scaffold"])), {})
        cell.setdefault(str(r["task"]), []).append(r["fsr"])
    out = {}
    for cell, tasks in by_cell.items():
        per_task = []
        for task, vals in tasks.items():
            x, _ = _defined_values(vals, f"fsr of {task!r} in cell {cell}")
            per_task.append(float(x.mean()) if x.size else None)
        out[cell] = aggregate_fsr(per_task, n_resamples, confidence, seed)
    return out


def fsr_table(records: Sequence[Mapping], png_path: str | None = None, statistic: str = "mean",
              n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> str:
    """Markdown table hint level x scaffold ("value [low, high] n=N"); optionally a PNG plot.

    Rows and columns keep the order of first appearance in `records`.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(STATISTICS)}, got {statistic!r}")
    cells = cell_aggregates(records, n_resamples, confidence, seed)
    hints = list(dict.fromkeys(h for h, _ in cells))
    scaffolds = list(dict.fromkeys(s for _, s in cells))
    lines = [f"| hint \\ scaffold ({statistic} FSR) | " + " | ".join(scaffolds) + " |",
             "|---" * (len(scaffolds) + 1) + "|"]
    for h in hints:
        row = []
        for s in scaffolds:
            agg = cells.get((h, s))
            est = getattr(agg, statistic) if agg else None
            text = "-" if agg is None else (f"{est.value:.3f} [{est.low:.3f}, {est.high:.3f}] n={agg.n}"
                                           if est else "n/a n=0")
            row.append(text + (f" (skipped {agg.skipped})" if agg and agg.skipped else ""))
        lines.append(f"| {h} | " + " | ".join(row) + " |")
    if png_path is not None:
        _plot_cells(cells, hints, scaffolds, statistic, png_path)
    return "\n".join(lines) + "\n"


def _plot_cells(cells, hints, scaffolds, statistic, path) -> str:
    """Grouped bars (one group per hint level, one bar per scaffold) with interval whiskers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 1.5 + len(hints) * (0.4 + 0.3 * len(scaffolds))), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / len(scaffolds)
    for j, s in enumerate(scaffolds):
        ests = [getattr(cells[(h, s)], statistic) if (h, s) in cells else None for h in hints]
        xs = [i - 0.4 + width * (j + 0.5) for i, e in enumerate(ests) if e]
        vals = np.array([[e.value, e.low, e.high] for e in ests if e]).reshape(-1, 3)
        yerr = np.vstack([vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]])
        ax.bar(xs, vals[:, 0], width, yerr=yerr, capsize=3, label=s, edgecolor="black", alpha=0.85)
    ax.set_xticks(range(len(hints)), hints)
    ax.set(xlabel="hint level", ylabel=f"{statistic} FSR", title="FSR by hint level and scaffold")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path
