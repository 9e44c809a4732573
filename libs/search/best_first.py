"""Best-First Search: the LLM-First Search paper's BestFS baseline (`llm_bestfs.py`), no model decision.

Setup as in LFS (a value query on the root, one child-values query on its children). Each step:

1. Among the expanded nodes that still have unexpanded children, value the unvalued ones (one query
   each) and pick the one with the highest own value (ties: the first in breadth-first order). Switch
   to it only if it beats the current node's value strictly.
2. Expand the current node's highest-valued unexpanded child (unvalued children count 0; ties: the
   first), value that child's children, and move to it.
3. A solved current node wins; a losing terminal one gets value -inf, so the next step leaves it.
"""

from __future__ import annotations

import math

import gin

from libs.search.base import BestByValue, PathSearch
from libs.search.tree import Node


@gin.configurable
class BestFirstSearch(PathSearch):
    name = "bestfs"

    def __init__(self, *args, **kwargs):
        self._open: dict[int, int] = {}  # node id -> its unexpanded children (first-parent links)
        self._counted: set[int] = set()  # unexpanded nodes counted in their parent's _open
        self._unvalued: set[int] = set()  # open nodes without a value
        self._best: BestByValue | None = None
        super().__init__(*args, **kwargs)

    def _is_open(self, node: Node) -> bool:
        """Expanded, with at least one unexpanded child: what the paper's BestFS chooses among."""
        return node.expanded and self._open.get(node.id, 0) > 0

    def on_node(self, node: Node) -> None:
        if self._best is None:
            self._best = BestByValue(self, ties_to_last=False, eligible=self._is_open)
        parent = node.parent
        if parent is not None:
            if not node.expanded and node.id not in self._counted:
                self._counted.add(node.id)
                self._open[parent] = self._open.get(parent, 0) + 1
            elif node.expanded and node.id in self._counted:
                self._counted.discard(node.id)
                self._open[parent] -= 1
            self._track(self.tree[parent])
        self._track(node)

    def _track(self, node: Node) -> None:
        if self._is_open(node) and node.value is None:
            self._unvalued.add(node.id)
        else:
            self._unvalued.discard(node.id)
            self._best.push(node)

    async def step(self) -> bool:
        if not self.started:
            return await self.setup()
        for node_id in self.in_bfs_order(self._unvalued):
            await self.score_node(self.tree[node_id])
        best = self._best.best()
        if best is None:
            return False
        current = self.tree[self.current]
        here = current.value if current.value is not None else -math.inf
        if best.id != current.id and best.value > here:
            current = best
            self.current = best.id
            self.backtracks += 1
        options = [c for c in (self.tree[i] for i in current.children) if not c.expanded]
        if not current.terminal and options:
            child = max(options, key=lambda c: c.value if c.value is not None else 0.0)  # first of ties
            await self.expand(child)
            current = child
            self.current = child.id
        elif not current.terminal:  # The current node has nothing left; the best open node takes over.
            self.current = best.id
            return True
        if self.visit(current):
            return True
        if current.terminal:
            self.set_value(current, -math.inf)
        return self._best.best() is not None or bool(self._unvalued)
