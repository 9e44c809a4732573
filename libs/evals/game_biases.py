"""Bias measures for LLMs playing the row ("acting") player of one-shot 2x2 games.

Each sample is one record (dict) with at least the fields

    game, config               the game and the configuration id (any strings)
    correct                    the correct action (0 or 1)
    choice                     the model's action (0, 1, or None for an invalid reply, which counts as wrong)
    first                      the action listed first in the prompt
    max_self, max_common       actions of the max-self-gain and max-common-gain cells
    self_action, common_action the correct action if both players preferred self / common gain

Each bias is a pair of candidate "pulls" (x, y), both actions, per record:

    positional:  x = first,        y = 1 - first
    payoff:      x = max_self,     y = max_common
    behavioural: x = self_action,  y = common_action

The model's DIRECTION for a bias is the candidate it follows more often among valid records with
x != y (choice == x against choice == y; a tie goes to "x"). With no such records (x == y everywhere,
or every such reply invalid) the direction is "x" and the bias is not identifiable. A record is
ALIGNED when the direction's action equals `correct`, else MISALIGNED. The measure reports accuracy
(choice == correct, invalid = wrong) on aligned and misaligned records with Wilson intervals, the
drop = aligned - misaligned with a percentile-bootstrap interval (records resampled with replacement
within each group separately), and the "strength" of the pull: the rate of following the direction
among valid records with x != y (Wilson interval; 0.5 means no pull). Empty groups have a NaN rate
and make the drop and its bounds NaN.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from libs.evals.stats import summarize_wins

BIASES = ("positional", "payoff", "behavioural")

_LABELS = {
    "positional": ("first-listed", "second-listed"),
    "payoff": ("max-self-gain", "max-common-gain"),
    "behavioural": ("self-gain behaviour", "common-gain behaviour"),
}
_ACTIONS = (0, 1)

Record = Mapping[str, object]


@dataclasses.dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson interval; `rate` is NaN when n == 0."""

    rate: float
    low: float
    high: float
    n: int


@dataclasses.dataclass(frozen=True)
class BiasMeasure:
    """One bias measured on a set of records (see the module docstring)."""

    bias: str
    direction: str
    direction_label: str
    identifiable: bool
    follow: Rate | None
    aligned: Rate
    misaligned: Rate
    drop: float
    drop_low: float
    drop_high: float


