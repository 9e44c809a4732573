"""Per-game records -> the summary table and performance profiles of a search experiment."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

from libs.evals import profiles, stats


def read_games(path: str) -> list[dict[str, Any]]:
    """Finished-game records; a line cut short by a kill is ignored."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def write_summary(workdir: str, tasks: list[str], policies: list[str], scorer_label: str) -> dict[str, Any]:
    """Writes summary.md and profiles.png from games.jsonl; returns the table as a dict."""
    games = [g for g in read_games(os.path.join(workdir, "games.jsonl"))
             if g["task"] in tasks and g["policy"] in policies]
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for g in games:
        by_cell[(g["task"], g["policy"])].append(g)
    uses_model = any(g["tokens"] for g in games)
    cost_key = "tokens" if uses_model else "nodes"
    lines = [f"# Search experiment: {', '.join(tasks)}", "",
             f"Scorer: **{scorer_label}**. Win rate with its Wilson 95% interval; cost per game in "
             f"{'model tokens' if uses_model else 'search nodes (the heuristic scorer spends no tokens)'}.", "",
             "| task | policy | games | win rate | 95% CI | tokens/game | nodes/game | seconds/game |",
             "|---|---|---|---|---|---|---|---|"]
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for task in tasks:
        for policy in policies:
            cell = by_cell.get((task, policy), [])
            if not cell:
                continue
            s = stats.summarize_wins([bool(g["solved"]) for g in cell])
            mean = lambda key: sum(g[key] for g in cell) / len(cell)  # noqa: E731
            table[policy][task] = {"win_rate": s.rate, "cost": mean(cost_key), "n": s.n}
            lines.append(f"| {task} | {policy} | {s.n} | {100 * s.rate:.1f}% | [{100 * s.low:.1f}, "
                         f"{100 * s.high:.1f}] | {mean('tokens'):,.0f} | {mean('nodes'):,.0f} | "
                         f"{mean('seconds'):.2f} |")
    result: dict[str, Any] = {"table": table, "games": len(games)}
    complete = [t for t in tasks if all(t in table[p] for p in policies)] if table else []
    if len(policies) > 1 and complete:
        scores = {p: {t: table[p][t]["win_rate"] for t in complete} for p in policies}
        costs = {p: {t: max(table[p][t]["cost"], 1e-9) for t in complete} for p in policies}
        aups = profiles.profile_table(scores, costs)
        result["aup"] = aups
        lines += ["", f"Area under the performance profiles over {len(complete)} task(s) (tau from 1 to 10; "
                      f"9 is best; efficiency = win rate per {cost_key[:-1]}):", "",
                  "| policy | AUP win rate | AUP efficiency |", "|---|---|---|"]
        lines += [f"| {p} | {aups[p]['AUP-WinRate']:.2f} | {aups[p]['AUP-Efficiency']:.2f} |" for p in policies]
        taus = profiles.default_taus()
        plot = profiles.plot_profiles(profiles.compute_profiles(scores, costs, taus), taus,
                                      os.path.join(workdir, "profiles.png"),
                                      title=f"Performance profiles ({scorer_label})")
        lines += ["", f"![performance profiles]({os.path.basename(plot)})"]
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return result
