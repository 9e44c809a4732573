"""Countdown and Sudoku as search problems, scored by a heuristic or by a model.

`PuzzleProblem` implements `libs.search.problem.Problem` over a game's legal
moves. Values, priors and the explore decision come from one of two scorers:

- "heuristic": the puzzle's own heuristic (reachable-value distance for
  Countdown, constraint propagation for Sudoku) and a rule-based explore
  decision. This is an offline STAND-IN for a model, labelled as such in every
  result it produces.
- "llm": `ModelQueries` through the LLM gateway.

States reached by a legal move that end the game are valued without asking
anyone: 1 for a solution, 0 for a dead end.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from libs.agents.model_queries import ModelQueries
from libs.envs import countdown, sudoku
from libs.search.problem import Problem

HEURISTIC_LABEL = "heuristic (offline stand-in for an LLM)"

COUNTDOWN_RULES = (
    "You are playing Countdown. Combine the given numbers with +, -, * and / to reach the target exactly. "
    "Each step takes two of the remaining numbers and replaces them with the result; subtraction must not go "
    "below zero and division must be exact. The game is won when the last remaining number equals the target."
)
SUDOKU_RULES = (
    "You are solving a Sudoku. Fill empty cells (shown as .) so that every row, column and box holds each "
    "value exactly once. Each step places one value in one empty cell."
)


class CountdownGame:
    name = "countdown"
    rules = COUNTDOWN_RULES

    def __init__(self, instance: countdown.CountdownInstance):
        instance.validate()
        self.instance = instance

    def root(self):
        return countdown.initial_state(self.instance)

    def successors(self, state) -> list:
        return [countdown.apply(state, m) for m in countdown.legal_moves(state)]

    def is_terminal(self, state) -> bool:
        return countdown.is_terminal(state)

    def is_solution(self, state) -> bool:
        return countdown.is_win(state, self.instance.target)

    def heuristic(self, state) -> float:
        return countdown.heuristic_value(state, self.instance.target)

    def describe(self, state) -> str:
        return countdown.describe_state(state, self.instance.target)

    def describe_step(self, parent, child) -> str:
        a, op, b, result = child.steps[-1]
        return f"{a} {op} {b} = {result}, leaving {list(child.numbers)}"

    def encode(self, state) -> Any:
        return {"numbers": list(state.numbers), "steps": [list(s) for s in state.steps]}

    def decode(self, data: Any):
        return countdown.CountdownState(tuple(data["numbers"]), tuple(tuple(s) for s in data["steps"]))

    def key(self, state) -> Any:
        return list(state.numbers)


class SudokuGame:
    name = "sudoku"
    rules = SUDOKU_RULES

    def __init__(self, instance: sudoku.SudokuInstance):
        instance.validate()
        self.instance = instance

    def root(self):
        return sudoku.initial_state(self.instance)

    def successors(self, state) -> list:
        return [sudoku.apply(state, m) for m in sudoku.legal_moves(state)]

    def is_terminal(self, state) -> bool:
        return sudoku.is_terminal(state)

    def is_solution(self, state) -> bool:
        return sudoku.is_solved(state)

    def heuristic(self, state) -> float:
        return sudoku.heuristic_value(state)

    def describe(self, state) -> str:
        return sudoku.describe_state(state)

    def describe_step(self, parent, child) -> str:
        index = next(i for i, (a, b) in enumerate(zip(parent.cells, child.cells)) if a != b)
        row, col = divmod(index, child.size)
        return sudoku.describe_move((row, col, child.cells[index]))

    def encode(self, state) -> Any:
        return list(state.cells)

    def decode(self, data: Any):
        i = self.instance
        return sudoku.SudokuState(i.size, i.box_rows, i.box_cols, tuple(data))

    def key(self, state) -> Any:
        return list(state.cells)


class PuzzleProblem(Problem):
    """One puzzle instance for the search policies."""

    def __init__(self, game: CountdownGame | SudokuGame, scorer: str = "heuristic",
                 queries: ModelQueries | None = None, explore_margin: float = 0.2, prior_temperature: float = 0.1):
        if scorer not in ("heuristic", "llm"):
            raise ValueError(f"scorer={scorer!r}: expected 'heuristic' or 'llm'")
        if scorer == "llm" and queries is None:
            raise ValueError("scorer='llm' needs ModelQueries")
        self.game, self.scorer, self.queries, self.explore_margin = game, scorer, queries, explore_margin
        self.prior_temperature = prior_temperature

    def root(self):
        return self.game.root()

    async def expand(self, state) -> list:
        return self.game.successors(state)

    def is_terminal(self, state) -> bool:
        return self.game.is_terminal(state)

    def is_solution(self, state) -> bool:
        return self.game.is_solution(state)

    def encode(self, state) -> Any:
        return self.game.encode(state)

    def decode(self, data: Any):
        return self.game.decode(data)

    def key(self, state) -> Any:
        return self.game.key(state)

    def tokens_used(self) -> int:
        return self.queries.stats.tokens if self.queries else 0

    def _known_value(self, state) -> float | None:
        if self.game.is_solution(state):
            return 1.0
        return 0.0 if self.game.is_terminal(state) else None

    async def evaluate(self, parent, states: Sequence) -> list[float]:
        values = [self._known_value(s) for s in states]
        open_ids = [i for i, v in enumerate(values) if v is None]
        if not open_ids:
            return values
        if self.scorer == "heuristic":
            scores = [self.game.heuristic(states[i]) for i in open_ids]
        elif parent is not None:  # One query scores all siblings at once, as in the paper.
            context = f"{self.game.rules}\n\nCurrent state:\n{self.game.describe(parent)}"
            steps = [self.game.describe_step(parent, states[i]) for i in open_ids]
            scores = await self.queries.child_values(context, steps)
        else:  # Unrelated states: one value query each, concurrently.
            scores = await asyncio.gather(*(self.queries.value(
                f"{self.game.rules}\n\nState:\n{self.game.describe(states[i])}") for i in open_ids))
        for i, score in zip(open_ids, scores):
            values[i] = float(score)
        return values

    async def priors(self, state, children: Sequence) -> list[float]:
        if not children:
            return []
        if self.scorer == "heuristic":  # Stand-in: a softmax over the children's heuristic values.
            weights = [math.exp(self.game.heuristic(c) / self.prior_temperature) for c in children]
            return [w / sum(weights) for w in weights]
        context = f"{self.game.rules}\n\nCurrent state:\n{self.game.describe(state)}"
        return await self.queries.priors(context, [self.game.describe_step(state, c) for c in children])

    async def should_explore(self, path: Sequence, frontier_best) -> bool:
        if self.scorer == "heuristic":
            # Rule-based stand-in for the model's decision: leave a hopeless path, or one the best
            # frontier state beats by a clear margin.
            here, there = self.game.heuristic(path[-1]), self.game.heuristic(frontier_best)
            return here == 0.0 or there > here + self.explore_margin
        steps = [self.game.describe_step(a, b) for a, b in zip(path, path[1:])]
        context = (f"{self.game.rules}\n\nCurrent state:\n{self.game.describe(path[-1])}\n"
                   f"Steps on the current path: {'; '.join(steps) or 'none'}")
        return await self.queries.explore(context)
