"""2x2 matrix games for the LLM strategic-bias study ("Are LLMs Strategic Decision Makers?", Herr et al. 2024).

An LLM plays the ROW ("acting") player of a one-shot 2x2 game against a COLUMN ("fellow") player. Each player is
prompted with a preferred behaviour from PREFERENCES: "self" (maximise own payoff) or "common" (maximise the sum of
both payoffs). The correct action is the one consistent with both players' preferences. The study does not publish
its exact rule; this project's reading is:

1. The fellow's predicted action. The fellow reasons as if both players shared ITS preference: both utilities are
   transformed by that preference (self: each player's own payoff; common: row + column payoff for both). Among the
   pure Nash equilibria of that game (found with nashpy) we select, for "common", the one with the largest sum of
   utilities (ties: first); for "self", the unique one or, with several, the risk-dominant one (Harsanyi-Selten:
   larger product of deviation losses; ties: the payoff-dominant one, then the first). With no pure equilibrium the
   fellow plays its more probable action in the mixed equilibrium (ties: action 0). Its column action is the
   prediction.
2. The acting player's correct action is its best response to that prediction under its own preference (self: row
   payoff; common: sum). A tie means no single correct action: `None` (callers exclude such configurations).

For the bundled variants this gives (acting/fellow preference -> correct action):
  prisoners_dilemma classic:     self/* -> defect, common/* -> cooperate
  prisoners_dilemma costly_help: as classic, except common/self -> defect
  stag_hunt risky:               */common -> stag, */self -> hare (the fellow's behaviour decides)
  stag_hunt safe:                stag in all four combinations
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import warnings
from collections.abc import Sequence
from typing import Any

import nashpy
import numpy as np

from libs.train.errors import ConfigError, UserError

ACTIONS = (0, 1)
PREFERENCES = ("self", "common")
CELLS = tuple(itertools.product(ACTIONS, ACTIONS))
_ROUND_DIGITS = 9  # Equilibrium probabilities are rounded to 1e-9.

Matrix = tuple[tuple[float, float], tuple[float, float]]
Cell = tuple[int, int]


def _is_tie(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def _check_preference(preference: str) -> None:
    if preference not in PREFERENCES:
        raise ConfigError(f"unknown preference {preference!r}; known: {', '.join(PREFERENCES)}")


def _equilibria(A: np.ndarray, B: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """All equilibria nashpy's support enumeration finds (its degenerate-game warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return list(nashpy.Game(A, B).support_enumeration())


def _pure_equilibria(A: np.ndarray, B: np.ndarray) -> list[Cell]:
    """The one-hot equilibria as (row action, column action) cells, sorted."""
    cells = set()
    for row_strategy, column_strategy in _equilibria(A, B):
        if np.isclose(row_strategy.max(), 1.0) and np.isclose(column_strategy.max(), 1.0):
            cells.add((int(row_strategy.argmax()), int(column_strategy.argmax())))
    return sorted(cells)


def _deviation_loss_product(A: np.ndarray, B: np.ndarray, cell: Cell) -> float:
    """Row's loss from switching action times column's loss from switching, at `cell`."""
    i, j = cell
    return float((A[i, j] - A[1 - i, j]) * (B[i, j] - B[i, 1 - j]))


def _risk_dominant(A: np.ndarray, B: np.ndarray, equilibria: list[Cell]) -> Cell:
    """Harsanyi-Selten risk dominance between pure equilibria (pairwise, in sorted order, for degenerate games)."""
    champion = equilibria[0]
    for challenger in equilibria[1:]:
        loss_champion = _deviation_loss_product(A, B, champion)
        loss_challenger = _deviation_loss_product(A, B, challenger)
        if not _is_tie(loss_champion, loss_challenger):
            champion = champion if loss_champion > loss_challenger else challenger
        elif _pareto_dominates(A, B, challenger, champion):
            champion = challenger
        elif not _pareto_dominates(A, B, champion, challenger):
            champion = min(champion, challenger)
    return champion


def _pareto_dominates(A: np.ndarray, B: np.ndarray, better: Cell, worse: Cell) -> bool:
    at_least = A[better] >= A[worse] and B[better] >= B[worse]
    return bool(at_least and (A[better] > A[worse] or B[better] > B[worse]))


