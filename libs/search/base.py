"""What every policy shares: the tree, budgets, the scorer queries, wins and results.

A policy subclasses `Search` and implements `step()` (one unit of work: an
expansion, a simulation, a generation) plus `policy_state()` / `restore()` for
the few fields it keeps beside the tree. `run()` loops over steps until a win,
an exhausted budget or nothing left to search, journaling as it goes.

A game is won, as in the LLM-First Search paper, only when the policy *visits*
a solved state (`visit`): generating a solved child is not enough.
`win_on_generation=True` restores this codebase's earlier rule (any generated
solution ends the search), which inflates win rates and deflates tokens.

The token budget is checked after every scorer query, as the paper's code does:
a search that runs out of tokens mid-step stops there.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import functools
import heapq
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import gin

from libs.search.problem import Problem
from libs.search.tree import Journal, Node, Tree

T = TypeVar("T")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits of one search; 0 means no limit. Tokens are the scorer's (estimated for stand-ins)."""

    max_nodes: int = 0
    max_tokens: int = 0
    max_seconds: float = 0.0


@dataclasses.dataclass
class SearchResult:
    solved: bool
    stop_reason: str  # "solved" | "nodes" | "tokens" | "time" | "exhausted" | "interrupted"
    nodes: int
    tokens: int
    seconds: float  # this search's own time (its steps), over all sessions: ...
    query_seconds: float  # ... of which awaiting scorer queries (the rest is the policy's own work)
    steps: int
    best: Node | None
    solution: Node | None


class _TokensSpent(Exception):
    """Raised after a query that used up the token budget; `run()` stops there."""


class Interrupted(Exception):
    """Raised by an operator whose work a stop request cut short (e.g. a sandboxed execution killed on
    SIGTERM): `run()` ends with stop reason "interrupted" without counting the step. Nodes the step had
    already added stay in the journal; the step's unfinished work is chosen afresh on resume."""