def _action(record: Record, key: str, allow_none: bool = False) -> int | None:
    if key not in record:
        raise KeyError(f"record lacks field {key!r}: {dict(record)!r}")
    value = record[key]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or value not in _ACTIONS:
        raise ValueError(f"field {key!r} must be 0 or 1{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _correct(record: Record) -> bool:
    return _action(record, "choice", allow_none=True) == _action(record, "correct")


def _rate(outcomes: Sequence[bool], confidence: float) -> Rate:
    s = summarize_wins(outcomes, confidence)
    return Rate(rate=s.rate if s.n else math.nan, low=s.low, high=s.high, n=s.n)


def _candidates(record: Record, bias: str) -> tuple[int, int]:
    if bias == "positional":
        first = _action(record, "first")
        return first, 1 - first
    if bias == "payoff":
        return _action(record, "max_self"), _action(record, "max_common")
    if bias == "behavioural":
        return _action(record, "self_action"), _action(record, "common_action")
    raise ValueError(f"unknown bias {bias!r}; expected one of {BIASES}")


def accuracy_by_config(records: Sequence[Record], confidence: float = 0.95) -> dict[str, Rate]:
    """Config id -> accuracy (invalid replies count as wrong), ids sorted."""
    outcomes: dict[str, list[bool]] = {}
    for r in records:
        outcomes.setdefault(str(r["config"]), []).append(_correct(r))
    return {c: _rate(outcomes[c], confidence) for c in sorted(outcomes)}


def invalid_rate(records: Sequence[Record], confidence: float = 0.95) -> Rate:
    """Fraction of records whose choice is None."""
    return _rate([_action(r, "choice", allow_none=True) is None for r in records], confidence)


def _bootstrap_drop(aligned: Sequence[bool], misaligned: Sequence[bool], confidence: float,
                    n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of mean(aligned) - mean(misaligned), groups resampled separately.

    Resampling n binary outcomes with replacement gives Binomial(n, p_hat) successes, so the
    resampled means are drawn from that distribution directly (same law, no n_boot x n array).
    """
    if not aligned or not misaligned:
        return math.nan, math.nan
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = [rng.binomial(len(g), sum(g) / len(g), size=n_boot) / len(g) for g in (aligned, misaligned)]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means[0] - means[1], [tail, 1.0 - tail])
    return float(low), float(high)


def measure_bias(records: Sequence[Record], bias: str, confidence: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> BiasMeasure:
    """Direction, strength and aligned/misaligned accuracy drop of one bias."""
    pairs = [_candidates(r, bias) for r in records]
    choices = [_action(r, "choice", allow_none=True) for r in records]
    follows_x = []  # Valid records with x != y: True when the choice is x.
    for (x, y), choice in zip(pairs, choices):
        if x != y and choice is not None:
            follows_x.append(choice == x)
    identifiable = bool(follows_x)
    n_x = sum(follows_x)
    direction = "x" if n_x >= len(follows_x) - n_x else "y"
    pick = 0 if direction == "x" else 1
    follow = None
    if identifiable:
        followed = follows_x if direction == "x" else [not f for f in follows_x]
        follow = _rate(followed, confidence)
    aligned, misaligned = [], []
    for r, pair in zip(records, pairs):
        (aligned if pair[pick] == _action(r, "correct") else misaligned).append(_correct(r))
    aligned_rate, misaligned_rate = _rate(aligned, confidence), _rate(misaligned, confidence)
    drop = aligned_rate.rate - misaligned_rate.rate  # NaN when a group is empty.
    drop_low, drop_high = _bootstrap_drop(aligned, misaligned, confidence, n_boot, seed)
    return BiasMeasure(bias=bias, direction=direction, direction_label=_LABELS[bias][pick],
                       identifiable=identifiable, follow=follow, aligned=aligned_rate,
                       misaligned=misaligned_rate, drop=drop, drop_low=drop_low, drop_high=drop_high)


def measure_all(records: Sequence[Record], **kw) -> dict[str, BiasMeasure]:
    """{bias: measure_bias(records, bias, **kw)} for every bias in BIASES."""
    return {bias: measure_bias(records, bias, **kw) for bias in BIASES}


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100.0 * value:.1f}"


def summary_table(groups: Mapping[str, Sequence[Record]], **kw) -> str:
    """Markdown in the layout of the study's results table: one row per group (e.g. "model / game").

    Columns: n, accuracy %, invalid %, then for each bias aligned %, misaligned % and drop % with its
    bootstrap interval and the direction label (marked "not identifiable" when it is). `kw` goes to
    `measure_bias`.
    """
    header = ["group", "n", "accuracy %", "invalid %"]
    for bias in BIASES:
        header += [f"{bias} aligned %", f"{bias} misaligned %", f"{bias} drop % [CI]"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    confidence = kw.get("confidence", 0.95)
    for name, records in groups.items():
        accuracy = _rate([_correct(r) for r in records], confidence)
        row = [str(name), str(len(records)), _pct(accuracy.rate), _pct(invalid_rate(records, confidence).rate)]
        for bias, m in measure_all(records, **kw).items():
            label = m.direction_label if m.identifiable else "not identifiable"
            drop = f"{_pct(m.drop)} [{_pct(m.drop_low)}, {_pct(m.drop_high)}] ({label})"
            row += [_pct(m.aligned.rate), _pct(m.misaligned.rate), drop]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _error_bars(rates: Sequence[Rate]) -> tuple[np.ndarray, np.ndarray]:
    heights = np.array([0.0 if math.isnan(r.rate) else r.rate for r in rates])
    yerr = np.array([[max(0.0, h - r.low) if r.n else 0.0 for h, r in zip(heights, rates)],
                     [max(0.0, r.high - h) if r.n else 0.0 for h, r in zip(heights, rates)]])
    return heights, yerr.reshape(2, -1)


def _new_figure(width: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 4.5))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> None:
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png", dpi=120)


def plot_accuracy_by_config(records: Sequence[Record], path: str, title: str = "") -> None:
    """Writes a PNG bar chart of accuracy per config id with Wilson error bars."""
    by_config = accuracy_by_config(records)
    if not by_config:
        raise ValueError("records is empty")
    fig = _new_figure(max(6.0, 1.5 + 0.45 * len(by_config)))
    ax = fig.subplots()
    heights, yerr = _error_bars(list(by_config.values()))
    xs = np.arange(len(by_config))
    ax.bar(xs, heights, 0.7, yerr=yerr, capsize=3, edgecolor="black", alpha=0.85)
    ax.set_xticks(xs, list(by_config), rotation=60, ha="right", fontsize=7)
    ax.set(ylim=(0.0, 1.05), ylabel="accuracy", title=title or "Accuracy by configuration")
    ax.grid(True, axis="y", alpha=0.3)
    _save(fig, path)


def plot_aligned_vs_misaligned(measures: Mapping[str, BiasMeasure], path: str, title: str = "") -> None:
    """Writes a PNG of grouped aligned/misaligned accuracy bars per bias, each drop annotated."""
    if not measures:
        raise ValueError("measures is empty")
    fig = _new_figure(max(5.0, 1.5 + 1.8 * len(measures)))
    ax = fig.subplots()
    xs = np.arange(len(measures))
    width = 0.38
    for offset, group in ((-width / 2, "aligned"), (width / 2, "misaligned")):
        heights, yerr = _error_bars([getattr(m, group) for m in measures.values()])
        ax.bar(xs + offset, heights, width, yerr=yerr, capsize=3, label=group, edgecolor="black", alpha=0.85)
    for x, m in zip(xs, measures.values()):
        text = f"drop {_pct(m.drop)}%\n[{_pct(m.drop_low)}, {_pct(m.drop_high)}]"
        ax.text(x, 1.04, text, ha="center", va="bottom", fontsize=8)
    names = [f"{b}\n({m.direction_label if m.identifiable else 'not identifiable'})" for b, m in measures.items()]
    ax.set_xticks(xs, names, fontsize=8)
    ax.set(ylim=(0.0, 1.45), ylabel="accuracy", title=title or "Aligned vs misaligned accuracy")
    ax.set_yticks(np.linspace(0.0, 1.0, 6))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    _save(fig, path)