@dataclasses.dataclass(frozen=True)
class MatrixGame:
    """A two-player, two-action game; `row[i][j]` / `column[i][j]` are the payoffs when row plays i, column j."""

    name: str
    variant: str
    actions: tuple[str, str]
    row: Matrix
    column: Matrix
    cooperative_action: int = 0

    def __post_init__(self):
        if len(self.actions) != 2:
            raise ValueError(f"a 2x2 game needs 2 actions, got {self.actions!r}")
        for matrix in (self.row, self.column):
            if len(matrix) != 2 or any(len(line) != 2 for line in matrix):
                raise ValueError(f"payoff matrices must be 2x2, got {matrix!r}")
        if self.cooperative_action not in ACTIONS:
            raise ValueError(f"cooperative_action must be 0 or 1, got {self.cooperative_action!r}")
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "row", tuple(tuple(float(x) for x in line) for line in self.row))
        object.__setattr__(self, "column", tuple(tuple(float(x) for x in line) for line in self.column))

    def payoffs(self, i: int, j: int) -> tuple[float, float]:
        """(row payoff, column payoff) when row plays i and column plays j."""
        return self.row[i][j], self.column[i][j]

    def _matrices(self, preference: str = "self") -> tuple[np.ndarray, np.ndarray]:
        """Both players' utilities when both hold `preference`."""
        _check_preference(preference)
        A, B = np.array(self.row), np.array(self.column)
        return (A, B) if preference == "self" else (A + B, A + B)

    def pure_equilibria(self) -> list[Cell]:
        """Pure Nash equilibria (via nashpy), sorted."""
        return _pure_equilibria(*self._matrices())

    def mixed_equilibria(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Every equilibrium nashpy finds (pure ones included) as (row strategy, column strategy), rounded, sorted."""
        found = set()
        for strategies in _equilibria(*self._matrices()):
            found.add(tuple(tuple(round(float(p), _ROUND_DIGITS) + 0.0 for p in s) for s in strategies))
        return sorted(found)

    def pareto_optimal(self) -> list[Cell]:
        """Cells no other cell Pareto-dominates, sorted."""
        A, B = self._matrices()
        return [cell for cell in CELLS if not any(_pareto_dominates(A, B, other, cell) for other in CELLS)]

    def max_self_gain_cell(self) -> Cell:
        """The cell with the largest row payoff (ties: largest sum, then first)."""
        return min(CELLS, key=lambda c: (-self.row[c[0]][c[1]], -sum(self.payoffs(*c)), c))

    def max_common_gain_cell(self) -> Cell:
        """The cell with the largest payoff sum (ties: largest row payoff, then first)."""
        return min(CELLS, key=lambda c: (-sum(self.payoffs(*c)), -self.row[c[0]][c[1]], c))

    def predicted_fellow_action(self, fellow: str) -> int:
        """The column player's action when it assumes both players share its preference (rule 1)."""
        A, B = self._matrices(fellow)
        pure = _pure_equilibria(A, B)
        if pure:
            if fellow == "common":
                chosen = min(pure, key=lambda c: (-(A[c] + B[c]), c))
            else:
                chosen = _risk_dominant(A, B, pure)
            return chosen[1]
        _, column_strategy = _equilibria(A, B)[0]
        return 0 if column_strategy[0] >= column_strategy[1] or _is_tie(*column_strategy) else 1

    def correct_action(self, acting: str, fellow: str) -> int | None:
        """The row player's best response to the predicted fellow action under its own preference (rule 2)."""
        A, _ = self._matrices(acting)
        j = self.predicted_fellow_action(fellow)
        if _is_tie(A[0, j], A[1, j]):
            return None
        return int(A[1, j] > A[0, j])


def symmetric(
    name: str, variant: str, actions: Sequence[str], R: float, S: float, T: float, P: float,
    cooperative_action: int = 0,
) -> MatrixGame:
    """A symmetric game from reward R, sucker S, temptation T and punishment P (action 0 is the first action)."""
    row = ((R, S), (T, P))
    column = ((R, T), (S, P))  # The row matrix transposed.
    return MatrixGame(name, variant, tuple(actions), row, column, cooperative_action)


_PD = ("cooperate", "defect")
_SH = ("stag", "hare")
GAMES: dict[str, dict[str, MatrixGame]] = {
    "prisoners_dilemma": {
        "classic": symmetric("prisoners_dilemma", "classic", _PD, R=3, S=0, T=5, P=1),
        "costly_help": symmetric("prisoners_dilemma", "costly_help", _PD, R=4, S=0, T=5, P=3),
    },
    "stag_hunt": {
        "risky": symmetric("stag_hunt", "risky", _SH, R=10, S=0, T=8, P=5),
        "safe": symmetric("stag_hunt", "safe", _SH, R=10, S=0, T=3, P=2),
    },
}

_REQUIRED_FIELDS = {"name", "actions"}
_OPTIONAL_FIELDS = {"variant", "row", "column", "symmetric", "cooperative_action"}


def _number(value: Any, path: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{path}: field '{field}' must be a finite number, got {value!r}")
    return float(value)


def _matrix(value: Any, path: str, field: str) -> Matrix:
    if not isinstance(value, list) or len(value) != 2 or any(not isinstance(x, list) or len(x) != 2 for x in value):
        raise UserError(f"{path}: field '{field}' must be a 2x2 list of numbers, got {value!r}")
    return tuple(
        tuple(_number(x, path, f"{field}[{i}][{j}]") for j, x in enumerate(line)) for i, line in enumerate(value)
    )


def _text(value: Any, path: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{path}: field '{field}' must be a non-empty string, got {value!r}")
    return value


def load_game(path: str) -> MatrixGame:
    """A user-supplied 2x2 game from a JSON file: {"name", "variant" (optional, default "custom"), "actions": [a, b],
    "row": [[..],[..]], "column": [[..],[..]]} (or "symmetric": {"R","S","T","P"} instead of row/column).
    Anything malformed -> UserError naming the file and the field."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except OSError as e:
        raise UserError(f"{path}: cannot read game file ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(spec).__name__}")
    missing = sorted(_REQUIRED_FIELDS - spec.keys())
    if missing:
        raise UserError(f"{path}: missing field(s) {', '.join(map(repr, missing))}")
    unknown = sorted(spec.keys() - _REQUIRED_FIELDS - _OPTIONAL_FIELDS)
    if unknown:
        raise UserError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}")
    name = _text(spec["name"], path, "name")
    variant = _text(spec.get("variant", "custom"), path, "variant")
    actions = spec["actions"]
    if not isinstance(actions, list) or len(actions) != 2:
        raise UserError(f"{path}: field 'actions' must list exactly 2 actions, got {actions!r}")
    actions = tuple(_text(a, path, f"actions[{k}]") for k, a in enumerate(actions))
    if actions[0] == actions[1]:
        raise UserError(f"{path}: field 'actions' must name 2 different actions, got {list(actions)!r}")
    cooperative_action = spec.get("cooperative_action", 0)
    if isinstance(cooperative_action, bool) or cooperative_action not in ACTIONS:
        raise UserError(f"{path}: field 'cooperative_action' must be 0 or 1, got {cooperative_action!r}")

    has_matrices = "row" in spec or "column" in spec
    if "symmetric" in spec:
        if has_matrices:
            raise UserError(f"{path}: field 'symmetric' cannot be combined with 'row'/'column'")
        payoffs = spec["symmetric"]
        if not isinstance(payoffs, dict) or set(payoffs) != {"R", "S", "T", "P"}:
            raise UserError(f"{path}: field 'symmetric' must be an object with exactly R, S, T and P, got {payoffs!r}")
        values = {k: _number(v, path, f"symmetric.{k}") for k, v in payoffs.items()}
        return symmetric(name, variant, actions, cooperative_action=cooperative_action, **values)
    for field in ("row", "column"):
        if field not in spec:
            raise UserError(f"{path}: missing field '{field}' (or give 'symmetric' instead of row/column)")
    row, column = _matrix(spec["row"], path, "row"), _matrix(spec["column"], path, "column")
    return MatrixGame(name, variant, actions, row, column, cooperative_action)


def all_games(names: Sequence[str], files: Sequence[str] = ()) -> list[MatrixGame]:
    """GAMES[name] variants for each name (unknown name -> libs.train.errors.ConfigError listing the known ones),
    then the games of `files`."""
    games = []
    for name in names:
        if name not in GAMES:
            raise ConfigError(f"unknown matrix game {name!r}; known: {', '.join(GAMES)}")
        games.extend(GAMES[name].values())
    return games + [load_game(path) for path in files]
