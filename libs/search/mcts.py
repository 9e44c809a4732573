"""Monte Carlo tree search with two selection rules.

- "puct" (the LLM-First Search paper's MCTS baseline, `llm_mcts.py`), by default:
  - Selection walks down from the root. At an expanded node it asks the model for priors over its
    children once (lazily, the first time it passes), then picks the child maximising
    Q / (n + 1) + c_param * prior * sqrt(N) / (1 + n), where Q is the child's summed backed-up value,
    n its visits, c_param = ln((sum of the children's visits + 19652 + 1) / 19652) + c, and
    N = depth * visits + 1 of the node choosing (the paper's `visits_to_root`, which multiplies the
    node's own visits by its depth; so N = 1 at the root). Ties go to the first child.
  - An unexpanded node reached this way is expanded (children created, not valued) and valued by a
    value query on itself; that value is backed up.
  - A terminal node backs up +1 (solved: the game is won) or -1, and stays selectable: dead ends are
    re-selected and keep backing up -1 (`close_dead_ends=True` closes them instead).
- "uct" (aira-dojo): mean backed-up value, min-max normalised over all values seen so far, plus
  c * sqrt(ln N_parent / n). Leaves take the value their parent's child-values query gave them;
  terminal leaves back up 1 (solved) or 0, and dead ends are closed.

With `operators` (research agents, as aira-dojo's MCTS) the tree grows by operators instead of
`expand`: selection walks down by UCT over the children that have been visited (a candidate that
never worked is never selected) to a node without such children; from it `num_children` candidates
are made concurrently (drafts from the root, improvements elsewhere). A buggy candidate gets up to
`max_debug_depth` debugs in a row; a good one (or a repaired chain) backs its value up along the
selected path and itself. Selection is then always "uct".
"""

from __future__ import annotations

import math
from typing import Any

import gin

from libs.search.base import Search, gather_all
from libs.search.operators import Operators
from libs.search.tree import Node


