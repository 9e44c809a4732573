"""The research agent: an operator set x a search policy, run on research tasks (aira-dojo's solver over
MLGym-style tasks).

For each task in turn: prepare its data, score its baseline in the sandbox (once; `baseline.json`), then
search: the policy (`libs.search` Greedy, MCTS or Evolutionary, configured in gin) grows candidates with
the operators (`ResearchOperators`) of the chosen set: "rule_based" (a labelled stand-in, no model),
"aide" or "aira" (a model through the gateway, `LLMConfig` in gin). Every node is journaled as it is
made (`tasks/<task>/journal.jsonl`), so a killed run resumes without repeating or losing one, and the
budgets (steps, wall time, tokens) count across launches; a task whose budget is spent is not searched
again. Each task ends with its tree (`tree.png`, `tree.html`), its best submission (`best/`) and a
record; the run ends with `summary.md`, `results.json` and `profiles.png` (libs.evals.research_report).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import gin
from absl import logging

from libs.agents.research.executor import Executor
from libs.agents.research.operators import ResearchOperators, ResearchProblem
from libs.agents.research.proposers import ModelProposer, PromptSettings, RuleProposer
from libs.envs import research_tasks
from libs.envs.speedrun_bench import tasks as speedrun_tasks
from libs.evals import research_report, research_tree
from libs.llm import gateway as llm  # LLMConfig is a gin configurable of this binary
from libs.sandbox import Sandbox
from libs.search import evolutionary, greedy, mcts
from libs.search.base import Budget
from libs.search.tree import Node
from libs.train import rundir
from libs.train.errors import ConfigError, UserError
from libs.train.launch import NON_NEGATIVE, POSITIVE
from libs.train.metrics import format_duration

OPERATOR_SETS = ("rule_based", "aide", "aira")
POLICIES = {"greedy": greedy.Greedy, "mcts": mcts.MCTS, "evolutionary": evolutionary.Evolutionary}


@gin.configurable("research_agent", denylist=["workdir", "task_proxies"])
def run(
    workdir: str,
    tasks: Sequence[str] = ("prisoners_dilemma",),
    operators: str = "rule_based",
    policy: str = "greedy",
    steps: Annotated[int, POSITIVE] = 20,
    max_seconds_per_task: Annotated[float, NON_NEGATIVE] = 0.0,
    max_tokens_per_task: Annotated[int, NON_NEGATIVE] = 0,
    max_execution_s: Annotated[float, NON_NEGATIVE] = 0.0,
    parallel_executions: Annotated[int, POSITIVE] = 2,
    rule_mode: str = "random",
    sandbox_backend: str = "auto",
    seed: int = 0,
    compute: str = "",
    plan_sentences: str = "3-5",
    memory_scopes: Mapping[str, str] | None = None,
    reply_retries: Annotated[int, NON_NEGATIVE] = 2,
    task_proxies: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs the agent on `tasks` (names from libs/envs/research_tasks, speedrunning-benchmark tasks
    "speedrun.<record i>__<record i+1>.hint_<levels>" (libs/envs/speedrun_bench), or ["all"]: the shipped ones).

    Args:
      workdir: run directory (tasks/<task>/..., summary.md, results.json, profiles.png, llm_*).
      operators: "rule_based" (stand-in), "aide" or "aira" (a model: LLMConfig).
      policy: "greedy", "mcts" or "evolutionary"; their own settings are gin bindings of Greedy, MCTS and
        Evolutionary (e.g. Greedy.num_drafts, MCTS.num_children, Evolutionary.individuals_per_generation).
      steps: candidates per task (nodes, debugs included). max_seconds_per_task: wall time per task over
        all launches (0: none). max_tokens_per_task: model tokens per task (0: none; LLMConfig.budget_tokens
        and budget_usd bound the whole run).
      max_execution_s: per-execution wall time, below the task's own limit (0: the task's).
      parallel_executions: executions in flight at once (model calls overlap with them).
      rule_mode: the stand-in's improve, "random" or "grid". seed: the stand-in's and the policies' draws.
      sandbox_backend: "auto" (bubblewrap, else rlimits with a loud warning), "bwrap" or "rlimits".
      compute, plan_sentences, memory_scopes, reply_retries: what the model's prompts say and how
        often a reply without a program is re-asked (see proposers.PromptSettings).
      task_proxies: {speedrun task name: its proxy (its own target)}, from the speedrunning benchmark (not gin);
        a speedrun task missing here gets the gin-configured `speedrun_proxy`.
    """
    names = research_tasks.list_tasks() if list(tasks) == ["all"] else list(tasks)
    unknown = [t for t in names if t not in research_tasks.list_tasks() and not speedrun_tasks.is_task(t)]
    if unknown or not names:
        raise ConfigError(f"research_agent.tasks: unknown task(s) {unknown or '(none given)'}; known: "
                          f"{research_tasks.list_tasks()}, the speedrunning benchmark's "
                          f"'{speedrun_tasks.PREFIX}<record i>__<record i+1>.hint_<levels>', or ['all']")
    for name in names:
        if speedrun_tasks.is_task(name):
            speedrun_tasks.parse_task_name(name)  # a malformed name is one line before any work
    if operators not in OPERATOR_SETS:
        raise ConfigError(f"research_agent.operators={operators!r}: expected one of {OPERATOR_SETS}")
    if policy not in POLICIES:
        raise ConfigError(f"research_agent.policy={policy!r}: expected one of {sorted(POLICIES)}")
    if rule_mode not in ("random", "grid"):
        raise ConfigError(f"research_agent.rule_mode={rule_mode!r}: expected 'random' or 'grid'")
    settings = PromptSettings(compute=compute, plan_sentences=plan_sentences,
                              memory_scopes=dict(memory_scopes or PromptSettings().memory_scopes),
                              reply_retries=reply_retries)
    sandbox = Sandbox(sandbox_backend)
    scratch = os.path.join(workdir, "scratch")
    shutil.rmtree(scratch, ignore_errors=True)  # executions of a killed launch
    os.makedirs(scratch)
    gateway, errors = _gateway(workdir) if operators != "rule_based" else (None, None)
    budget = Budget(max_nodes=steps + 1, max_tokens=max_tokens_per_task, max_seconds=max_seconds_per_task)

    async def search_all() -> tuple[list[dict[str, Any]], str]:  # one event loop: the gateway's clients live on it
        done = []
        for name in names:
            outcome = await _search_task(_load_task(name, task_proxies or {}), workdir, scratch, sandbox, gateway, operators,
                                         policy, settings, budget, max_execution_s, parallel_executions, rule_mode,
                                         seed, errors)
            if outcome is None or outcome == "budget":
                return done, "interrupted" if outcome is None else "budget"
            done.append(outcome)
        return done, "complete"

    try:
        results, status = asyncio.run(search_all())
    finally:
        if gateway is not None:
            gateway.write_usage(os.path.join(workdir, "llm_usage.jsonl"))
            gateway.close()
        shutil.rmtree(scratch, ignore_errors=True)
    label = results[0]["proposer"] if results else operators
    summary = research_report.write_summary(workdir, results, label, policy, status)
    logging.info("summary written to %s (%s): best beats the baseline on %d of %d tasks",
                 os.path.join(workdir, "summary.md"), status, summary["beats_baseline"], summary["tasks"])
    return summary


