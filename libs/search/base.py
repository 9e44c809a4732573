"""What every policy shares: the tree, budgets, the expand-and-score step, results.

A policy subclasses `Search` and implements `step()` (one unit of work: an
expansion, a simulation, a generation) plus `policy_state()` / `restore()` for
the few fields it keeps beside the tree. `run()` loops over steps until a
solution, an exhausted budget or nothing left to search, journaling as it goes.
"""

from __future__ import annotations

import abc
import dataclasses
import heapq
import json
import time
from typing import Any

import gin

from libs.search.problem import Problem
from libs.search.tree import Journal, Node, Tree


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits of one search; 0 means no limit."""

    max_nodes: int = 0
    max_tokens: int = 0
    max_seconds: float = 0.0


@dataclasses.dataclass
class SearchResult:
    solved: bool
    stop_reason: str  # "solved" | "nodes" | "tokens" | "time" | "exhausted"
    nodes: int
    tokens: int
    seconds: float
    steps: int
    best: Node | None
    solution: Node | None


class Search(abc.ABC):
    """Shared machinery of all policies."""

    name = "search"

    def __init__(self, problem: Problem, budget: Budget | None = None, journal_path: str | None = None,
                 stop_on_solution: bool = True):
        self.problem = problem
        self.budget = budget or Budget()
        self.stop_on_solution = stop_on_solution
        self.tree = Tree(Journal(journal_path), problem.encode, problem.decode)
        self.steps = 0
        self._start = time.perf_counter()
        # (-value, -depth, id) of unexpanded, non-terminal nodes: best value first, deepest on ties.
        self._frontier: list[tuple[float, int, int]] = []
        self._solved = False
        if not self.tree.nodes:
            root = problem.root()
            self.tree.add(root, terminal=problem.is_terminal(root), solved=problem.is_solution(root))
        else:
            self.restore(self.tree.policy_state)
        for node in self.tree.nodes:
            self._push_frontier(node)
            self._solved |= node.solved

    # --- what a policy implements -------------------------------------------------

    @abc.abstractmethod
    async def step(self) -> bool:
        """One unit of search; returns False when nothing is left to search."""

    def policy_state(self) -> dict[str, Any]:
        """JSON-able fields the policy keeps beside the tree (saved after every step)."""
        return {"steps": self.steps}

    def restore(self, state: dict[str, Any]) -> None:
        self.steps = state.get("steps", 0)

    # --- the loop -------------------------------------------------------------------

    async def run(self) -> SearchResult:
        reason = self._stop_reason()
        while reason is None:
            more = await self.step()
            self.steps += 1
            self.tree.save_policy_state(self.policy_state(), self.seconds())
            reason = self._stop_reason() or (None if more else "exhausted")
        self.tree.journal.close()
        solutions = self.tree.solutions()
        return SearchResult(solved=bool(solutions), stop_reason=reason, nodes=len(self.tree),
                            tokens=self.problem.tokens_used(), seconds=self.seconds(), steps=self.steps,
                            best=self.tree.best(), solution=solutions[0] if solutions else None)

    def seconds(self) -> float:
        return self.tree.elapsed_s + time.perf_counter() - self._start

    def _stop_reason(self) -> str | None:
        b = self.budget
        if self.stop_on_solution and self._solved:
            return "solved"
        if b.max_nodes and len(self.tree) >= b.max_nodes:
            return "nodes"
        if b.max_tokens and self.problem.tokens_used() >= b.max_tokens:
            return "tokens"
        if b.max_seconds and self.seconds() >= b.max_seconds:
            return "time"
        return None

    # --- shared operations ------------------------------------------------------------

    async def expand(self, node: Node) -> list[Node]:
        """Expands `node` once: proposes, scores and journals its children."""
        if node.expanded or node.terminal:
            return [self.tree[c] for c in node.children]
        states, seen = [], set()
        for state in await self.problem.expand(node.state):  # Drop duplicates and children already journaled.
            key = json.dumps(self.problem.key(state), sort_keys=True)
            if key not in seen and not self.tree.has_child(node.id, self.problem.key(state)):
                seen.add(key)
                states.append(state)
        values = await self.problem.evaluate(node.state, states) if states else []
        for state, value in zip(states, values):
            self.add_child(node, state, value)
        self.tree.update(node, expanded=True)
        if not node.children:  # A dead end: no legal move.
            self.tree.update(node, terminal=True, buggy=not node.solved)
        return [self.tree[c] for c in node.children]

    def add_child(self, parent: Node | list[Node], state: Any, value: float, **fields) -> Node:
        parents = parent if isinstance(parent, list) else [parent]
        solved = self.problem.is_solution(state)
        terminal = self.problem.is_terminal(state)
        child = self.tree.add(state, [p.id for p in parents], key=self.problem.key(state), value=float(value),
                              terminal=terminal, solved=solved, buggy=terminal and not solved, **fields)
        self._solved |= solved
        self._push_frontier(child)
        return child

    def _push_frontier(self, node: Node) -> None:
        if not node.expanded and not node.terminal:
            heapq.heappush(self._frontier, (-(node.value or 0.0), -node.depth, node.id))

    def frontier_best(self, exclude: set[int] = frozenset()) -> Node | None:
        """The highest-valued unexpanded node (lazy deletion keeps this O(log n))."""
        skipped = []
        best = None
        while self._frontier:
            node_id = self._frontier[0][2]
            node = self.tree[node_id]
            if node.expanded or node.terminal:
                heapq.heappop(self._frontier)
                continue
            if node_id in exclude:
                skipped.append(heapq.heappop(self._frontier))
                continue
            best = node
            break
        for item in skipped:
            heapq.heappush(self._frontier, item)
        return best

    def best_unexpanded_child(self, node: Node) -> Node | None:
        options = [self.tree[c] for c in node.children]
        options = [c for c in options if not c.expanded and not c.terminal]
        return max(options, key=lambda c: c.value or 0.0, default=None)


class PathSearch(Search):
    """A search that walks from a current node (LFS, Best-First): keeps and resumes `current`."""

    current = 0

    async def options(self) -> tuple[Node, Node | None, Node | None]:
        """The current node (expanded), its best unexpanded child, and the best frontier node elsewhere."""
        node = self.tree[self.current]
        if not node.expanded:
            await self.expand(node)
        child = self.best_unexpanded_child(node)
        return node, child, self.frontier_best(exclude={child.id} if child else set())

    def policy_state(self) -> dict[str, Any]:
        return {**super().policy_state(), "current": self.current}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.current = state.get("current", 0)
