"""Evolutionary search after aira-dojo (FunSearch-style islands).

Generation 0 drafts. Later generations pick an island by a softmax over the
islands' normalised mean fitness and parents by a softmax over normalised
fitness within it (temperature falling linearly from `initial_temp` to
`final_temp` over `num_generations`); a child is an improvement of one parent or,
with `crossover_prob` (from generation 2), a crossover of two. A buggy child
gets up to `max_debug_depth` repairs. A child joins its island only if at least
as fit as the island's mean; islands keep their `max_island_size` fittest. With
`migration_prob` per generation the weaker half of the islands is reset to the
best members of the stronger half.
"""

from __future__ import annotations

import math
import random
from typing import Any

import gin

from libs.search.base import Search, gather_all
from libs.search.operators import Operators, TreeOperators
from libs.search.tree import Node


@gin.configurable
class Evolutionary(Search):
    name = "evolutionary"

    def __init__(self, *args, operators: Operators | None = None, num_islands: int = 2,
                 individuals_per_generation: int = 4, crossover_prob: float = 0.5, migration_prob: float = 0.1,
                 initial_temp: float = 1.0, final_temp: float = 0.1, num_generations: int = 50,
                 max_island_size: int = 50, max_debug_depth: int = 3, seed: int = 0, **kwargs):
        self.operators = operators or TreeOperators()
        self.num_islands, self.per_generation = num_islands, individuals_per_generation
        self.crossover_prob, self.migration_prob = crossover_prob, migration_prob
        self.initial_temp, self.final_temp, self.num_generations = initial_temp, final_temp, num_generations
        self.max_island_size, self.max_debug_depth, self.seed = max_island_size, max_debug_depth, seed
        self.islands: list[list[int]] = [[] for _ in range(num_islands)]
        super().__init__(*args, **kwargs)
        if self.operators.one_node_per_call:
            self._adopt_orphans()

    def _adopt_orphans(self) -> None:
        """Good candidates a killed generation made (journaled, but the islands were saved before them)
        join their parent's island now, so resuming loses none from the population."""
        known = self.tree.policy_state.get("nodes")
        if known is None:
            return
        for node in self.tree.nodes[known:]:
            if node.meta.get("op") and not node.buggy:
                island = next((i for i, m in enumerate(self.islands) if node.parent in m), 0)
                self._admit(island, node)

    def _admit(self, island: int, child: Node) -> None:
        """`child` joins `island` if at least as fit as its mean; the island keeps its fittest."""
        members = self.islands[island]
        mean = sum(map(self._fitness, members)) / len(members) if members else -math.inf
        if self._fitness(child.id) >= mean and child.id not in members:
            members.append(child.id)
            members.sort(key=self._fitness, reverse=True)
            del members[self.max_island_size:]

    def temperature(self) -> float:
        frac = min(1.0, self.steps / max(self.num_generations - 1, 1))
        return self.initial_temp + (self.final_temp - self.initial_temp) * frac

    def _fitness(self, node_id: int) -> float:
        return self.tree[node_id].value or 0.0

    def _softmax_pick(self, rng: random.Random, scores: list[float]) -> int:
        low, high = min(scores), max(scores)
        norm = [(s - low) / (high - low) if high > low else 1.0 for s in scores]
        weights = [math.exp(n / max(self.temperature(), 1e-6)) for n in norm]
        return rng.choices(range(len(scores)), weights=weights)[0]

    async def _offspring(self, rng: random.Random, island: int) -> tuple[int, Node | None]:
        members = self.islands[island]
        if not members:
            return island, await self.operators.draft(self)
        first = self.tree[members[self._softmax_pick(rng, [self._fitness(m) for m in members])]]
        if len(members) > 1 and self.steps >= 2 and rng.random() < self.crossover_prob:
            second = self.tree[members[self._softmax_pick(rng, [self._fitness(m) for m in members])]]
            child = await self.operators.crossover(self, first, second)
        else:
            child = await self.operators.improve(self, first)
        for _ in range(self.max_debug_depth):
            if child is None or not child.buggy or not self.nodes_left(1):
                break
            child = await self.operators.debug(self, child)
        return island, child

    async def step(self) -> bool:
        rng = random.Random(f"{self.seed}:{self.steps}")
        if self.steps == 0:
            jobs = [(i % self.num_islands, self.operators.draft(self))
                    for i in range(max(1, self.nodes_left(self.per_generation)))]
            results = [(i, await job) for i, job in jobs]  # Drafts in order: each sees the last.
        else:
            means = [sum(map(self._fitness, m)) / len(m) if m else 0.0 for m in self.islands]
            picks = [self._softmax_pick(rng, means) for _ in range(max(1, self.nodes_left(self.per_generation)))]
            results = await gather_all(*(self._offspring(random.Random(rng.random()), i) for i in picks))
        for island, child in results:
            if child is not None and not child.buggy:
                self._admit(island, child)
        if self.num_islands > 1 and rng.random() < self.migration_prob:
            self._migrate()
        return any(child is not None for _, child in results)

    def _migrate(self) -> None:
        order = sorted(range(self.num_islands), key=lambda i: -max(map(self._fitness, self.islands[i]), default=0))
        strong, weak = order[: self.num_islands // 2], order[self.num_islands // 2:]
        for w, s in zip(weak, strong * len(weak)):
            self.islands[w] = list(self.islands[s][: max(1, len(self.islands[s]) // 2)])

    def policy_state(self) -> dict[str, Any]:
        return {**super().policy_state(), "islands": self.islands, "nodes": len(self.tree)}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.islands = state.get("islands", self.islands)
