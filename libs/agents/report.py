"""Per-game records -> the summary table and performance profiles of a search experiment."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from libs.evals import profiles, stats
from libs.train import rundir


def read_games(path: str) -> list[dict[str, Any]]:
    """Game records (finished and unfinished); a line cut short by a kill is skipped, a corrupt one is an error."""
    return rundir.read_jsonl(path)


def cell_table(games: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """table[policy][task] = win rate, mean tokens / nodes / seconds per game, and the game count."""
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for g in games:
        by_cell[(g["task"], g["policy"])].append(g)
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (task, policy), cell in by_cell.items():
        s = stats.summarize_wins([bool(g["solved"]) for g in cell])
        row = {key: sum(g.get(key, 0.0) for g in cell) / len(cell)
               for key in ("tokens", "nodes", "seconds", "search_seconds", "scorer_seconds")}
        table[policy][task] = {"win_rate": s.rate, "low": s.low, "high": s.high, "n": s.n, **row}
    return table


def aup_table(table, tasks: list[str], policies: list[str], convention: str = "paper"):
    """AUP per policy and the profiles behind it, over `tasks` (tokens as the cost)."""
    taus = profiles.default_taus()
    present = {p: {t: table[p][t] for t in tasks if t in table.get(p, {})} for p in policies}
    win = {p: {t: c["win_rate"] for t, c in cells.items()} for p, cells in present.items()}
    tokens = {p: {t: c["tokens"] for t, c in cells.items()} for p, cells in present.items()}
    if convention == "paper":
        ratios = profiles.paper_ratios(win, tokens)
    else:  # Every policy needs every task for the per-token convention.
        full = [t for t in tasks if all(t in win[p] for p in policies)]
        win = {p: {t: win[p][t] for t in full} for p in policies}
        cost = {p: {t: max(tokens[p][t], 1e-9) for t in full} for p in policies}
        ratios = {"WinRate": profiles.winrate_ratios(win), "Efficiency": profiles.efficiency_ratios(win, cost)}
    profs = {kind: profiles.performance_profile(r, taus) for kind, r in ratios.items()}
    aups = {p: {f"AUP-{kind}": profiles.aup(profs[kind][p], taus) for kind in profs} for p in policies}
    return aups, profs, taus


def write_summary(workdir: str, tasks: list[str], policies: list[str], scorer_label: str, aup: str = "paper",
                  departures: list[str] = ()) -> dict[str, Any]:
    """Writes summary.md and profiles.png from games.jsonl; returns the table as a dict."""
    records = [g for g in read_games(os.path.join(workdir, "games.jsonl"))
               if g["task"] in tasks and g["policy"] in policies]
    finished = {(g["task"], g["policy"], g["game"]) for g in records if g.get("finished", True)}
    games = [g for g in records if g.get("finished", True)]
    unfinished = {(g["task"], g["policy"], g["game"]): g["reason"] for g in records
                  if not g.get("finished", True) and (g["task"], g["policy"], g["game"]) not in finished}
    table = cell_table(games)
    lines = [f"# Search experiment: {', '.join(tasks)}", "",
             f"Scorer: **{scorer_label}**. Win rate with its Wilson 95% interval; tokens, search nodes and "
             "seconds per game: the policy's own work (search s) and the time its scorer queries took "
             "(scorer s; a stand-in's heuristic caches are shared, so the first game to meet a state pays "
             "for it; with a model, waiting for a free call slot counts too).", "",
             f"Departures from the paper: {', '.join(departures) if departures else 'none'}.", "",
             *([f"Unfinished games (model calls failed after retries; a rerun plays them again): {len(unfinished)}, "
                f"e.g. {next(iter(unfinished.values()))}", ""] if unfinished else []),
             "| task | policy | games | win rate | 95% CI | tokens/game | nodes/game | search s/game | "
             "scorer s/game |", "|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        for policy in policies:
            c = table.get(policy, {}).get(task)
            if c:
                lines.append(f"| {task} | {policy} | {c['n']} | {100 * c['win_rate']:.1f}% | [{100 * c['low']:.1f}, "
                             f"{100 * c['high']:.1f}] | {c['tokens']:,.0f} | {c['nodes']:,.0f} | {c['search_seconds']:.3f} | "
                             f"{c['scorer_seconds']:.3f} |")
    result: dict[str, Any] = {"table": {p: dict(t) for p, t in table.items()}, "games": len(games),
                              "unfinished": len(unfinished)}
    if len(policies) > 1 and games:
        aups, profs, taus = aup_table(table, tasks, policies, aup)
        result["aup"] = aups
        how = ("the paper's formulas: efficiency ratio (best win rate / win rate) x (tokens / fewest tokens); "
               "a zero win rate or a missing task counts as infinity" if aup == "paper"
               else "efficiency = win rate per token")
        lines += ["", f"Area under the performance profiles (tau from 1 to 10; 9 is best; {how}):", "",
                  "| policy | AUP win rate | AUP efficiency |", "|---|---|---|"]
        lines += [f"| {p} | {aups[p]['AUP-WinRate']:.2f} | {aups[p]['AUP-Efficiency']:.2f} |" for p in policies]
        plot = profiles.plot_profiles(profs, taus, os.path.join(workdir, "profiles.png"),
                                      title=f"Performance profiles ({scorer_label})")
        lines += ["", f"![performance profiles]({os.path.basename(plot)})"]
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return result
