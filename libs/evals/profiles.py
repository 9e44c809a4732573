"""Performance profiles (Dolan & Moré 2002) and the area under them (AUP).

Tables are nested dicts `table[method][task] -> float`. Given ratios r[m][t]
(1 = best on that task, inf = failed), rho_m(tau) = |{t : r[m][t] <= tau}| / |tasks|.
Three conventions:
- LLM-First Search as its code computes it (`paper_aup`, the default for LFS runs):
  win-rate ratio best_wr / wr; efficiency ratio (best_wr / wr) * (tokens / fewest
  tokens of any method on the task); a zero win rate, a task every method loses
  and a task a method has no data on all count as infinity; tau in
  logspace(0, 1, 200), trapezoid AUP, so best-everywhere scores 9.0.
- This codebase's variant (`profile_table`): efficiency = win rate per token,
  ratio best(eff) / eff; all-zero tasks excluded by default.
- MLGym (`get_ranks.py`: infeasible methods penalised, log10 ratios,
  step-function AUP).
"""

from __future__ import annotations

import math
import os
from typing import Mapping

import numpy as np

Table = Mapping[str, Mapping[str, float]]
Ratios = dict[str, dict[str, float]]
Profile = dict[str, np.ndarray]

ALL_ZERO_MODES = ("exclude", "inf")


def default_taus() -> np.ndarray:
    """The LFS paper's grid: 200 log-spaced points from 1 to 10."""
    return np.logspace(0, 1, 200)


def _check_table(table: Table, name: str, positive: bool = False) -> list[str]:
    """Checks every method has the same tasks and valid values; returns the tasks."""
    if not table:
        raise ValueError(f"{name} is empty: need at least one method")
    first = next(iter(table))
    tasks = list(table[first])
    if not tasks:
        raise ValueError(f"{name}[{first!r}] has no tasks")
    for m, row in table.items():
        if set(row) != set(tasks):
            diff = sorted(set(row) ^ set(tasks))
            raise ValueError(f"{name}: method {m!r} has different tasks than {first!r} (differ: {diff})")
        for t, v in row.items():
            if not math.isfinite(float(v)) or float(v) < 0 or (positive and float(v) == 0):
                need = "> 0" if positive else ">= 0"
                raise ValueError(f"{name}[{m!r}][{t!r}] must be finite and {need}, got {v!r}")
    return tasks


def _best_over_value(values: Table, tasks: list[str], all_zero: str) -> Ratios:
    """r[m][t] = max_m' values[m'][t] / values[m][t]; 0 -> inf; all-zero tasks per `all_zero`."""
    if all_zero not in ALL_ZERO_MODES:
        raise ValueError(f"all_zero must be one of {ALL_ZERO_MODES}, got {all_zero!r}")
    ratios: Ratios = {m: {} for m in values}
    for t in tasks:
        best = max(float(values[m][t]) for m in values)
        if best == 0.0 and all_zero == "exclude":
            continue
        for m in values:
            v = float(values[m][t])
            ratios[m][t] = best / v if v > 0 else math.inf
    return ratios


def winrate_ratios(scores: Table, all_zero: str = "exclude") -> Ratios:
    """Win-rate ratios r[m][t] = best_wr_t / wr[m][t] (best over methods).

    Win rates may be fractions or percentages (ratios are scale-free) and must be
    finite and >= 0. A zero win rate gives r = inf (never within any tau). A task
    on which every method has 0 would be 0/0: with all_zero="exclude" (default)
    it is dropped, so profiles are over the informative tasks only; with "inf"
    it is kept with r = inf for every method, which lowers every rho (and AUP)
    by the same fraction of tasks.
    """
    tasks = _check_table(scores, "scores")
    return _best_over_value(scores, tasks, all_zero)


