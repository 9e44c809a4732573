"""The Automated LLM Speedrunning Benchmark over this codebase's record ladder: references, an agent, FSR.

One run (`speedrun_bench.*` in gin; `experiments/speedrun_bench.py`):

1. references: each record the tasks touch, trained from its own config by the project's binary to the
   proxy target, `reference_seeds` times (median), in this run and on this machine (`references.jsonl`);
2. the agent on every task (ladder step x hint level): the harness checks "oracle" (submits record i+1's
   own workspace: FSR must be near 1) and "noop" (resubmits record i's: near 0), which need no model and
   are labelled as checks, or "research_agent" (an operator set x a search policy from gin: the scaffold);
3. FSR per task on each cost (train seconds, steps, tokens) against the references, with the flag where a
   step of the proxy ladder does not get cheaper; a hint x scaffold table and plot (`summary_<agent>.md`,
   `fsr_<agent>.png`, `results_<agent>.json`). Agents share a workdir's references: run the oracle and the
   no-op in one workdir and the records are trained once.

Every finished reference run and task result is journalled, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

import gin
from absl import logging

from libs.agents.research import experiment
from libs.agents.research.executor import Executor
from libs.envs import research_tasks
from libs.envs.speedrun_bench import hints as hints_lib
from libs.envs.speedrun_bench import references, tasks
from libs.evals import speedrun_scores
from libs.sandbox import Sandbox
from libs.search.base import Interrupted
from libs.train import rundir
from libs.train.errors import ConfigError, UserError

AGENTS = ("oracle", "noop", "research_agent")
HARNESS = ("oracle", "noop")


@gin.configurable("speedrun_bench", denylist=["workdir"])
def run(workdir: str, steps: Sequence[str] = ("all",), hints: Sequence[str] = ("none",), agent: str = "oracle",
        scaffold: str = "", reference_seeds: int = 3, sandbox_backend: str = "auto") -> dict[str, Any]:
    """Runs the benchmark (see the module docstring).

    Args:
      steps: ladder steps as "<record i>__<record i+1>", or ["all"].
      hints: hint levels per task: "none", "1", "2", "3", "1+2", "1+2+3".
      agent: "oracle" / "noop" (harness checks) or "research_agent" (research_agent.* and the policy's gin).
      scaffold: the label of the agent's scaffold in tables (default: the agent's name).
      reference_seeds: reference trainings per record (median).
      sandbox_backend: for the harness checks' evaluations ("auto", "bwrap", "rlimits").
    """
    ladder = _steps(steps)
    for levels in hints:
        if levels not in hints_lib.COMBINATIONS:
            raise ConfigError(f"speedrun_bench.hints: {levels!r} is not one of {hints_lib.COMBINATIONS}")
    if agent not in AGENTS:
        raise ConfigError(f"speedrun_bench.agent={agent!r}: expected one of {AGENTS}")
    if reference_seeds < 1:
        raise ConfigError(f"speedrun_bench.reference_seeds={reference_seeds}: expected at least 1")
    proxy = tasks.Proxy()
    label = scaffold or agent + (" (harness check)" if agent in HARNESS else "")
    # A step into a packed-document record (12+) measures both its records at the packed proxy scale.
    needed = list(dict.fromkeys((record, proxy.for_step(step)) for step in ladder for record in step))
    runs = _reference_runs(workdir, needed, reference_seeds)
    if runs is None:
        return {"status": "interrupted"}
    proxies = {step: _task_proxy(proxy.for_step(step), runs, step) for step in ladder}
    names = [tasks.task_name(step, levels) for levels in hints for step in ladder]
    by_name = {tasks.task_name(step, levels): proxies[step] for levels in hints for step in ladder}
    if agent in HARNESS:
        results = _harness(workdir, names, agent, by_name, sandbox_backend)
    else:
        results = _research_agent(workdir, names, by_name)
    if results is None:
        return {"status": "interrupted"}
    summary = _score(workdir, runs, proxies, results, proxy, label, agent)
    logging.info("summary written to %s", os.path.join(workdir, f"summary_{agent}.md"))
    return summary


def _task_proxy(proxy: tasks.Proxy, runs, step) -> tasks.Proxy:
    """The proxy of the task on `step`: its target by the proxy's rule."""
    if proxy.target_rule == "fixed":
        return proxy
    target = references.step_target(_runs_at(runs, proxy), step, proxy.target_margin)
    if target is None:
        raise UserError(f"no reference run of {step[0]} or {step[1]} has a validation curve; see the logs under "
                        "reference_runs/")
    return dataclasses.replace(proxy, target=target)


def _steps(steps: Sequence[str]) -> list[tuple[str, str]]:
    if list(steps) == ["all"]:
        return list(hints_lib.LADDER_STEPS)
    known = {hints_lib.step_name(s): s for s in hints_lib.LADDER_STEPS}
    unknown = [s for s in steps if s not in known]
    if unknown or not steps:
        raise ConfigError(f"speedrun_bench.steps: unknown step(s) {unknown or '(none)'}; known: {list(known)} or ['all']")
    return [known[s] for s in steps]


