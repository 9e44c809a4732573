"""Monte Carlo tree search with two selection rules.

- "uct" (aira-dojo): mean backed-up value, min-max normalised over all values
  seen so far, plus c * sqrt(ln N_parent / n).
- "puct" (the LLM-First Search paper's MCTS baseline): Q / (n + 1) +
  c_param * prior * sqrt(N_parent) / (1 + n), with c_param = ln((N_parent + 19652
  + 1) / 19652) + c and priors from the problem (the model, or uniform).

Leaves are valued by the problem's scorer; terminal leaves back up 1 for a
solution and 0 (uct) or -1 (puct, as in the paper) for a dead end.
"""

from __future__ import annotations

import math
from typing import Any
import gin

from libs.search.base import Search
from libs.search.tree import Node


@gin.configurable
class MCTS(Search):
    name = "mcts"

    def __init__(self, *args, selection: str = "uct", c: float = 0.5, **kwargs):
        if selection not in ("uct", "puct"):
            raise ValueError(f"MCTS.selection={selection!r}: expected 'uct' or 'puct'")
        self.selection, self.c = selection, c
        self.low, self.high = math.inf, -math.inf
        super().__init__(*args, **kwargs)
        # Dead ends and subtrees made only of them are never selected again (journaled in meta).
        self._dead = {n.id for n in self.tree.nodes if n.meta.get("dead")}

    async def step(self) -> bool:
        path = [self.tree.root]
        while path[-1].expanded and not path[-1].terminal:
            options = [self.tree[c] for c in path[-1].children if c not in self._dead]
            if not options:  # Everything below is a finished dead end: close it and retry.
                self._close(path[-1])
                return self.tree.root.id not in self._dead
            path.append(max(options, key=lambda c: self._score(path[-1], c)))
        leaf = path[-1]
        if leaf.terminal:
            value = 1.0 if leaf.solved else (-1.0 if self.selection == "puct" else 0.0)
            if not leaf.solved:
                self._close(leaf)
        else:
            children = await self.expand(leaf)
            if self.selection == "puct" and children:
                priors = await self.problem.priors(leaf.state, [c.state for c in children])
                total = sum(priors) or 1.0
                for child, p in zip(children, priors):
                    self.tree.update(child, prior=p / total)
            value = leaf.value if leaf.value is not None else 0.0
        for node in path:
            self.tree.update(node, visits=node.visits + 1, total_value=node.total_value + value)
            self._see(node.total_value / node.visits)
        return True

    def _close(self, node: Node) -> None:
        self._dead.add(node.id)
        self.tree.update(node, meta={**node.meta, "dead": True})

    def policy_state(self) -> dict[str, Any]:
        return {**super().policy_state(), "low": self.low, "high": self.high}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.low, self.high = state.get("low", math.inf), state.get("high", -math.inf)

    def _see(self, q: float) -> None:
        self.low, self.high = min(self.low, q), max(self.high, q)

    def _score(self, parent: Node, child: Node) -> float:
        if self.selection == "puct":
            c_param = math.log((parent.visits + 19652 + 1) / 19652) + self.c
            prior = child.prior if child.prior is not None else 1.0 / max(len(parent.children), 1)
            return child.total_value / (child.visits + 1) + c_param * prior * math.sqrt(parent.visits) / (
                1 + child.visits)
        q = child.total_value / child.visits if child.visits else (child.value or 0.0)
        span = self.high - self.low
        norm_q = (q - self.low) / span if span > 0 else q
        explore = math.sqrt(math.log(max(parent.visits, 1) + 1) / max(child.visits, 1))
        return norm_q + self.c * explore + (1e-3 if not child.visits else 0.0)