def efficiency_ratios(scores: Table, tokens: Table, all_zero: str = "exclude") -> Ratios:
    """Efficiency-score ratios r[m][t] = max_m' eff[m'][t] / eff[m][t].

    eff = win rate / mean tokens per game; tokens must be finite and > 0 for
    every (method, task) of `scores`. When the top win rate is shared this equals
    the paper's (best_wr / wr) * (tokens / best_tokens). eff = 0 gives inf, and
    all-zero tasks are handled as in `winrate_ratios`.
    """
    tasks = _check_table(scores, "scores")
    tok_tasks = _check_table(tokens, "tokens", positive=True)
    if set(tokens) != set(scores) or set(tok_tasks) != set(tasks):
        raise ValueError("tokens must have the same methods and tasks as scores")
    eff = {m: {t: float(scores[m][t]) / float(tokens[m][t]) for t in tasks} for m in scores}
    return _best_over_value(eff, tasks, all_zero)


def performance_profile(ratios: Table, taus: np.ndarray | None = None) -> Profile:
    """rho_m(tau) = fraction of tasks with ratios[m][t] <= tau, for each tau.

    Infinite ratios are never counted. If no task is left (all excluded), every
    profile is all zeros.
    """
    taus = _check_taus(default_taus() if taus is None else taus)
    if not ratios:
        raise ValueError("ratios is empty: need at least one method")
    first = next(iter(ratios))
    out: Profile = {}
    for m in ratios:
        if set(ratios[m]) != set(ratios[first]):
            raise ValueError(f"ratios: method {m!r} has different tasks than {first!r}")
        r = np.array([float(v) for v in ratios[m].values()], dtype=np.float64)
        if np.isnan(r).any():
            raise ValueError(f"ratios[{m!r}] contains NaN")
        out[m] = (r[None, :] <= taus[:, None]).mean(axis=1) if r.size else np.zeros_like(taus)
    return out


def _check_taus(taus) -> np.ndarray:
    taus = np.asarray(taus, dtype=np.float64)
    if taus.ndim != 1 or taus.size < 2:
        raise ValueError(f"taus must be a 1-D array of at least 2 points, got shape {taus.shape}")
    if not np.isfinite(taus).all() or np.any(np.diff(taus) < 0):
        raise ValueError("taus must be finite and non-decreasing")
    return taus


def _check_profile(profile, taus) -> tuple[np.ndarray, np.ndarray]:
    taus = _check_taus(taus)
    profile = np.asarray(profile, dtype=np.float64)
    if profile.shape != taus.shape:
        raise ValueError(f"profile shape {profile.shape} != taus shape {taus.shape}")
    return profile, taus


def aup(profile: np.ndarray, taus: np.ndarray) -> float:
    """Area under one profile by the trapezoid rule (the LFS paper's np.trapz)."""
    profile, taus = _check_profile(profile, taus)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz.
    return float(trapezoid(profile, x=taus))


def compute_profiles(scores: Table, tokens: Table | None = None, taus: np.ndarray | None = None,
                     all_zero: str = "exclude") -> dict[str, Profile]:
    """{"WinRate": profile, "Efficiency": profile (only with tokens)}."""
    out = {"WinRate": performance_profile(winrate_ratios(scores, all_zero), taus)}
    if tokens is not None:
        out["Efficiency"] = performance_profile(efficiency_ratios(scores, tokens, all_zero), taus)
    return out


def profile_table(scores: Table, tokens: Table | None = None, taus: np.ndarray | None = None,
                  all_zero: str = "exclude") -> dict[str, dict[str, float]]:
    """Per method {"AUP-WinRate": x, "AUP-Efficiency": y}; the latter only with tokens."""
    taus = _check_taus(default_taus() if taus is None else taus)
    table: dict[str, dict[str, float]] = {m: {} for m in scores}
    for kind, prof in compute_profiles(scores, tokens, taus, all_zero).items():
        for m, rho in prof.items():
            table[m][f"AUP-{kind}"] = aup(rho, taus)
    return table


