"""The interface between search policies and the problems they search.

A policy sees states only through `Problem`: propose children (`expand`), score
them (`evaluate`, values in [0, 1], higher is better), recognise ends
(`is_terminal`, `is_solution`) and, for the LLM-driven policies, the model's
decisions (`priors`, `should_explore`). Puzzles implement it over legal moves
and a scorer (a heuristic or an LLM); research tasks later implement it over
LLM-written programs.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any


class Problem(abc.ABC):
    """A search problem. Every model query is async, so policies can overlap them."""

    @abc.abstractmethod
    def root(self) -> Any:
        """The initial state."""

    @abc.abstractmethod
    async def expand(self, state: Any) -> list[Any]:
        """Proposes the children of `state` (legal successors, or model proposals)."""

    @abc.abstractmethod
    async def evaluate(self, parent: Any | None, states: Sequence[Any]) -> list[float]:
        """Values in [0, 1] of `states` (children of `parent`; None for unrelated states)."""

    @abc.abstractmethod
    def is_terminal(self, state: Any) -> bool:
        """No further moves from `state`."""

    @abc.abstractmethod
    def is_solution(self, state: Any) -> bool:
        """`state` solves the problem."""

    async def priors(self, state: Any, children: Sequence[Any]) -> list[float]:
        """A probability for each child (PUCT); uniform unless the problem knows better."""
        return [1.0 / len(children)] * len(children) if children else []

    async def should_explore(self, path: Sequence[Any], frontier_best: Any) -> bool:
        """LLM-First Search's decision: leave the current path for the best frontier state?"""
        del path, frontier_best
        return False

    def key(self, state: Any) -> Any:
        """A JSON-able identity of `state` (to dedupe children after a resume)."""
        return self.encode(state)

    def encode(self, state: Any) -> Any:
        """`state` as JSON (for the journal)."""
        return state

    def decode(self, data: Any) -> Any:
        return data

    def tokens_used(self) -> int:
        """Model tokens spent on this problem so far (0 for heuristic scorers)."""
        return 0
