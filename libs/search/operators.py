"""Draft / improve / debug / crossover: the actions of operator-based policies.

aira-dojo's Greedy and Evolutionary policies grow a population of candidate
solutions with these operators. Research tasks implement them with a model
writing programs; `TreeOperators` implements them for problems that can only
expand and value children (the puzzles): a "new candidate" is the best successor not
yet tried. Tree problems have no recombination, so their crossover improves the
fitter parent (said so in the node's metadata).
"""

from __future__ import annotations

import abc

from libs.search.base import Search
from libs.search.tree import Node


class Operators(abc.ABC):
    """Each operator returns the new candidate node, or None when it has nothing to offer.

    `one_node_per_call`: each call adds exactly one node (research operators), so policies can size a
    step's work to the node budget (`Search.nodes_left`); False where a call may expand many.
    """

    one_node_per_call = True

    @abc.abstractmethod
    async def draft(self, search: Search) -> Node | None:
        """A fresh candidate, independent of the others."""

    @abc.abstractmethod
    async def improve(self, search: Search, node: Node) -> Node | None:
        """A candidate that builds on `node`."""

    @abc.abstractmethod
    async def debug(self, search: Search, node: Node) -> Node | None:
        """A repair of the buggy candidate `node`."""

    @abc.abstractmethod
    async def crossover(self, search: Search, a: Node, b: Node) -> Node | None:
        """A candidate combining `a` and `b`."""


def is_tried(node: Node) -> bool:
    return bool(node.meta.get("op"))


def debug_depth(node: Node) -> int:
    return int(node.meta.get("debug_depth", 0))


class TreeOperators(Operators):
    """Operators over `expand` and child values only: pick the best untried successor."""

    one_node_per_call = False  # picking a successor expands its parent: all its children at once

    async def _pick(self, search: Search, parent: Node, op: str, depth: int = 0, note: str = "") -> Node | None:
        children = await search.expand(parent)
        untried = [c for c in children if not is_tried(c)]
        if not untried:
            return None
        best = max(untried, key=lambda c: (c.solved, c.value or 0.0))
        meta = {**best.meta, "op": op, "debug_depth": depth}
        if note:
            meta["note"] = note
        search.tree.update(best, meta=meta)
        search.visit(best)  # Picking a candidate is visiting it: a solved one wins.
        return best

    async def draft(self, search: Search) -> Node | None:
        return await self._pick(search, search.tree.root, "draft")

    async def improve(self, search: Search, node: Node) -> Node | None:
        return await self._pick(search, node, "improve")

    async def debug(self, search: Search, node: Node) -> Node | None:
        # A dead end is repaired by undoing its last move: the best untried sibling.
        parent = search.tree[node.parent] if node.parent is not None else search.tree.root
        return await self._pick(search, parent, "debug", debug_depth(node) + 1)

    async def crossover(self, search: Search, a: Node, b: Node) -> Node | None:
        fitter = max((a, b), key=lambda n: n.value or 0.0)
        return await self._pick(search, fitter, "crossover", note="tree problem: improves the fitter parent")