def _reference_runs(workdir, needed, seeds) -> list[dict[str, Any]] | None:
    """Each needed (record, proxy): the record's own config over its whole schedule at that proxy, `seeds`
    times (journalled in references.jsonl, each run with its proxy's settings; `_runs_at` selects them)."""
    path = os.path.join(workdir, "references.jsonl")
    wanted = [(record, _reference_settings(proxy)) for record, proxy in needed]
    # Runs of another proxy (other validation settings, say) in the same workdir are kept but not used.
    runs = [r for r in (rundir.read_jsonl(path) if os.path.exists(path) else [])
            if (r["record"], r.get("proxy")) in wanted and r["seed"] < seeds]
    done = {(r["record"], r["seed"], json.dumps(r["proxy"], sort_keys=True)) for r in runs}
    for seed in range(seeds):  # seeds outermost: a drifting machine load spreads over every record alike
        for (record, proxy), (_, settings) in zip(needed, wanted):
            if (record, seed, json.dumps(settings, sort_keys=True)) in done:
                continue
            if rundir.stop_requested():
                return None
            root = os.path.join(workdir, "reference_runs", *(["packed"] if proxy.scale_file == proxy.packed_scale_file
                                                             else []))
            run = references.run_reference(record, seed, root, proxy, logging.info)
            if run["status"] == "interrupted" or rundir.stop_requested():
                return None
            run["proxy"] = settings
            rundir.append_jsonl(path, run)
            runs.append(run)
    return runs


def _runs_at(runs: Sequence[dict[str, Any]], proxy: tasks.Proxy) -> list[dict[str, Any]]:
    """The reference runs trained at `proxy`'s settings."""
    settings = _reference_settings(proxy)
    return [r for r in runs if r.get("proxy") == settings]


def _reference_settings(proxy: tasks.Proxy) -> dict[str, Any]:
    """What a reference curve depends on (not the target: costs to any target come from the curve)."""
    return {k: v for k, v in dataclasses.asdict(proxy).items()
            if k in ("eval_every", "val_tokens", "train_data", "val_data", "total_steps", "seed", "scale_file",
                     "seq_len", "val_batch_size")}


def _harness(workdir, names, agent, proxies, sandbox_backend) -> list[dict[str, Any]] | None:
    """One evaluation per task of record i+1's workspace (oracle) or record i's (noop), in the sandbox."""
    path = os.path.join(workdir, f"results_{agent}.jsonl")
    results = [r for r in (rundir.read_jsonl(path) if os.path.exists(path) else [])
               if r["task"] in proxies and r.get("proxy") == dataclasses.asdict(proxies[r["task"]])]
    done = {r["task"] for r in results}
    sandbox = Sandbox(sandbox_backend)
    scratch = os.path.join(workdir, "scratch")
    shutil.rmtree(scratch, ignore_errors=True)  # executions of a killed launch
    os.makedirs(scratch)
    for name in names:
        if name in done:
            continue
        step, levels = tasks.parse_task_name(name)
        task = tasks.load_task(name, proxies[name])
        data = research_tasks.prepare_data(task)
        executor = Executor(task, data, sandbox, scratch, 1, 0.0, rundir.stop_requested)
        sources = tasks.reference_workspace(step[1] if agent == "oracle" else step[0], proxies[name].scale_file)
        try:
            outcome = asyncio.run(executor.run(sources))
        except Interrupted:
            return None
        result = {"task": name, "step": list(step), "hint": levels, "costs": outcome.metrics if outcome.ok else None,
                  "failure": None if outcome.ok else f"{outcome.failure}: {outcome.evaluation[:300]}",
                  "proxy": dataclasses.asdict(proxies[name])}
        logging.info("%s %s: %s", agent, name, result["costs"] or result["failure"])
        rundir.append_jsonl(path, result)
        results.append(result)
    shutil.rmtree(scratch, ignore_errors=True)
    return [r for r in results if r["task"] in names]


def _research_agent(workdir, names, proxies) -> list[dict[str, Any]] | None:
    """The research agent (operators x policy from gin) over the tasks; each task's best node's costs."""
    agent_dir = os.path.join(workdir, "agent")
    summary = experiment.run(agent_dir, tasks=names, task_proxies=proxies)
    if summary.get("status") == "interrupted":
        return None
    results = []
    for name in names:
        step, levels = tasks.parse_task_name(name)
        best = os.path.join(agent_dir, "tasks", name, "best", "metrics.json")
        costs = None
        if os.path.exists(best):
            with open(best) as f:
                found = json.load(f)
            costs = {m: found.get(m) for m in ("val_loss", *tasks.MEASURES)}
        results.append({"task": name, "step": list(step), "hint": levels, "costs": costs,
                        "failure": None if costs else "no valid node"})
    return results