def _load_task(name: str, proxies: Mapping[str, Any]) -> research_tasks.ResearchTask:
    """A shipped task, or a speedrunning-benchmark task (for its proxy, default the gin `speedrun_proxy`)."""
    if speedrun_tasks.is_task(name):
        return speedrun_tasks.load_task(name, proxies.get(name))
    return research_tasks.load_task(name)


def _gateway(workdir: str):
    return llm.Gateway.for_run(workdir), {"budget": llm.BudgetExceeded, "call": llm.LLMError}


async def _search_task(task, workdir, scratch, sandbox, gateway, operators, policy, settings, budget,
                       max_execution_s, parallel, rule_mode, seed, errors) -> dict[str, Any] | str | None:
    """Searches one task; returns its record, "budget" (the run's model budget is spent) or None (stopped)."""
    task_dir = os.path.join(workdir, "tasks", task.name)
    os.makedirs(task_dir, exist_ok=True)
    data = research_tasks.prepare_data(task)
    executor = Executor(task, data, sandbox, scratch, parallel, max_execution_s, rundir.stop_requested)
    baseline = await _baseline(task, executor, task_dir)
    if baseline is None:
        return None
    if operators == "rule_based":
        proposer = RuleProposer(task, rule_mode, seed)
    else:
        proposer = ModelProposer(gateway, operators, task, data, settings)
    problem = ResearchProblem(task.name, proposer.tokens_used)
    progress = _Progress(task, baseline, budget.max_nodes - 1)
    ops = ResearchOperators(proposer, executor, baseline, on_node=progress)
    search = POLICIES[policy](problem, operators=ops, budget=budget,
                              journal_path=os.path.join(task_dir, "journal.jsonl"))
    search.should_stop = rundir.stop_requested
    progress.start(search)
    try:
        result = await search.run()
    except Exception as e:  # pylint: disable=broad-except
        if errors is not None and isinstance(e, errors["budget"]):
            logging.warning("LLM budget spent (%s); stopping", e)
            search.tree.journal.close()
            return "budget"
        if errors is not None and isinstance(e, errors["call"]) and not isinstance(e, UserError):
            raise UserError(f"task {task.name}: a model call failed after retries ({str(e).splitlines()[0][:200]}); "
                            "rerun the same command to resume") from e
        raise
    _write_task_outputs(search.tree, task, task_dir, proposer.label)
    if result.stop_reason == "interrupted":
        return None
    record = research_report.task_result(search.tree, task, baseline, proposer.label, policy, result.stop_reason,
                                         result.seconds, result.tokens)
    rundir.append_jsonl(os.path.join(task_dir, "result.jsonl"), record)
    logging.info("task %s done (%s): baseline %s, best %s in %d nodes (%d buggy)", task.name, result.stop_reason,
                 _fmt(baseline), _fmt(record["best"]), record["nodes"], record["buggy"])
    return record


