"""Best-First Search: always continue from the best-valued node, switching paths
whenever an unexpanded node elsewhere scores higher than the current node's best
child (the LLM-First Search paper's BestFS baseline: no model decision)."""

from __future__ import annotations

import gin

from libs.search.base import PathSearch


@gin.configurable
class BestFirstSearch(PathSearch):
    name = "bestfs"

    async def step(self) -> bool:
        _, child, frontier = await self.options()
        if child is None or (frontier is not None and (frontier.value or 0.0) > (child.value or 0.0)):
            child = frontier
        if child is None:
            return False
        await self.expand(child)
        self.current = child.id
        return True
