"""The interface between search policies and the problems they search.

A policy sees states only through `Problem`: propose children (`expand`),
recognise ends (`is_terminal`, `is_solution`) and ask the scorer (a model, or a
labelled stand-in) four questions, as in the LLM-First Search paper:

- `child_values`: values in [0, 1] of some children of a node (one query);
- `value`: the value in [0, 1] of one node;
- `should_explore`: LLM-First Search's decision to leave the current path;
- `priors`: a distribution over a node's children (MCTS with PUCT).

Each question gets the root-to-node `path` of states (read lazily: the last
state costs O(1)) and `children`, the node's listed children as {index among
its siblings: state}. Answers are keyed the same way; a child the scorer leaves
out stays unvalued (None), as in the paper. Puzzles implement this over legal
moves; research tasks later implement it over LLM-written programs.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

Children = Mapping[int, Any]


class Problem(abc.ABC):
    """A search problem. Every scorer query is async, so games and policies can overlap them."""

    @abc.abstractmethod
    def root(self) -> Any:
        """The initial state."""

    @abc.abstractmethod
    async def expand(self, state: Any) -> list[Any]:
        """The children of `state`, in a fixed order (legal successors, or model proposals)."""

    @abc.abstractmethod
    def is_terminal(self, state: Any) -> bool:
        """No further moves from `state`."""

    @abc.abstractmethod
    def is_solution(self, state: Any) -> bool:
        """`state` solves the problem."""

    @abc.abstractmethod
    async def child_values(self, path: Sequence[Any], children: Children) -> dict[int, float]:
        """Values in [0, 1] of the listed children of `path[-1]`; keys it omits stay unvalued."""

    async def value(self, path: Sequence[Any], children: Children) -> float | None:
        """The value in [0, 1] of `path[-1]` (None: no usable answer). Default: its best child's value."""
        values = await self.child_values(path, children)
        return max(values.values(), default=None)

    async def should_explore(self, path: Sequence[Any], children: Children) -> bool:
        """LLM-First Search: leave `path[-1]` for the most promising unexplored state elsewhere?"""
        del path, children
        return False

    async def priors(self, path: Sequence[Any], children: Children) -> dict[int, float]:
        """Non-negative scores for the listed children (normalised by the caller; missing: uniform)."""
        del path, children
        return {}

    def encode(self, state: Any) -> Any:
        """`state` as JSON (for the journal)."""
        return state

    def decode(self, data: Any) -> Any:
        return data

    def tokens_used(self) -> int:
        """Scorer tokens spent on this problem so far (estimated ones for a stand-in scorer)."""
        return 0

    def restore_tokens(self, tokens: int) -> None:
        """Tokens an earlier session of this search spent (read back from its journal after a kill)."""
        del tokens