def paper_ratios(win_rates: Table, tokens: Table) -> dict[str, Ratios]:
    """The LLM-First Search code's ratios (`simple_analysis.calculate_aup_values`).

    `win_rates[m][t]` and `tokens[m][t]` (mean tokens per game) may lack tasks: the tasks are the
    union over methods, and a method without data on a task gets infinity for it. Per task,
    best_wr is the highest win rate and best_tokens the fewest mean tokens over the methods with
    data (whatever their win rates). WinRate r = best_wr / wr; EfficiencyScore
    r = (best_wr / wr) * (tokens / best_tokens); both are infinity when wr = 0 (so a task every
    method loses is infinity for all) and the latter also when best_tokens = 0.
    """
    tasks = sorted({t for m in win_rates for t in win_rates[m]})
    if not tasks:
        raise ValueError("win_rates is empty: need at least one method with a task")
    for m in win_rates:
        for t, wr in win_rates[m].items():
            tok = tokens.get(m, {}).get(t)
            if tok is None or not math.isfinite(float(wr)) or float(wr) < 0 or not float(tok) >= 0:
                raise ValueError(f"win rate and tokens of {m!r} on {t!r} must be finite and >= 0, "
                                 f"got {wr!r} and {tok!r}")
    out: dict[str, Ratios] = {"WinRate": {m: {} for m in win_rates}, "Efficiency": {m: {} for m in win_rates}}
    for t in tasks:
        have = [m for m in win_rates if t in win_rates[m]]
        best_wr = max(float(win_rates[m][t]) for m in have)
        best_tok = min(float(tokens[m][t]) for m in have)
        for m in win_rates:
            wr = float(win_rates[m].get(t, 0.0))
            ok = t in win_rates[m] and wr > 0
            out["WinRate"][m][t] = best_wr / wr if ok else math.inf
            out["Efficiency"][m][t] = (best_wr / wr) * (float(tokens[m][t]) / best_tok) if ok and best_tok > 0 \
                else math.inf
    return out


