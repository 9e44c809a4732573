"""Who writes the candidates: a model through the gateway (operator sets "aide" and "aira"), or the labelled
rule-based stand-in ("rule_based").

A proposer answers the operators' requests for one task: `draft`, `improve`, `debug` and `crossover`
return a `Proposal` (a plan and the edited files) or raise `NoProposal` (a reply without a usable program:
the operator records a buggy node); `analyze` reviews an executed candidate (None: no review).

`ModelProposer` renders the operator set's prompt (`prompts.render`) with the task, the compute budget, a
data overview and the memory scope configured for the operator (`memory.scope`), asks the model, and
extracts the plan and program (`replies.extract_plan_and_code`, re-asking up to `reply_retries` times as
aira-dojo does). The program replaces the task's first editable file. A multi-file task (several editable
files) is shown as a bundle of all of them (`replies.program_text`) and answered with the files that change
(`replies.extract_plan_and_files`); the others stay as they were. Identical prompts are told apart in the
reply cache by a per-call tag, so two drafts are two samples, and a resumed run replays its replies.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libs.agents.research import memory, prompts, replies
from libs.agents.research.rule_based import STAND_IN, Proposal, RuleBasedProposer
from libs.envs.research_tasks import ResearchTask, TaskData
from libs.llm import gateway as llm
from libs.search.tree import Node, Tree

DEFAULT_MEMORY = {"draft": "simple", "improve": "simple", "debug": "ancestral", "crossover": "none"}


class NoProposal(Exception):
    """The model's reply held no usable program; `plan` is what it said instead (for the buggy node)."""

    def __init__(self, reason: str, plan: str = ""):
        super().__init__(reason)
        self.plan = plan


def sources_of(node: Node) -> dict[str, str]:
    state = node.state if isinstance(node.state, dict) else {}
    return dict(state.get("sources") or {})


def data_overview(data: TaskData, max_files: int = 20) -> str:
    """The public data's files with their sizes, and each CSV's header line."""
    lines = []
    files = sorted(p for p in Path(data.public_dir).rglob("*") if p.is_file())
    for path in files[:max_files]:
        rel = path.relative_to(data.public_dir)
        line = f"- data/{rel}: {path.stat().st_size:,} bytes"
        if path.suffix == ".csv":
            with open(path, encoding="utf-8", errors="replace") as f:
                line += f"; header: {f.readline().strip()[:200]}"
        lines.append(line)
    if len(files) > max_files:
        lines.append(f"- ... and {len(files) - max_files} more files")
    return "\n".join(lines)


class RuleProposer:
    """The rule-based stand-in (`rule_based.RuleBasedProposer`) behind the proposer interface.

    Proposals are drawn from a generator seeded per call; a proposal whose files equal an existing
    candidate's is redrawn (up to 10 times), so the stand-in does not spend executions on repeats."""

    def __init__(self, task: ResearchTask, mode: str = "random", seed: int = 0):
        self.rules = RuleBasedProposer(task, mode)
        self.label = f"{STAND_IN}, {mode}"
        self.seed = seed
        self._calls: int | None = None

    def _rng(self, tree: Tree, op: str) -> random.Random:
        if self._calls is None:  # past a resume, later calls draw afresh
            self._calls = len(tree)
        self._calls += 1
        return random.Random(f"{self.seed}:{op}:{self._calls}")

    @staticmethod
    def _fresh(tree: Tree, make) -> Proposal:
        seen = {json.dumps(sources_of(n), sort_keys=True) for n in tree.nodes}
        proposal = make()
        for _ in range(10):
            if json.dumps(proposal.sources, sort_keys=True) not in seen:
                break
            proposal = make()
        return proposal

    async def draft(self, tree: Tree, index: int) -> Proposal:
        rng = self._rng(tree, "draft")
        return self._fresh(tree, lambda: self.rules.draft(index, rng)) if index else self.rules.draft(0, rng)

    async def improve(self, tree: Tree, node: Node) -> Proposal:
        rng = self._rng(tree, "improve")
        return self._fresh(tree, lambda: self.rules.improve(sources_of(node), rng))

    async def debug(self, tree: Tree, node: Node) -> Proposal:
        good = next((n for n in reversed(tree.path_to(node)) if not n.buggy and sources_of(n)), None)
        return self.rules.debug(sources_of(good) if good is not None else None)

    async def crossover(self, tree: Tree, a: Node, b: Node) -> Proposal:
        rng = self._rng(tree, "crossover")
        return self.rules.crossover(sources_of(a), sources_of(b), rng)

    async def analyze(self, tree: Tree, state: Mapping[str, Any]) -> replies.Review | None:
        del tree, state
        return None

    def tokens_used(self) -> int:
        return 0


@dataclasses.dataclass(frozen=True)
class PromptSettings:
    """What the prompts say beyond the task: the compute budget, the plan length, the memory per operator."""

    compute: str = ""
    plan_sentences: str = "3-5"
    memory_scopes: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MEMORY))
    reply_retries: int = 2  # re-asks after a reply without a usable program (aira-dojo: 3 attempts in all)
    memory_limit: int = 20  # most memory items in a prompt