async def _baseline(task, executor: Executor, task_dir: str) -> float | None:
    """The baseline's score in the sandbox, measured once per workdir (None: stopped while measuring)."""
    path = os.path.join(task_dir, "baseline.json")
    if os.path.exists(path):
        with open(path) as f:
            return float(json.load(f)["metric"])
    from libs.search.base import Interrupted  # pylint: disable=import-outside-toplevel

    logging.info("task %s: scoring the baseline in the sandbox", task.name)
    try:
        outcome = await executor.run(task.starter_sources())
    except Interrupted:
        return None
    if not outcome.ok:
        raise UserError(f"task {task.name}: its baseline does not score in the sandbox ({outcome.failure}): "
                        f"{outcome.output.strip().splitlines()[-1][:300] if outcome.output.strip() else 'no output'}")
    with open(path, "w") as f:
        json.dump({"metric": outcome.metric, "metrics": outcome.metrics, "seconds": outcome.seconds}, f)
    logging.info("task %s: baseline %s = %s (%.1f s)", task.name, task.metric, _fmt(outcome.metric), outcome.seconds)
    return outcome.metric


def _write_task_outputs(tree, task, task_dir: str, label: str) -> None:
    title = f"{task.name}: {label}"
    research_tree.plot_tree(tree, os.path.join(task_dir, "tree.png"), task.lower_is_better, title=title)
    research_tree.write_html(tree, os.path.join(task_dir, "tree.html"), title=title)
    best = research_tree.best_node([n for n in tree.nodes if n.id], task.lower_is_better)
    best_dir = os.path.join(task_dir, "best")
    shutil.rmtree(best_dir, ignore_errors=True)
    if best is not None:
        os.makedirs(best_dir)
        for name, text in best.state["sources"].items():
            os.makedirs(os.path.dirname(os.path.join(best_dir, name)) or best_dir, exist_ok=True)
            with open(os.path.join(best_dir, name), "w") as f:
                f.write(text)
        with open(os.path.join(best_dir, "metrics.json"), "w") as f:
            json.dump({"node": best.id, "plan": best.state["plan"], **(best.state.get("metrics") or {})}, f, indent=1)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


class _Progress:
    """One log line per node: what was made, its score, the best so far and the time."""

    def __init__(self, task, baseline: float, steps: int):
        self.task, self.baseline, self.steps = task, baseline, steps
        self.search = None
        self.best: float | None = None

    def start(self, search) -> None:
        self.search = search
        for node in search.tree.nodes[1:]:
            self._see(node)
        done = len(search.tree) - 1
        if done:
            logging.info("task %s: resuming with %d of %d nodes made (best %s)", self.task.name, done, self.steps,
                         _fmt(self.best))

    def _see(self, node: Node) -> None:
        metric = node.state.get("metric")
        if not node.buggy and metric is not None and (self.best is None or self.task.better(metric, self.best)):
            self.best = metric

    def __call__(self, node: Node) -> None:
        self._see(node)
        state = node.state
        what = (f"buggy ({state.get('failure')})" if node.buggy else f"{self.task.metric} {_fmt(state['metric'])}")
        elapsed = self.search.seconds() if self.search else 0.0
        logging.info("%s | node %d/%d %s of %s -> %s | best %s (baseline %s) | %s", self.task.name, node.id,
                     self.steps, node.meta.get("op"), ",".join(map(str, node.parents)), what, _fmt(self.best),
                     _fmt(self.baseline), format_duration(elapsed))