def paper_aup(win_rates: Table, tokens: Table, taus: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Per method {"AUP-WinRate", "AUP-Efficiency"} with the LFS code's ratios (`paper_ratios`)."""
    taus = _check_taus(default_taus() if taus is None else taus)
    table: dict[str, dict[str, float]] = {m: {} for m in win_rates}
    for kind, ratios in paper_ratios(win_rates, tokens).items():
        for m, rho in performance_profile(ratios, taus).items():
            table[m][f"AUP-{kind}"] = aup(rho, taus)
    return table


def plot_profiles(profiles: Mapping[str, Profile], taus: np.ndarray, path: str,
                  title: str = "Performance profiles", logx: bool = True,
                  aups: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Writes a PNG with one step-plot panel per profile kind; returns `path`.

    Legend labels carry each method's AUP: aups[kind][method] if given, else the
    trapezoid `aup`. The x axis is logarithmic when `logx` and all taus are > 0.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    taus = _check_taus(taus)
    if not profiles:
        raise ValueError("profiles is empty")
    fig = Figure(figsize=(5.5 * len(profiles), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(profiles), squeeze=False)[0]
    for ax, (kind, prof) in zip(axes, profiles.items()):
        for m, rho in prof.items():
            area = aups[kind][m] if aups is not None else aup(rho, taus)
            ax.step(taus, rho, where="post", label=f"{m} (AUP {area:.2f})", linewidth=1.8)
        if logx and taus[0] > 0:
            ax.set_xscale("log")
        ax.set(xlim=(taus[0], taus[-1]), ylim=(-0.02, 1.02), title=kind, xlabel="tau",
               ylabel="fraction of tasks with ratio <= tau")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path


# ---------------------------------------------------------------- MLGym variant


def mlgym_ratios(scores: Table, higher_is_better: Mapping[str, bool] | bool,
                 baseline: Mapping[str, float] | None = None,
                 epsilon: float = 0.05) -> tuple[Ratios, float]:
    """MLGym performance ratios and the default max_tau (in log10 units).

    Tasks are the union over methods. Per task, a method is infeasible if its
    score is missing or not finite, <= 0 (MLGym drops negative scores; 0 cannot form a
    ratio), or worse than baseline[task] (equal is feasible). Over the feasible
    methods, r = best / score (maximise) or score / best (minimise); infeasible
    methods get r = worst_feasible_ratio * (1 + epsilon). A task with no feasible
    method gives r = inf for all. As in get_ranks.py, max_tau =
    ceil10(log10(max_t ceil(worst_ratio_t * (1 + epsilon)))), ceil10 rounding up
    to one decimal (1.0 when no task has a feasible method).
    """
    tasks = sorted({t for m in scores for t in scores[m]})
    if not tasks:
        raise ValueError("scores is empty: need at least one method with a task")
    for t in tasks:
        if not isinstance(higher_is_better, bool) and t not in higher_is_better:
            raise ValueError(f"higher_is_better has no entry for task {t!r}")
        if baseline is not None and (t not in baseline or math.isnan(float(baseline[t]))):
            raise ValueError(f"baseline has no (non-NaN) value for task {t!r}")
    ratios: Ratios = {m: {} for m in scores}
    caps = []
    for t in tasks:
        maximise = higher_is_better if isinstance(higher_is_better, bool) else bool(higher_is_better[t])
        feasible = {}
        for m in scores:
            s = float(scores[m].get(t, math.nan))
            if not math.isfinite(s) or s <= 0:
                continue
            if baseline is not None:
                b = float(baseline[t])
                if (maximise and s < b) or (not maximise and s > b):
                    continue
            feasible[m] = s
        if not feasible:
            for m in scores:
                ratios[m][t] = math.inf
            continue
        best = max(feasible.values()) if maximise else min(feasible.values())
        r = {m: (best / s if maximise else s / best) for m, s in feasible.items()}
        worst = max(r.values())
        caps.append(math.ceil(worst * (1 + epsilon)))
        for m in scores:
            ratios[m][t] = r.get(m, worst * (1 + epsilon))
    max_tau = math.ceil(math.log10(max(caps)) * 10) / 10 if caps else 1.0
    return ratios, max_tau


def step_aup(profile: np.ndarray, taus: np.ndarray) -> float:
    """Left-step area: sum_i (taus[i+1] - taus[i]) * profile[i] (MLGym compute_aup)."""
    profile, taus = _check_profile(profile, taus)
    return float(np.sum(np.diff(taus) * profile[:-1]))


def mlgym_profile(scores: Table, higher_is_better: Mapping[str, bool] | bool,
                  baseline: Mapping[str, float] | None = None, max_tau: float | None = None,
                  num_taus: int = 500) -> tuple[np.ndarray, Profile]:
    """(taus, profiles) with rho_m(tau) = fraction of tasks with log10 r <= tau.

    taus = linspace(0, max_tau, num_taus); max_tau defaults to `mlgym_ratios`'s.
    """
    ratios, default_max = mlgym_ratios(scores, higher_is_better, baseline)
    max_tau = default_max if max_tau is None else float(max_tau)
    if not max_tau > 0 or int(num_taus) < 2:
        raise ValueError(f"need max_tau > 0 and num_taus >= 2, got {max_tau}, {num_taus}")
    taus = np.linspace(0.0, max_tau, int(num_taus))
    logs = {m: {t: math.log10(r) for t, r in rs.items()} for m, rs in ratios.items()}
    return taus, performance_profile(logs, taus)


def mlgym_aup(scores: Table, higher_is_better: Mapping[str, bool] | bool,
              baseline: Mapping[str, float] | None = None, max_tau: float | None = None,
              num_taus: int = 500) -> dict[str, float]:
    """MLGym AUP per method: `step_aup` of `mlgym_profile` (max AUP = max_tau)."""
    taus, prof = mlgym_profile(scores, higher_is_better, baseline, max_tau, num_taus)
    return {m: step_aup(rho, taus) for m, rho in prof.items()}
