"""Tree-of-Thoughts breadth-first search: a level-wise beam of the `top_n` best
children; each level's expansions run concurrently."""

from __future__ import annotations

import asyncio
from typing import Any

import gin

from libs.search.base import Search


@gin.configurable
class ToTBFS(Search):
    name = "tot_bfs"

    def __init__(self, *args, top_n: int = 3, **kwargs):
        self.top_n = top_n
        super().__init__(*args, **kwargs)
        self.level = getattr(self, "level", [0])

    async def step(self) -> bool:
        nodes = [self.tree[i] for i in self.level]
        children = await asyncio.gather(*(self.expand(n) for n in nodes))
        candidates = [c for group in children for c in group if not c.terminal or c.solved]
        candidates.sort(key=lambda c: (c.solved, c.value or 0.0), reverse=True)
        self.level = [c.id for c in candidates[: self.top_n]]
        return bool(self.level)

    def policy_state(self) -> dict[str, Any]:
        return {**super().policy_state(), "level": self.level}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.level = state.get("level", [0])