@gin.configurable
class MCTS(Search):
    name = "mcts"

    def __init__(self, *args, selection: str | None = None, c: float = 0.5, close_dead_ends: bool | None = None,
                 operators: Operators | None = None, num_children: int = 5, max_debug_depth: int = 20, **kwargs):
        """`selection`: "puct" (default) or "uct" (default and required with `operators`).
        `close_dead_ends`: never select a finished dead end again (default: False for puct, as in the
        paper, True for uct)."""
        selection = selection or ("uct" if operators is not None else "puct")
        if selection not in ("uct", "puct") or (operators is not None and selection != "uct"):
            raise ValueError(f"MCTS.selection={selection!r}: expected 'uct' or 'puct' ('uct' with operators)")
        if num_children < 1 or max_debug_depth < 0:
            raise ValueError("MCTS needs num_children >= 1 and max_debug_depth >= 0")
        self.operators, self.num_children, self.max_debug_depth = operators, num_children, max_debug_depth
        self.selection, self.c = selection, c
        self.close_dead_ends = (selection == "uct") if close_dead_ends is None else close_dead_ends
        self.low, self.high = math.inf, -math.inf
        self._unexpanded: set[int] = set()
        super().__init__(*args, **kwargs)
        self._dead = {n.id for n in self.tree.nodes if n.meta.get("dead")}

    def on_node(self, node: Node) -> None:
        if node.expanded:
            self._unexpanded.discard(node.id)
        else:
            self._unexpanded.add(node.id)

    async def step(self) -> bool:
        if self.operators is not None:
            return await self._operator_step()
        root = self.tree.root
        if not root.expanded:  # The paper expands the root up front, without values.
            await self.expand(root, score=self.selection == "uct")
            return not self.visit(root)
        path = [root]
        while path[-1].expanded and not path[-1].terminal:
            node = path[-1]
            if self.selection == "puct" and node.meta.get("priors") is None:
                await self._set_priors(node)
            options = [self.tree[c] for c in node.children if c not in self._dead]
            if not options:  # Everything below is a closed dead end: close this node too.
                self._close(node)
                return root.id not in self._dead
            path.append(max(options, key=self._scorer(node)))  # max keeps the first of ties
        leaf = path[-1]
        if leaf.terminal:
            if not leaf.expanded:
                self.tree.update(leaf, expanded=True)
                self.on_node(leaf)
            if self.visit(leaf):
                value = 1.0
            else:
                value = -1.0 if self.selection == "puct" else 0.0
                if self.close_dead_ends:
                    self._close(leaf)
        elif self.selection == "puct":
            await self.expand(leaf, score=False)
            value = await self.score_node(leaf) if not leaf.terminal else -1.0
            value = 0.0 if value is None else value  # No usable answer from the model: back up 0.
        else:
            await self.expand(leaf)
            value = leaf.value if leaf.value is not None else 0.0
        for node in path:
            self.tree.update(node, visits=node.visits + 1, total_value=node.total_value + value)
            self._see(node.total_value / node.visits)
        return bool(self._unexpanded) or self.won is not None  # A finished tree has nothing left to learn.

    async def _operator_step(self) -> bool:
        path = [self.tree.root]
        while True:
            tried = [self.tree[c] for c in path[-1].children if self.tree[c].visits]
            if not tried:
                break
            path.append(max(tried, key=self._scorer(path[-1])))
        leaf = path[-1]
        chains = await gather_all(*(self._candidate(leaf) for _ in range(max(1, self.nodes_left(self.num_children)))))
        for chain in chains:
            if chain and not chain[-1].buggy:
                value = chain[-1].value if chain[-1].value is not None else 0.0
                for node in path + chain:
                    self.tree.update(node, visits=node.visits + 1, total_value=node.total_value + value)
                    self._see(node.total_value / node.visits)
        return any(chains)

    async def _candidate(self, leaf: Node) -> list[Node]:
        """A new candidate from `leaf` and its debugs: the chain of nodes made (empty: nothing to offer)."""
        first = await (self.operators.draft(self) if leaf.id == self.tree.root.id else self.operators.improve(self, leaf))
        chain = [first] if first is not None else []
        while chain and chain[-1].buggy and len(chain) <= self.max_debug_depth and self.nodes_left(1):
            fixed = await self.operators.debug(self, chain[-1])
            if fixed is None:
                break
            chain.append(fixed)
        return chain

    async def _set_priors(self, node: Node) -> None:
        """The paper's prior query: scores for the listed children, missing ones 1/len(children), normalised."""
        listed = self.listed_children(node)
        scores = await self.ask(self.problem.priors(self.tree.path_states(node), self._states(listed))) \
            if listed else {}
        n = len(node.children)
        raw = [float(scores.get(i, 1.0 / n)) for i in range(n)]
        total = sum(raw)
        priors = [p / total for p in raw] if total > 0 else [1.0 / n] * n
        self.tree.update(node, meta={**node.meta, "priors": priors})
        for child_id, prior in zip(node.children, priors):
            self.tree.update(self.tree[child_id], prior=prior)

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

    def _scorer(self, parent: Node):
        """The selection score of `parent`'s children."""
        if self.selection == "puct":
            child_visits = sum(self.tree[c].visits for c in parent.children)
            c_param = math.log((child_visits + 19652 + 1) / 19652) + self.c
            explore = c_param * math.sqrt(parent.depth * parent.visits + 1)
            uniform = 1.0 / len(parent.children)

            def puct(child: Node) -> float:
                prior = child.prior if child.prior is not None else uniform
                return child.total_value / (child.visits + 1) + explore * prior / (1 + child.visits)

            return puct
        span = self.high - self.low
        log_n = math.log(max(parent.visits, 1) + 1)

        def uct(child: Node) -> float:
            q = child.total_value / child.visits if child.visits else (child.value or 0.0)
            norm_q = (q - self.low) / span if span > 0 else q
            return norm_q + self.c * math.sqrt(log_n / max(child.visits, 1)) + (1e-3 if not child.visits else 0.0)

        return uct