class ModelProposer:
    """Candidates written by a model through `gateway` with the `operator_set`'s prompts (module doc)."""

    def __init__(self, gateway, operator_set: str, task: ResearchTask, data: TaskData,
                 settings: PromptSettings = PromptSettings()):
        if operator_set not in prompts.OPERATOR_SETS:
            raise ValueError(f"operator set {operator_set!r}: expected one of {prompts.OPERATOR_SETS}")
        for op, name in settings.memory_scopes.items():
            memory.scope(name)  # a ConfigError for an unknown scope, before any call
            if op not in ("draft", "improve", "debug", "crossover"):
                raise ValueError(f"memory scope for {op!r}: expected draft, improve, debug or crossover")
        self.gateway, self.operator_set, self.task, self.settings = gateway, operator_set, task, settings
        self.label = f"{gateway.config.model} ({operator_set} operators)"
        cores = os.cpu_count() or 1
        self.compute = settings.compute or f"The machine has {cores} CPU cores and no GPU."
        self.overview = data_overview(data)
        self.multi_file = len(task.editable) > 1
        self._tags: dict[str, int] = {}

    # -- prompts -------------------------------------------------------------------------------------

    def _task(self) -> dict[str, Any]:
        t = self.task
        return {"title": t.title, "description": t.description, "command": list(t.command),
                "edit_files": list(t.editable) if self.multi_file else [t.editable[0]],
                "submission": list(t.submission), "metric": t.metric, "lower_is_better": t.lower_is_better,
                "time_limit_s": t.time_limit_s, "memory_mb": t.memory_mb}

    @staticmethod
    def _view(node: Node | Mapping[str, Any]) -> dict[str, Any]:
        state = node.state if isinstance(node, Node) else node
        return {key: state.get(key) or ("" if key != "metric" else None)
                for key in ("plan", "code", "output", "metric", "summary", "evaluation")}

    def _prompt(self, tree: Tree, op: str, anchor: Node | None, **fields) -> str:
        """The operator's prompt; memory is taken around `anchor` (the node operated on)."""
        scope = memory.scope(self.settings.memory_scopes.get(op, DEFAULT_MEMORY.get(op, "none")))
        context = {"task": self._task(), "compute": self.compute, "data_overview": self.overview,
                   "memory": scope(tree, anchor, self.settings.memory_limit),
                   "starter_code": replies.program_text(self.task.starter_sources(), self.task.editable),
                   "plan_sentences": self.settings.plan_sentences, "parent": None, "node": None, "parents": [],
                   "multi_file": self.multi_file, "files": list(self.task.editable) if self.multi_file else [],
                   "file_marker": replies.FILE_MARKER.format(name="NAME"), **fields}
        return prompts.render(self.operator_set, op, **context)

    def _tag(self, tree: Tree, op: str, parents: tuple[int, ...]) -> str:
        """A cache tag unique to this request among the run's: the operator, the parents and a counter
        that starts, in each launch, past the candidates already made from those parents."""
        key = f"{op}:{','.join(map(str, parents))}"
        if key not in self._tags:
            self._tags[key] = sum(1 for n in tree.nodes if tuple(n.parents) == parents and n.meta.get("op") == op)
        self._tags[key] += 1
        return f"{key}:{self._tags[key]}"

    def _extract(self, reply: str) -> tuple[str, dict[str, str]]:
        if self.multi_file:
            return replies.extract_plan_and_files(reply, self.task.editable)
        plan, code = replies.extract_plan_and_code(reply)
        return plan, {self.task.editable[0]: code}

    async def _ask_for_program(self, prompt: str, tag: str, base: Mapping[str, str]) -> Proposal:
        reason, said = "", ""
        for attempt in range(1 + self.settings.reply_retries):
            try:
                reply = await self.gateway.complete([{"role": "user", "content": prompt}],
                                                    cache_tag=f"{tag}#{attempt}")
            except llm.LLMError as e:
                if not e.rejected:  # transient and still failing: the run stops; a rerun resumes
                    raise
                raise NoProposal(f"the model server rejected the request: {str(e)[:300]}") from None
            try:
                plan, files = self._extract(reply.text)
            except replies.NoCode as e:
                reason, said = str(e), replies.strip_thinking(reply.text).strip()[:2000]
                continue
            return Proposal(plan, {**base, **files})
        raise NoProposal(f"{reason} ({1 + self.settings.reply_retries} replies)", said)

    # -- operators -----------------------------------------------------------------------------------

    async def draft(self, tree: Tree, index: int) -> Proposal:
        del index
        prompt = self._prompt(tree, "draft", None)
        return await self._ask_for_program(prompt, self._tag(tree, "draft", (0,)), self.task.starter_sources())

    async def improve(self, tree: Tree, node: Node) -> Proposal:
        prompt = self._prompt(tree, "improve", node, parent=self._view(node))
        return await self._ask_for_program(prompt, self._tag(tree, "improve", (node.id,)), sources_of(node))

    async def debug(self, tree: Tree, node: Node) -> Proposal:
        prompt = self._prompt(tree, "debug", node, parent=self._view(node))
        base = sources_of(node) or self.task.starter_sources()
        return await self._ask_for_program(prompt, self._tag(tree, "debug", (node.id,)), base)

    async def crossover(self, tree: Tree, a: Node, b: Node) -> Proposal:
        prompt = self._prompt(tree, "crossover", a, parents=[self._view(a), self._view(b)])
        return await self._ask_for_program(prompt, self._tag(tree, "crossover", (a.id, b.id)), sources_of(a))

    async def analyze(self, tree: Tree, state: Mapping[str, Any]) -> replies.Review | None:
        """The analyze operator's review of an executed candidate; None when the reply holds none."""
        if not state.get("code"):
            return None
        prompt = self._prompt(tree, "analyze", None, node=self._view(state))
        extra = {}
        if self.gateway.structured_outputs:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "submit_review", "schema": replies.REVIEW_SCHEMA}}
        try:
            reply = await self.gateway.complete([{"role": "user", "content": prompt}], **extra)
        except llm.LLMError as e:
            if not e.rejected:
                raise
            return None  # e.g. the output made the prompt too long for the model: no review
        try:
            return replies.parse_review(reply.text)
        except ValueError:
            return None

    def tokens_used(self) -> int:
        usage = self.gateway.usage()
        return int(usage["prompt_tokens"] + usage["completion_tokens"])
