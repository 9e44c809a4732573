"""Greedy search as in AIDE and aira-dojo: draft `num_drafts` candidates, then with
probability `debug_prob` repair a random buggy candidate (at most
`max_debug_depth` repairs in a row), else improve the best good candidate.

`workers` > 1 grows that many candidates per step concurrently (for operators whose work is slow and
independent, such as executing programs): each worker chooses its action in turn, before any of them
runs, so drafts in flight count towards `num_drafts` and no buggy node is debugged twice; several
workers may improve the same best candidate (different samples of one operator)."""

from __future__ import annotations

import heapq
import random

import gin

from libs.search.base import Search, gather_all
from libs.search.operators import Operators, TreeOperators, debug_depth, is_tried
from libs.search.tree import Node


@gin.configurable
class Greedy(Search):
    name = "greedy"

    def __init__(self, *args, operators: Operators | None = None, num_drafts: int = 5, debug_prob: float = 0.5,
                 max_debug_depth: int = 3, seed: int = 0, workers: int = 1, **kwargs):
        if workers < 1:
            raise ValueError(f"Greedy.workers={workers}: expected at least 1")
        self.operators = operators or TreeOperators()
        self.workers = workers
        self.num_drafts, self.debug_prob, self.max_debug_depth, self.seed = (
            num_drafts, debug_prob, max_debug_depth, seed)
        self._good: list[tuple[float, int, int]] = []  # (-value, -depth, id): good candidates, deepest first on ties
        self._buggy: list[int] = []
        self._drafts = 0
        self._spent: set[int] = set()
        super().__init__(*args, **kwargs)
        for node in self.tree.nodes:
            self._track(node)

    def _track(self, node: Node | None) -> None:
        if node is None or not is_tried(node):
            return
        if node.meta.get("op") == "draft":
            self._drafts += 1
        if node.meta.get("spent"):
            self._spent.add(node.id)
        elif node.buggy:
            if debug_depth(node) < self.max_debug_depth:
                self._buggy.append(node.id)
        else:
            heapq.heappush(self._good, (-(node.value or 0.0), -node.depth, node.id))

    def _best_good(self) -> Node | None:
        while self._good and self._good[0][2] in self._spent:
            heapq.heappop(self._good)
        return self.tree[self._good[0][2]] if self._good else None

    def _spend(self, node: Node) -> None:
        """Marks a candidate as used up (journaled, so a resume agrees)."""
        self._spent.add(node.id)
        self.tree.update(node, meta={**node.meta, "spent": True})

    async def step(self) -> bool:
        if self.workers == 1:
            return await self._grow(random.Random(f"{self.seed}:{self.steps}"), self._choose)
        # Choices first (synchronously, so workers see each other's), then the work, concurrently.
        choices, drafting = [], 0
        for worker in range(max(1, self.nodes_left(self.workers))):
            rng = random.Random(f"{self.seed}:{self.steps}:{worker}")
            choice = self._choose(rng, drafting)
            drafting += choice[0] == "draft"
            choices.append((rng, choice))
        grown = await gather_all(*(self._grow(rng, lambda _rng, c=choice: c) for rng, choice in choices))
        return any(grown)

    def _choose(self, rng: random.Random, drafting: int = 0) -> tuple[str, Node | None]:
        """("draft", None), ("debug", the buggy node) or ("improve", None: the best good node when it runs)."""
        if self._drafts + drafting < self.num_drafts:
            return "draft", None
        if self._buggy and rng.random() < self.debug_prob:
            target = self.tree[self._buggy.pop(rng.randrange(len(self._buggy)))]
            self._spend(target)
            return "debug", target
        return "improve", None

    async def _grow(self, rng: random.Random, choose) -> bool:
        op, target = choose(rng)
        new = None
        if op == "draft":
            new = await self.operators.draft(self)
        elif op == "debug":
            new = await self.operators.debug(self, target)
        while new is None:
            best = self._best_good()
            if best is None:
                new = await self.operators.draft(self)
                if new is None:
                    return bool(self._buggy)
                break
            new = await self.operators.improve(self, best)
            if new is None:
                self._spend(best)  # Nothing left to try from it.
        self._track(new)
        return True
