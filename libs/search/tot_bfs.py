"""Tree-of-Thoughts breadth-first search: the LLM-First Search paper's ToT-BFS baseline (`llm_tot_bfs.py`).

The root's children are valued in one query. Each level: sort the valued candidates by value (a
stable sort, so ties go to the later candidate) and keep the top `top_n`. If the best of them is
terminal, the game ends there: won if it is solved, lost otherwise (a top-ranked losing leaf loses).
Otherwise each kept candidate is expanded and its children valued (one query each, in order); the
valued children form the next level. Unvalued children are dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import gin

from libs.search.base import Search


@gin.configurable
class ToTBFS(Search):
    name = "tot_bfs"

    def __init__(self, *args, top_n: int = 3, concurrent_expansions: bool = False, **kwargs):
        """`concurrent_expansions` expands a level's candidates at once (faster with a model; the paper
        expands them one by one, which is what the token budget's stopping point assumes)."""
        self.top_n = top_n
        self.concurrent_expansions = concurrent_expansions
        self.level: list[int] | None = None
        self.ended = False
        super().__init__(*args, **kwargs)

    async def step(self) -> bool:
        if self.ended:
            return False
        if self.level is None:  # Setup: value the root's children.
            root = self.tree.root
            await self.expand(root)
            self.level = [c for c in root.children if self.tree[c].value is not None]
            return not self.visit(root)
        if not self.level:
            return False
        ranked = sorted(self.level, key=lambda i: self.tree[i].value)  # Stable: ties keep their order.
        selected = [self.tree[i] for i in ranked[-self.top_n:]]
        best = selected[-1]
        if best.terminal:
            self.ended = True
            self.visit(best)
            return False
        if self.concurrent_expansions:
            await asyncio.gather(*(self.expand(node) for node in selected))
        else:
            for node in selected:
                await self.expand(node)
        self.level = [c for node in selected for c in node.children if self.tree[c].value is not None]
        return True

    def policy_state(self) -> dict[str, Any]:
        return {**super().policy_state(), "level": self.level, "ended": self.ended}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.level = state.get("level")
        self.ended = state.get("ended", False)