async def gather_all(*jobs: Awaitable[T]) -> list[T]:
    """Runs `jobs` concurrently and returns their results in order; the first failure (an interruption, a
    spent budget) cancels the others and is raised as itself, not as an ExceptionGroup."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


class Search(abc.ABC):
    """Shared machinery of all policies.

    `should_stop` (e.g. `libs.train.rundir.stop_requested`) is checked between steps: when it turns
    true the search returns with stop reason "interrupted", its journal complete up to that step.
    """

    name = "search"
    should_stop: Callable[[], bool] | None = None

    def __init__(self, problem: Problem, budget: Budget | None = None, journal_path: str | None = None,
                 win_on_generation: bool = False):
        self.problem = problem
        self.budget = budget or Budget()
        self.win_on_generation = win_on_generation
        self.tree = Tree(Journal(journal_path), problem.encode, problem.decode)
        self.steps = 0
        self.won: Node | None = None
        self.active_s = 0.0  # time spent in steps, over all sessions of this search
        self.query_s = 0.0  # of which awaiting scorer queries
        self._start = time.perf_counter()
        if not self.tree.nodes:
            root = problem.root()
            self.tree.add(root, terminal=problem.is_terminal(root), solved=problem.is_solution(root))
        else:
            self.restore(self.tree.policy_state)
            won = self.tree.policy_state.get("won")
            self.won = self.tree[won] if won is not None else None
            problem.restore_tokens(self.tree.policy_state.get("tokens", 0))  # spent before a kill
        for node in self.tree.nodes:
            self.on_node(node)

    # --- what a policy implements -------------------------------------------------

    @abc.abstractmethod
    async def step(self) -> bool:
        """One unit of search; returns False when nothing is left to search."""

    def policy_state(self) -> dict[str, Any]:
        """JSON-able fields the policy keeps beside the tree (saved after every step)."""
        return {"steps": self.steps}

    def restore(self, state: dict[str, Any]) -> None:
        self.steps = state.get("steps", 0)
        self.active_s = state.get("active_s", 0.0)
        self.query_s = state.get("query_s", 0.0)

    def on_node(self, node: Node) -> None:
        """Called for every node, new or replayed, and again when its value or expansion changes."""

    # --- the loop -------------------------------------------------------------------

    async def run(self) -> SearchResult:
        reason = self._stop_reason()
        while reason is None:
            t0 = time.perf_counter()
            try:
                more = await self.step()
            except _TokensSpent:
                more, reason = True, "tokens"
            except Interrupted:
                self.active_s += time.perf_counter() - t0
                reason = "interrupted"
                self.tree.save_policy_state({**self.tree.policy_state, "active_s": self.active_s}, self.seconds())
                break
            self.active_s += time.perf_counter() - t0
            self.steps += 1
            self.tree.save_policy_state({**self.policy_state(), "active_s": self.active_s, "query_s": self.query_s,
                                         "won": self.won.id if self.won else None,
                                         "tokens": self.problem.tokens_used()}, self.seconds())
            reason = ("solved" if self.won else reason) or self._stop_reason() or (None if more else "exhausted")
            if reason is None and self.should_stop is not None and self.should_stop():
                reason = "interrupted"
        self.tree.journal.close()
        return SearchResult(solved=self.won is not None, stop_reason=reason, nodes=len(self.tree),
                            tokens=self.problem.tokens_used(), seconds=self.active_s, query_seconds=self.query_s,
                            steps=self.steps,
                            best=self.tree.best(), solution=self.won)

    def nodes_left(self, default: int) -> int:
        """How many more nodes the node budget allows (`default` when it sets none, or when the policy's
        operators may add several nodes per call); operator policies that grow several candidates per step
        size their steps with it, so a budget is not overshot by a whole step."""
        operators = getattr(self, "operators", None)
        if not self.budget.max_nodes or not getattr(operators, "one_node_per_call", False):
            return default
        return max(0, min(default, self.budget.max_nodes - len(self.tree)))

    def seconds(self) -> float:
        """Wall time of this search over all its sessions (the time budget)."""
        return self.tree.elapsed_s + time.perf_counter() - self._start

    def _stop_reason(self) -> str | None:
        b = self.budget
        if self.won is not None:
            return "solved"
        if b.max_nodes and len(self.tree) >= b.max_nodes:
            return "nodes"
        if b.max_tokens and self.problem.tokens_used() >= b.max_tokens:
            return "tokens"
        if b.max_seconds and self.seconds() >= b.max_seconds:
            return "time"
        return None

    # --- wins -----------------------------------------------------------------------

    def visit(self, node: Node) -> bool:
        """The policy has reached `node`; a solved node wins the game."""
        if node.solved and self.won is None:
            self.won = node
        return node.solved

    # --- tree growth and scorer queries ----------------------------------------------

    async def ask(self, query: Awaitable[T]) -> T:
        """Awaits one scorer query (timed), then stops the search if it used up the token budget."""
        t0 = time.perf_counter()
        answer = await query
        self.query_s += time.perf_counter() - t0
        if self.budget.max_tokens and self.problem.tokens_used() >= self.budget.max_tokens:
            raise _TokensSpent()
        return answer

    def listed_children(self, node: Node) -> dict[int, Node]:
        """{index among siblings: child} of `node`'s unexpanded children (what a prompt lists)."""
        return {i: self.tree[c] for i, c in enumerate(node.children) if not self.tree[c].expanded}

    def _states(self, listed: dict[int, Node]) -> dict[int, Any]:
        return {i: child.state for i, child in listed.items()}

    async def expand(self, node: Node, score: bool = True) -> list[Node]:
        """Creates `node`'s children once (journaled) and, with `score`, values them in one query."""
        if node.expanded:
            return [self.tree[c] for c in node.children]
        if not node.terminal:
            states = await self.problem.expand(node.state)
            made = sum(1 for c in node.children if self.tree[c].parent == node.id)  # journaled before a kill
            for state in states[made:]:
                self.add_child(node, state)
        if score and node.children:
            await self.score_children(node)
        self.tree.update(node, expanded=True)
        self.on_node(node)
        if not node.children and not node.terminal:  # A dead end: no legal move.
            self.tree.update(node, terminal=True, buggy=True)
        return [self.tree[c] for c in node.children]

    async def score_children(self, node: Node) -> None:
        """One child-values query over `node`'s unexpanded children; children it leaves out stay unvalued."""
        listed = self.listed_children(node)
        if not listed:
            return
        values = await self.ask(self.problem.child_values(self.tree.path_states(node), self._states(listed)))
        for index, value in values.items():
            if index in listed:
                self.set_value(listed[index], value)

    async def score_node(self, node: Node) -> float | None:
        """One value query on `node` itself."""
        listed = self.listed_children(node)
        value = await self.ask(self.problem.value(self.tree.path_states(node), self._states(listed)))
        if value is not None:
            self.set_value(node, value)
        return value

    def in_bfs_order(self, node_ids) -> list[int]:
        """`node_ids` sorted as a breadth-first walk from the root meets them."""
        return sorted(node_ids, key=functools.cmp_to_key(lambda a, b: bfs_compare(self.tree, self.tree[a],
                                                                                   self.tree[b])))

    def set_value(self, node: Node, value: float) -> None:
        self.tree.update(node, value=float(value))
        self.on_node(node)

    def add_child(self, parent: Node | list[Node], state: Any, value: float | None = None, **fields) -> Node:
        parents = parent if isinstance(parent, list) else [parent]
        solved = self.problem.is_solution(state)
        terminal = self.problem.is_terminal(state)
        buggy = bool(fields.pop("buggy", False)) or (terminal and not solved)
        child = self.tree.add(state, [p.id for p in parents], value=None if value is None else float(value),
                              terminal=terminal, solved=solved, buggy=buggy, **fields)
        if solved and self.win_on_generation:
            self.visit(child)
        self.on_node(child)
        return child


