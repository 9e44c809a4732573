"""The research operators: draft / improve / debug / crossover over programs, for the `libs.search` policies.

Every operator does the same four things (aira-dojo's node scoring):
1. ask the proposer (a model's operator set, or the rule-based stand-in) for a plan and program;
2. execute it in the sandbox and score it with the task's evaluator (`Executor`);
3. have the proposer's analyze operator review it (a model's review; none for the stand-in);
4. add the node, journaled: buggy if the review says so, the program exited non-zero or timed out, the
   evaluator rejected the submission or no metric came out; a reply without a usable program is a buggy
   node too, never a crash.

A node's `state` holds plan, code (`replies.program_text`: the task's first editable file, or the bundle
of every editable file for a multi-file task), sources (every edited file), output, metric, metrics,
evaluation, summary, exit_code, seconds and failure. Its `value`, which the policies rank and back up, maps
the raw metric monotonically into (0, 1) around the task's baseline (0.5 = the baseline's score;
direction-aware), so every policy maximises, whatever the metric's direction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from libs.agents.research import replies
from libs.agents.research.executor import Executor
from libs.agents.research.proposers import NoProposal
from libs.search.operators import Operators, debug_depth
from libs.search.problem import Problem
from libs.search.tree import Node


def metric_value(metric: float, baseline: float, lower_is_better: bool) -> float:
    """`metric` as a value in (0, 1): 0.5 at the baseline, strictly monotone (better is higher), never
    saturating (x / (1 + |x|) of the improvement relative to the baseline's magnitude)."""
    scale = abs(baseline) if baseline else 1.0
    x = (metric - baseline) / scale
    if lower_is_better:
        x = -x
    return 0.5 + 0.5 * x / (1.0 + abs(x))


class ResearchProblem(Problem):
    """The search problem of one research task: its candidates grow by operators only (no `expand`)."""

    def __init__(self, task_name: str, tokens: Callable[[], int] = lambda: 0):
        self.task_name, self._tokens = task_name, tokens

    def root(self) -> dict[str, Any]:
        return {"plan": f"task {self.task_name}", "task": self.task_name}

    async def expand(self, state):
        raise NotImplementedError("research candidates are made by operators; use a policy with operators")

    def is_terminal(self, state) -> bool:
        return False

    def is_solution(self, state) -> bool:
        return False  # research has no win: the search runs to its budget

    async def child_values(self, path, children) -> dict[int, float]:
        return {}

    def tokens_used(self) -> int:
        return self._tokens()


class ResearchOperators(Operators):
    """Operators over a proposer and an executor for one task (module doc).

    `on_node(node)` is called for every node made (progress output). `baseline` is the task's baseline
    score, the anchor of the value mapping.
    """

    def __init__(self, proposer, executor: Executor, baseline: float, on_node: Callable[[Node], None] | None = None):
        self.proposer, self.executor, self.baseline = proposer, executor, baseline
        self.task = executor.task
        self.on_node = on_node or (lambda node: None)
        self._drafting = 0

    async def draft(self, search) -> Node:
        drafts = sum(1 for n in search.tree.nodes if n.meta.get("op") == "draft")
        index = drafts + self._drafting
        self._drafting += 1
        try:
            return await self._grow(search, [search.tree.root], "draft", self.proposer.draft(search.tree, index))
        finally:
            self._drafting -= 1

    async def improve(self, search, node: Node) -> Node:
        return await self._grow(search, [node], "improve", self.proposer.improve(search.tree, node))

    async def debug(self, search, node: Node) -> Node:
        return await self._grow(search, [node], "debug", self.proposer.debug(search.tree, node),
                                depth=debug_depth(node) + 1)

    async def crossover(self, search, a: Node, b: Node) -> Node:
        return await self._grow(search, [a, b], "crossover", self.proposer.crossover(search.tree, a, b))

    async def _grow(self, search, parents: Sequence[Node], op: str, proposing, depth: int = 0) -> Node:
        start = time.perf_counter()
        try:
            proposal = await proposing
        except NoProposal as e:
            state = {"plan": e.plan, "code": "", "sources": {}, "output": f"[no usable program in the reply: {e}]",
                     "metric": None, "metrics": None, "evaluation": "", "summary": "", "exit_code": None,
                     "seconds": 0.0, "failure": "no_code"}
            return self._add(search, parents, op, depth, state, buggy=True, start=start)
        outcome = await self.executor.run(proposal.sources)
        state = {"plan": proposal.plan, "code": replies.program_text(proposal.sources, self.task.editable),
                 "sources": proposal.sources, "output": outcome.output, "metric": outcome.metric,
                 "metrics": outcome.metrics, "evaluation": outcome.evaluation, "summary": "",
                 "exit_code": outcome.exit_code, "seconds": round(outcome.seconds, 3), "failure": outcome.failure}
        review = await self.proposer.analyze(search.tree, state)
        review_bug = False
        if review is not None:
            state["summary"] = review.summary
            state["reported_metric"] = review.metric
            review_bug = review.is_bug
            if review_bug and outcome.ok:
                state["failure"] = "review"
        return self._add(search, parents, op, depth, state, buggy=not outcome.ok or review_bug, start=start)

    def _add(self, search, parents, op, depth, state, buggy: bool, start: float) -> Node:
        value = None if buggy else metric_value(state["metric"], self.baseline, self.task.lower_is_better)
        state["op_seconds"] = round(time.perf_counter() - start, 3)
        node = search.add_child(list(parents), state, value=value, buggy=buggy,
                                meta={"op": op, "debug_depth": depth})
        self.on_node(node)
        return node