def _score(workdir, runs, proxies, results, proxy, label, agent) -> dict[str, Any]:
    """FSR of every result on each cost against its step's references; the tables, plot and JSON."""
    rows, records, refs = [], [], {}
    for step, step_proxy in proxies.items():
        refs[step] = references.medians(_runs_at(runs, step_proxy), list(step), step_proxy.target)
    for result in results:
        step = tuple(result["step"])
        before, after = refs[step]
        row = {**result, "target": proxies[step].target}
        scorable = references.step_flag(before, after)
        for measure in tasks.MEASURES:
            agent_cost = (result["costs"] or {}).get(measure)
            if scorable[measure] != "ok":
                row[f"fsr_{measure}"], row[f"flag_{measure}"] = None, scorable[measure]
                continue
            score = speedrun_scores.fsr(before[measure], after[measure], agent_cost)
            row[f"fsr_{measure}"], row[f"flag_{measure}"] = score.fsr, score.flag
        rows.append(row)
        records.append({"task": result["task"], "hint": result["hint"], "scaffold": label,
                        "fsr": row[f"fsr_{proxy.measure}"], "flag": row[f"flag_{proxy.measure}"]})
    table = speedrun_scores.fsr_table(records, os.path.join(workdir, f"fsr_{agent}.png"))
    for statistic in ("median", "iqm"):
        table += f"\n{speedrun_scores.fsr_table(records, statistic=statistic)}"
    ref_rows = [{"step": list(step), "target": proxies[step].target, "before": pair[0], "after": pair[1],
                 "flags": references.step_flag(*pair)} for step, pair in refs.items()]
    with open(os.path.join(workdir, f"summary_{agent}.md"), "w") as f:
        f.write(_markdown(ref_rows, rows, table, proxy, label))
    summary = {"status": "complete", "scaffold": label, "proxy": dataclasses.asdict(proxy), "references": ref_rows,
               "tasks": rows}
    with open(os.path.join(workdir, f"results_{agent}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def _fmt(value, spec=".3f") -> str:
    return "—" if value is None else f"{value:{spec}}"


def _cost(row, measure) -> str:
    spec = ".1f" if measure == "train_time_s" else ",.0f"
    spread = row[f"{measure}_spread"] or []
    return f"{_fmt(row[measure], spec)} [{', '.join(_fmt(v, spec) for v in spread)}]"


def _markdown(ref_rows, rows, table, proxy, label) -> str:
    rule = (f"per step: the worse of the two records' best validation losses + {proxy.target_margin}"
            if proxy.target_rule == "per_step" else f"fixed at {proxy.target}")
    lines = [f"# Speedrunning benchmark: {label}", "",
             (f"Proxy: `{proxy.scale_file or 'the real configs (full scale)'}` on each record, validated every {proxy.eval_every} steps on "
              f"{proxy.val_tokens:,} tokens, seed {proxy.seed}; target {rule}; task metric `{proxy.measure}`."
              + (f" Steps into the packed-document records (12+) use `{proxy.packed_scale_file}` on both records "
                 f"({proxy.packed_seq_len}-token rows, validation batch {proxy.packed_val_batch_size})."
                 if any(ref["step"][1] in hints_lib.PACKED_RECORDS for ref in ref_rows) else "")), "",
             "## References (each record's own config; median [min, max] over seeds)", "",
             "| step | target | record i: train s | steps | tokens | record i+1: train s | steps | tokens | flags |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ref in ref_rows:
        flags = ", ".join(f"{m}: {ref['flags'][m]}" for m in tasks.MEASURES if ref["flags"][m] != "ok") or "ok"
        lines.append(f"| {' -> '.join(ref['step'])} | {ref['target']} | "
                     + " | ".join(_cost(ref["before"], m) for m in tasks.MEASURES) + " | "
                     + " | ".join(_cost(ref["after"], m) for m in tasks.MEASURES) + f" | {flags} |")
    lines += ["", ("A flag marks a cost on which record i+1 is not cheaper than record i at this proxy, or only by "
                   "less than the seeds' spread: FSR is undefined there and the task is reported, not scored, on "
                   "that cost."), "",
              "## Tasks", "", "| task | hint | target | train s | steps | tokens | FSR (train s) | FSR (steps) | FSR (tokens) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        costs = row["costs"] or {}
        fsrs = [(_fmt(row[f"fsr_{m}"], ".2f") + (f" ({row[f'flag_{m}']})" if row[f"flag_{m}"] else ""))
                for m in tasks.MEASURES]
        lines.append(f"| {' -> '.join(row['step'])} | {row['hint']} | {row['target']} | "
                     f"{_fmt(costs.get('train_time_s'), '.1f')} | {_fmt(costs.get('steps'), ',.0f')} | "
                     f"{_fmt(costs.get('tokens'), ',.0f')} | " + " | ".join(fsrs) + " |")
    lines += ["", f"## FSR on `{proxy.measure}` by hint level and scaffold (mean, median, IQM over tasks; 95% bootstrap)",
              "", table]
    return "\n".join(lines) + "\n"
