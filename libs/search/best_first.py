"""Best-First Search: always continue from the best-valued node, switching paths
whenever an unexpanded node elsewhere scores higher than the current node's best
child (the LLM-First Search paper's BestFS baseline: no model decision)."""

from __future__ import annotations

from typing import Any

import gin

from libs.search.base import Search


@gin.configurable
class BestFirstSearch(Search):
    name = "bestfs"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.current = getattr(self, "current", 0)

    async def step(self) -> bool:
        node = self.tree[self.current]
        if not node.expanded:
            await self.expand(node)
        child = self.best_unexpanded_child(node)
        frontier = self.frontier_best(exclude={child.id} if child else set())
        if child is None or (frontier is not None and (frontier.value or 0.0) > (child.value or 0.0)):
            child = frontier
        if child is None:
            return False
        await self.expand(child)
        self.current = child.id
        return True

    def policy_state(self) -> dict[str, Any]:
        return {**super().policy_state(), "current": self.current}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.current = state.get("current", 0)
