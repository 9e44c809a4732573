"""LLM-First Search (Herr et al., 2025): the model decides when to leave its path.

At each step the model sees the current path and answers whether to explore
(jump to the best-valued unexpanded node anywhere in the tree) or continue; then
the search always takes a greedy step to the best child of where it stands.
Values come from the problem's scorer (the model, or a labelled heuristic).
"""

from __future__ import annotations

from typing import Any

import gin

from libs.search.base import PathSearch


@gin.configurable
class LLMFirstSearch(PathSearch):
    """The LFS loop of the paper's `run_countdown` / `run_sudoku`."""

    name = "lfs"
    backtracks = 0

    async def step(self) -> bool:
        node, child, frontier = await self.options()
        if child is None:
            explore = True  # A dead end or a fully explored node: jump.
        elif frontier is None:
            explore = False
        else:
            explore = await self.problem.should_explore(self.tree.path_states(node), frontier.state)
        if explore:
            if frontier is None:
                return False
            self.backtracks += 1
            node = frontier
            await self.expand(node)
            child = self.best_unexpanded_child(node)
            if child is None:
                self.current = node.id
                return True
        await self.expand(child)  # The greedy step: expand the best child and move to it.
        self.current = child.id
        return True

    def policy_state(self) -> dict[str, Any]:
        return {**super().policy_state(), "backtracks": self.backtracks}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.backtracks = state.get("backtracks", 0)
