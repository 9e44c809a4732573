"""The research agent's report: per task the baseline, best and last submission; across tasks the rate of
beating the baseline and MLGym's performance profiles and AUP (agent vs baseline).

`task_result` condenses one task's search tree into a JSON record; `write_summary` turns the records into
`summary.md`, `results.json` and `profiles.png` (Best and Last variants, as MLGym reports them).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from libs.evals import profiles
from libs.evals.research_tree import best_node
from libs.search.tree import Tree


def task_result(tree: Tree, task, baseline: float, label: str, policy: str, stop_reason: str,
                seconds: float, tokens: int) -> dict[str, Any]:
    """One task's record: baseline, best and last good submissions, node counts, budget spent."""
    candidates = [n for n in tree.nodes if n.id != tree.root.id]
    good = [n for n in candidates if not n.buggy and n.state.get("metric") is not None]
    best = best_node(candidates, task.lower_is_better)
    last = good[-1] if good else None
    return {
        "task": task.name, "metric": task.metric, "lower_is_better": task.lower_is_better, "proposer": label,
        "policy": policy, "baseline": baseline, "best": best.state["metric"] if best else None,
        "best_node": best.id if best else None, "last": last.state["metric"] if last else None,
        "last_node": last.id if last else None,
        "beats_baseline": bool(best and task.better(best.state["metric"], baseline)),
        "nodes": len(candidates), "good": len(good), "buggy": len(candidates) - len(good),
        "ops": {op: sum(1 for n in candidates if n.meta.get("op") == op)
                for op in ("draft", "improve", "debug", "crossover")},
        "stop_reason": stop_reason, "seconds": round(seconds, 1), "tokens": tokens,
    }


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _aups(results: Sequence[dict[str, Any]], which: str, label: str) -> tuple[dict[str, float], Any, Any]:
    scores = {"baseline": {r["task"]: r["baseline"] for r in results},
              label: {r["task"]: (r[which] if r[which] is not None else math.nan) for r in results}}
    higher = {r["task"]: not r["lower_is_better"] for r in results}
    base = {r["task"]: r["baseline"] for r in results}
    taus, prof = profiles.mlgym_profile(scores, higher, base)
    return {m: profiles.step_aup(rho, taus) for m, rho in prof.items()}, taus, prof


def write_summary(workdir: str, results: Sequence[dict[str, Any]], label: str, policy: str,
                  status: str = "complete") -> dict[str, Any]:
    """Writes summary.md, results.json and profiles.png for the finished tasks' `results`; returns the
    summary (also what the run returns)."""
    results = list(results)
    beats = [r["task"] for r in results if r["beats_baseline"]]
    lines = [f"# Research agent: {label}, policy {policy}", "",
             f"Status: {status}. Tasks: {len(results)}; the best submission beats the baseline on "
             f"**{len(beats)} of {len(results)}**" + (f" ({', '.join(beats)})" if beats else "") + ".", "",
             "| task | metric | baseline | best (node) | last (node) | beats baseline | nodes | buggy | "
             "stopped by | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        arrow = "↓" if r["lower_is_better"] else "↑"
        lines.append(f"| {r['task']} | {r['metric']} {arrow} | {_fmt(r['baseline'])} | {_fmt(r['best'])} "
                     f"({r['best_node'] if r['best_node'] is not None else '—'}) | {_fmt(r['last'])} "
                     f"({r['last_node'] if r['last_node'] is not None else '—'}) | "
                     f"{'yes' if r['beats_baseline'] else 'no'} | {r['nodes']} | {r['buggy']} | {r['stop_reason']} | "
                     f"{r['seconds']:.0f} |")
    summary: dict[str, Any] = {"status": status, "tasks": len(results), "beats_baseline": len(beats),
                               "beats_baseline_tasks": beats}
    if results:
        best_aup, taus, prof_best = _aups(results, "best", label)
        last_aup, _, prof_last = _aups(results, "last", label)
        summary["aup_best"], summary["aup_last"] = best_aup, last_aup
        lines += ["", "MLGym performance profiles (feasible: a score > 0 and no worse than the baseline; a task "
                  "whose scores are all infeasible counts for no one):", "",
                  "| method | Best AUP | Last AUP |", "|---|---|---|"]
        lines += [f"| {m} | {best_aup[m]:.3f} | {last_aup[m]:.3f} |" for m in best_aup]
        profiles.plot_profiles({"Best": prof_best, "Last": prof_last}, taus, os.path.join(workdir, "profiles.png"),
                               title="MLGym performance profiles (log10 ratio)", logx=False,
                               aups={"Best": best_aup, "Last": last_aup})
        lines += ["", "![profiles](profiles.png)"]
    lines += ["", "Per task: `tasks/<task>/tree.png` (the search tree), `tree.html` (browse every node's plan, code, "
              "output and review), `best/` (the best submission's files), `journal.jsonl`."]
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"summary": summary, "tasks": results}, f, indent=1)
    return summary