class PathSearch(Search):
    """A search that walks from a current node (LLM-First Search, Best-First).

    Both start as the paper's code does: a value query on the root, then its children valued in one
    query. Keeps and resumes `current`, the number of `backtracks` (jumps away from the path) and
    whether the setup is done.
    """

    def __init__(self, *args, **kwargs):
        self.current, self.backtracks, self.started = 0, 0, False
        super().__init__(*args, **kwargs)

    async def setup(self) -> bool:
        """The first step; returns False if the root itself is a solution (nothing left to do)."""
        root = self.tree.root
        if root.value is None:
            await self.score_node(root)
        await self.expand(root)
        self.started = True
        return not self.visit(root)

    def policy_state(self) -> dict[str, Any]:
        return {**super().policy_state(), "current": self.current, "backtracks": self.backtracks,
                "started": self.started}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.current = state.get("current", 0)
        self.backtracks = state.get("backtracks", 0)
        self.started = state.get("started", False)


def bfs_compare(tree: Tree, a: Node, b: Node) -> int:
    """<0, 0 or >0 as `a` comes before, with or after `b` in a breadth-first walk from the root.

    Within a depth, that order is the order of the parents, then of the children under one parent;
    the walk up stops at the first common parent, so ties cost O(distance to it), not O(tree).
    """
    if a.depth != b.depth:
        return a.depth - b.depth
    while a.id != b.id and a.parent != b.parent:
        if a.parent is None or b.parent is None:  # Several parents broke the depth count: any fixed order.
            return a.id - b.id
        a, b = tree[a.parent], tree[b.parent]
    if a.id == b.id:
        return 0
    siblings = tree[a.parent].children
    return siblings.index(a.id) - siblings.index(b.id)


class _Tie:
    """Heap tie-break: breadth-first order, or its reverse."""

    __slots__ = ("tree", "node", "reverse")

    def __init__(self, tree: Tree, node: Node, reverse: bool):
        self.tree, self.node, self.reverse = tree, node, reverse

    def __lt__(self, other: "_Tie") -> bool:
        order = bfs_compare(self.tree, self.node, other.node)
        return order > 0 if self.reverse else order < 0


class BestByValue:
    """Nodes with values, best first, ties to the first (or last) in breadth-first order.

    A heap with lazy deletion: `push` again whenever a node's value changes; `best` drops entries whose
    node no longer qualifies (`eligible`) or whose value has changed since.
    """

    def __init__(self, search: Search, ties_to_last: bool, eligible: Callable[[Node], bool]):
        self._search, self._last, self._eligible = search, ties_to_last, eligible
        self._heap: list[tuple[float, Any, int, float]] = []

    def push(self, node: Node) -> None:
        if node.value is None or not self._eligible(node):
            return
        tie = _Tie(self._search.tree, node, reverse=self._last)
        heapq.heappush(self._heap, (-node.value, tie, node.id, node.value))

    def best(self) -> Node | None:
        while self._heap:
            _, _, node_id, value = self._heap[0]
            node = self._search.tree[node_id]
            if self._eligible(node) and _same(node.value, value):
                return node
            heapq.heappop(self._heap)
        return None


def _same(a: float | None, b: float) -> bool:
    return a is not None and (a == b or (math.isinf(a) and math.isinf(b) and (a > 0) == (b > 0)))
