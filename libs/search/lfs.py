"""LLM-First Search (Herr et al., 2025): the model decides when to leave its path.

The paper's loop (`llm_first_search.py`), step by step:

1. Setup: a value query on the root, then one child-values query on its children.
2. At the current node: if it is terminal, explore; else, if any unexpanded node exists anywhere
   (the frontier), ask the model whether to explore.
3. Explore: value every frontier node that has no value yet (one query each), then jump to the
   highest-valued frontier node (ties: the last in breadth-first order) and, if it is unexpanded,
   expand it and value its children. The frontier holds every unexpanded node: terminal ones and the
   current node's own children included.
4. Then, unless the current node is terminal, take the greedy step: expand its highest-valued child
   (unvalued children count 0; ties: the first), value that child's children, and move to it.
5. The game is won when the current node is a solved state; it ends when the frontier is empty or
   the token budget is spent.
"""

from __future__ import annotations

import gin

from libs.search.base import BestByValue, PathSearch
from libs.search.tree import Node


@gin.configurable
class LLMFirstSearch(PathSearch):
    name = "lfs"

    def __init__(self, *args, **kwargs):
        self._unexpanded: set[int] = set()
        self._unvalued: set[int] = set()  # Unexpanded nodes without a value.
        self._frontier: BestByValue | None = None
        super().__init__(*args, **kwargs)

    def on_node(self, node: Node) -> None:
        if self._frontier is None:
            self._frontier = BestByValue(self, ties_to_last=True, eligible=lambda n: not n.expanded)
        if node.expanded:
            self._unexpanded.discard(node.id)
            self._unvalued.discard(node.id)
            return
        self._unexpanded.add(node.id)
        if node.value is None:
            self._unvalued.add(node.id)
        else:
            self._unvalued.discard(node.id)
            self._frontier.push(node)

    async def step(self) -> bool:
        if not self.started:
            return await self.setup()
        node = self.tree[self.current]
        explore = node.terminal
        if not explore and self._unexpanded:
            listed = self._states(self.listed_children(node))
            explore = bool(await self.ask(self.problem.should_explore(self.tree.path_states(node), listed)))
        elif explore and not self._unexpanded:
            return False
        if explore and self._unexpanded:
            self.backtracks += 1
            for node_id in self.in_bfs_order(self._unvalued):
                if not self.tree[node_id].expanded and self.tree[node_id].value is None:
                    await self.score_node(self.tree[node_id])
            target = self._frontier.best()
            if target is not None:
                node = target
                self.current = node.id
                await self.expand(node)
            elif node.terminal:  # No frontier node could be valued: nowhere to go.
                return False
        if not node.terminal:
            child = max((self.tree[c] for c in node.children), default=None,
                        key=lambda c: c.value if c.value is not None else 0.0)  # max keeps the first of ties
            if child is None:
                return bool(self._unexpanded)
            await self.expand(child)
            node = child
            self.current = node.id
        self.visit(node)
        return bool(self._unexpanded) or self.won is not None
