"""Countdown and Sudoku as search problems, scored by a model or by a labelled stand-in.

A game adapter (`CountdownGame`, `SudokuGame`) knows the rules and renders the paper's prompts for a
node: Countdown shows the whole state/action sequence from the root, Sudoku the current board, each
with the node's listed moves as {index among siblings: move}. `PuzzleProblem` implements
`libs.search.problem.Problem` over an adapter and a scorer: `ModelScorer` (an LLM through the
gateway) or `StandInScorer` (the puzzle's heuristic with calibrated noise; never a model, and
labelled so in every result).

As in the paper, the scorer also values children that end the game. `known_terminal_values=True`
values them without asking instead (1 for a solution, 0 for a dead end), this codebase's earlier rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from libs.agents import prompts
from libs.envs import countdown, sudoku
from libs.search.problem import Problem


class CountdownGame:
    name = "countdown"

    def __init__(self, instance: countdown.CountdownInstance, merge_equivalent: bool = False):
        instance.validate()
        self.instance, self.merge_equivalent = instance, merge_equivalent

    def root(self):
        return countdown.initial_state(self.instance)

    def successors(self, state) -> list:
        moves = countdown.legal_moves(state, merge_equivalent=self.merge_equivalent)
        return [countdown.apply(state, m) for m in moves]

    def is_terminal(self, state) -> bool:
        return countdown.is_terminal(state)

    def is_solution(self, state) -> bool:
        return countdown.is_win(state, self.instance.target)

    def heuristic(self, state) -> float:
        return countdown.heuristic_value(state, self.instance.target)

    @staticmethod
    def _operation(step) -> str:
        return prompts.countdown_operation(*step)

    def prompt(self, kind: str, path: Sequence, children: Mapping[int, Any]) -> prompts.Prompt:
        states = [prompts.countdown_state_text(self.instance.target, s.numbers, [self._operation(t) for t in s.steps])
                  for s in path]
        actions = [self._operation(s.steps[-1]) for s in list(path)[1:]]
        listed = {i: self._operation(child.steps[-1]) for i, child in children.items()}
        return prompts.countdown_prompt(kind, prompts.countdown_sequence_text(states, actions), listed)

    def encode(self, state) -> Any:
        return {"numbers": list(state.numbers), "steps": [list(s) for s in state.steps]}

    def decode(self, data: Any):
        return countdown.CountdownState(tuple(data["numbers"]), tuple(tuple(s) for s in data["steps"]))

    def key(self, state) -> Any:
        return list(state.key)


class SudokuGame:
    name = "sudoku"

    def __init__(self, instance: sudoku.SudokuInstance, strict_dead_ends: bool = False):
        instance.validate()
        self.instance, self.strict_dead_ends = instance, strict_dead_ends

    def root(self):
        return sudoku.initial_state(self.instance)

    def successors(self, state) -> list:
        return [sudoku.apply(state, m) for m in sudoku.legal_moves(state)]

    def is_terminal(self, state) -> bool:
        return sudoku.is_terminal(state, strict=self.strict_dead_ends)

    def is_solution(self, state) -> bool:
        return sudoku.is_solved(state)

    def heuristic(self, state) -> float:
        return sudoku.heuristic_value(state)

    def prompt(self, kind: str, path: Sequence, children: Mapping[int, Any]) -> prompts.Prompt:
        state = path[-1]
        listed = {}
        for i, child in children.items():
            cell = next(j for j, (a, b) in enumerate(zip(state.cells, child.cells)) if a != b)
            listed[i] = prompts.sudoku_move(cell // state.size, cell % state.size, child.cells[cell])
        board = prompts.sudoku_board_text(state.cells, state.size, state.box_rows, state.box_cols)
        return prompts.sudoku_prompt(kind, state.size, state.box_rows, state.box_cols, board, listed)

    def encode(self, state) -> Any:
        return list(state.cells)

    def decode(self, data: Any):
        i = self.instance
        return sudoku.SudokuState(i.size, i.box_rows, i.box_cols, tuple(data))

    def key(self, state) -> Any:
        return list(state.cells)


Game = CountdownGame | SudokuGame


class Scorer(Protocol):
    """Answers the four queries for one game (a model, or a labelled stand-in)."""

    label: str

    @property
    def tokens(self) -> int:
        """Tokens spent so far (estimated for a stand-in)."""

    async def answer(self, kind: str, game: Game, prompt: prompts.Prompt, path: Sequence,
                     children: Mapping[int, Any]) -> Any:
        """The answer to one query (`answers.parse_answer`'s types), or the query's fallback."""


class PuzzleProblem(Problem):
    """One puzzle instance for the search policies."""

    def __init__(self, game: Game, scorer: Scorer, known_terminal_values: bool = False):
        self.game, self.scorer, self.known_terminal_values = game, scorer, known_terminal_values
        self.earlier_tokens = 0  # spent by earlier sessions of this game (before a kill)

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

    def tokens_used(self) -> int:
        return self.earlier_tokens + self.scorer.tokens

    def restore_tokens(self, tokens: int) -> None:
        self.earlier_tokens = int(tokens) - self.scorer.tokens

    async def _ask(self, kind: str, path: Sequence, children: Mapping[int, Any]) -> Any:
        return await self.scorer.answer(kind, self.game, self.game.prompt(kind, path, children), path, children)

    async def child_values(self, path: Sequence, children: Mapping[int, Any]) -> dict[int, float]:
        known = {}
        if self.known_terminal_values:
            known = {i: float(self.game.is_solution(s)) for i, s in children.items() if self.game.is_terminal(s)}
        rest = {i: s for i, s in children.items() if i not in known}
        return {**known, **(await self._ask("child_values", path, rest) if rest else {})}

    async def value(self, path: Sequence, children: Mapping[int, Any]) -> float | None:
        return await self._ask("value", path, children)

    async def should_explore(self, path: Sequence, children: Mapping[int, Any]) -> bool:
        return await self._ask("explore", path, children)

    async def priors(self, path: Sequence, children: Mapping[int, Any]) -> dict[int, float]:
        return await self._ask("priors", path, children)
