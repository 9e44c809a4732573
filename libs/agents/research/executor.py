"""Executing candidate programs: run a candidate's sources as the task's solution, then score it.

`Executor.run(sources)` writes the starter files plus the candidate's edited ones into a fresh folder,
runs the task's command there through the sandbox (the task's time and memory limits, at most
`max_execution_s`), then the task's evaluator (also sandboxed: it may run the submitted code), and
returns an `Outcome`: the metrics, or why there are none (exit code, timeout, an invalid submission).
At most `max_parallel` executions run at once; callers await them from the event loop (the work runs
in threads), so model calls overlap with executions. A stop request (`should_stop`, e.g. SIGTERM) kills
executions in flight and raises `libs.search.base.Interrupted`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from libs.agents.research.runner import ExecutionCancelled, sandbox_runner
from libs.envs import research_tasks
from libs.sandbox import Sandbox
from libs.search.base import Interrupted

OUTPUT_CHARS = 3000  # of the solution's stdout + stderr kept in a node (head and tail)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One execution. `metric` is the task's metric when the evaluator accepted the submission, else None."""

    metric: float | None
    metrics: dict[str, Any] | None
    exit_code: int | None  # the solution's; None when it ran past its time limit
    output: str  # the solution's output (truncated) and the evaluator's verdict
    evaluation: str  # the evaluator's verdict on its own: its JSON, or why it rejected the submission
    seconds: float  # the solution's run time
    failure: str | None  # None, "exit", "timeout", "invalid" or "evaluator"

    @property
    def ok(self) -> bool:
        return self.metric is not None


def _clip(text: str, limit: int = OUTPUT_CHARS) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


class Executor:
    """Runs candidates of one task in the sandbox (see the module doc)."""

    def __init__(self, task: research_tasks.ResearchTask, data: research_tasks.TaskData, sandbox: Sandbox,
                 scratch_dir: str, max_parallel: int = 2, max_execution_s: float = 0.0,
                 should_stop: Callable[[], bool] | None = None):
        if max_parallel < 1:
            raise ValueError(f"max_parallel={max_parallel}: expected at least 1")
        limit = min(task.time_limit_s, max_execution_s) if max_execution_s > 0 else task.time_limit_s
        self.task = dataclasses.replace(task, time_limit_s=limit)
        self.data, self.scratch_dir = data, scratch_dir
        self.runner = sandbox_runner(sandbox, cancel=should_stop)
        self._slots = asyncio.Semaphore(max_parallel)
        self.executions = 0

    async def run(self, sources: Mapping[str, str]) -> Outcome:
        async with self._slots:
            self.executions += 1
            try:
                return await asyncio.to_thread(self._run, dict(sources))
            except ExecutionCancelled:
                raise Interrupted() from None

    def _run(self, sources: dict[str, str]) -> Outcome:
        folder = tempfile.mkdtemp(prefix=f"{self.task.name}-", dir=self.scratch_dir)
        try:
            work = research_tasks.prepare_workdir(self.task, f"{folder}/work", sources)
            try:
                result = research_tasks.run_solution(self.task, work, self.data, self.runner)
            except research_tasks.SolutionFailed as e:
                failure = "timeout" if e.result.timed_out else "exit"
                output = _clip(f"{e.result.stdout}\n{e.result.stderr}")
                return Outcome(None, None, e.result.returncode, f"{output}\n[{e}]".strip(), "", e.result.elapsed_s,
                               failure)
            output = _clip(f"{result.stdout}\n{result.stderr}")
            try:
                metrics = research_tasks.evaluate(self.task, work, self.data, self.runner)
            except research_tasks.InvalidSubmission as e:
                verdict = f"the evaluator rejected the submission: {e}"
                return Outcome(None, None, 0, f"{output}\n[{verdict}]".strip(), verdict, result.elapsed_s, "invalid")
            except research_tasks.EvaluationError as e:
                verdict = f"the evaluator failed on this submission: {e}"
                return Outcome(None, None, 0, f"{output}\n[{verdict}]".strip(), verdict, result.elapsed_s,
                               "evaluator")
            verdict = json.dumps(metrics)
            metric = float(metrics[self.task.metric])
            if not math.isfinite(metric):  # evaluate() already insists; a guard for the search's arithmetic
                return Outcome(None, metrics, 0, output, verdict, result.elapsed_s, "invalid")
            return Outcome(metric, metrics, 0, f"{output}\n[evaluator: {verdict}]".strip(), verdict,
                           result.elapsed_s, None)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
