"""Sudoku puzzles (LLM-First Search, arXiv 2506.05213) on 4x4, 6x6 and 9x9 boards.

Cells are stored row-major with 0 for empty. Moves are (row, col, value) tuples with 0-based row and
col, as in the paper's prompts. Candidate sets are bitmasks: bit v set means value v is allowed.

A 6x6 board has boxes of 3 rows x 2 columns by default, as in the paper (py-sudoku's width=2,
height=3); 2 rows x 3 columns is also supported. A state is a dead end, as in the paper, only when
no empty cell has a candidate left; `is_terminal(..., strict=True)` also ends a board on which any
single empty cell has none (this codebase's earlier, stricter rule).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

Move = tuple[int, int, int]  # (row, col, value), row and col 0-based.
Shape = tuple[int, int, int]  # (size, box_rows, box_cols)

BOX_SHAPES = {4: (2, 2), 6: (3, 2), 9: (3, 3)}  # size -> default (box_rows, box_cols), the paper's
ALLOWED_BOX_SHAPES = {4: ((2, 2),), 6: ((3, 2), (2, 3)), 9: ((3, 3),)}
DIFFICULTIES = {"easy": 0.3, "medium": 0.5, "hard": 0.7, "expert": 0.9}  # Fraction of cells removed.


@dataclass(frozen=True)
class SudokuState:
    """A board: size, box shape and cells (row-major, 0 = empty); hashable."""

    size: int
    box_rows: int
    box_cols: int
    cells: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "cells", tuple(self.cells))

    @property
    def shape(self) -> Shape:
        return self.size, self.box_rows, self.box_cols


@dataclass(frozen=True)
class SudokuInstance(SudokuState):
    """A puzzle: the givens. Never equal to a SudokuState with the same cells."""

    @property
    def empty_fraction(self) -> float:
        """Fraction of empty cells (what `generate` achieved for the requested difficulty)."""
        return self.cells.count(0) / len(self.cells) if self.cells else 0.0

    def validate(self, check_unique: bool = False) -> None:
        """Raises ValueError for a malformed board, conflicting givens, or (optionally) not one solution."""
        _validate_board(self.shape, self.cells)
        if check_unique:
            found = count_solutions(self, limit=2)
            if found != 1:
                raise ValueError("instance has no solution" if found == 0 else "instance has multiple solutions")


def _validate_board(shape: Shape, cells: tuple[int, ...]) -> None:
    size, box_rows, box_cols = shape
    if size not in BOX_SHAPES:
        raise ValueError(f"size must be one of {sorted(BOX_SHAPES)}, got {size}")
    if (box_rows, box_cols) not in ALLOWED_BOX_SHAPES[size]:
        allowed = " or ".join(f"{r} rows x {c} cols" for r, c in ALLOWED_BOX_SHAPES[size])
        raise ValueError(f"a {size}x{size} board needs boxes of {allowed}, got {box_rows} x {box_cols}")
    if len(cells) != size * size:
        raise ValueError(f"cells must have {size * size} entries for a {size}x{size} board, got {len(cells)}")
    for index, value in enumerate(cells):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= size:
            raise ValueError(f"cell (row {index // size}, col {index % size}) has value {value!r}; "
                             f"expected an integer in 0..{size}")
    for kind, units in zip(("row", "col", "box"), _units(shape)):
        for unit_index, unit in enumerate(units):
            seen: dict[int, int] = {}
            for index in unit:
                value = cells[index]
                if value in seen:
                    first = seen[value]
                    raise ValueError(f"conflicting givens: value {value} appears twice in {kind} {unit_index}, "
                                     f"at (row {first // size}, col {first % size}) and "
                                     f"(row {index // size}, col {index % size})")
                if value:
                    seen[value] = index


@functools.lru_cache(maxsize=None)
def _units(shape: Shape) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """(rows, cols, boxes), each a tuple of units, each unit a tuple of cell indices."""
    size, box_rows, box_cols = shape
    rows = tuple(tuple(r * size + c for c in range(size)) for r in range(size))
    cols = tuple(tuple(r * size + c for r in range(size)) for c in range(size))
    boxes = tuple(tuple((br + r) * size + bc + c for r in range(box_rows) for c in range(box_cols))
                  for br in range(0, size, box_rows) for bc in range(0, size, box_cols))
    return rows, cols, boxes


@functools.lru_cache(maxsize=None)
def _layout(shape: Shape) -> tuple[tuple[tuple[int, int, int], ...], tuple[tuple[int, ...], ...], int]:
    """Per cell the ids of its row, column and box (in 0..3*size-1); per cell its peers; the all-values mask."""
    size = shape[0]
    ids = [[0, 0, 0] for _ in range(size * size)]
    peers = [set() for _ in range(size * size)]
    for kind, units in enumerate(_units(shape)):
        for unit_index, unit in enumerate(units):
            for index in unit:
                ids[index][kind] = kind * size + unit_index
                peers[index].update(set(unit) - {index})
    return tuple(tuple(i) for i in ids), tuple(tuple(sorted(p)) for p in peers), ((1 << size) - 1) << 1


def _unit_masks(cells, shape: Shape) -> list[int]:
    """Bitmask of the values present in each row, column and box (ids as in `_layout`)."""
    unit_ids, used = _layout(shape)[0], [0] * (3 * shape[0])
    for index, value in enumerate(cells):
        if value:
            for unit in unit_ids[index]:
                used[unit] |= 1 << value
    return used


def _candidates(cells, shape: Shape) -> list[int]:
    """Candidate bitmask per cell (0 for filled cells)."""
    (unit_ids, _, full), used = _layout(shape), _unit_masks(cells, shape)
    return [0 if value else full & ~(used[r] | used[c] | used[b]) for value, (r, c, b) in zip(cells, unit_ids)]


def _values(mask: int) -> list[int]:
    return [v for v in range(1, mask.bit_length()) if mask >> v & 1]


def initial_state(instance: SudokuInstance) -> SudokuState:
    instance.validate()
    return SudokuState(*instance.shape, instance.cells)


def legal_moves(state: SudokuState) -> list[Move]:
    """Valid placements in empty cells: cells row-major, values ascending (the paper's order)."""
    size = state.size
    masks = _candidates(state.cells, state.shape)
    return [(i // size, i % size, v) for i, value in enumerate(state.cells) if not value for v in _values(masks[i])]


def apply(state: SudokuState, move: Move) -> SudokuState:
    """The state after `move`; raises ValueError for a filled cell or a value that breaks a rule."""
    row, col, value = move
    size = state.size
    if not (0 <= row < size and 0 <= col < size and 1 <= value <= size):
        raise ValueError(f"move {move} is off the {size}x{size} board or its value is not in 1..{size}")
    index = row * size + col
    if state.cells[index]:
        raise ValueError(f"cell (row {row}, col {col}) is already filled with {state.cells[index]}")
    if any(state.cells[peer] == value for peer in _layout(state.shape)[1][index]):
        raise ValueError(f"value {value} at (row {row}, col {col}) conflicts with its row, column or box")
    cells = list(state.cells)
    cells[index] = value
    return SudokuState(*state.shape, tuple(cells))


def is_terminal(state: SudokuState, strict: bool = False) -> bool:
    """True when the board is full or no empty cell has a candidate left (the paper's rule).

    With `strict`, also when any one empty cell has no candidate (such a board can never be solved).
    """
    if all(state.cells):
        return True
    empty = [mask for mask, value in zip(_candidates(state.cells, state.shape), state.cells) if not value]
    return any(not mask for mask in empty) if strict else not any(empty)


def _has_repeat(cells, shape: Shape) -> bool:
    """True when some row, column or box holds a value twice: each filled cell adds a bit to 3 units."""
    return sum(mask.bit_count() for mask in _unit_masks(cells, shape)) != 3 * sum(1 for v in cells if v)


def is_solved(state: SudokuState) -> bool:
    """True when every cell is filled and no row, column or box repeats a value."""
    return all(state.cells) and not _has_repeat(state.cells, state.shape)


is_win = is_solved


def describe_move(move: Move) -> str:
    row, col, value = move
    return f"Place {value} at cell ({row}, {col})"


def describe_state(state: SudokuState) -> str:
    """The grid as text: '.' for empty, '|' and '-' between boxes, rows top to bottom."""
    size, box_rows, box_cols = state.shape
    separator = "-+-".join("-" * (2 * box_cols - 1) for _ in range(size // box_cols))
    lines = []
    for row in range(size):
        if row and row % box_rows == 0:
            lines.append(separator)
        values = [str(v) if v else "." for v in state.cells[row * size:(row + 1) * size]]
        lines.append(" | ".join(" ".join(values[c:c + box_cols]) for c in range(0, size, box_cols)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Solver, checker and generator.


def _search(cells: list[int], shape: Shape, limit: int, rng: random.Random | None = None) -> list[tuple[int, ...]]:
    """Up to `limit` solutions by backtracking on the empty cell with fewest candidates (MRV).

    With `rng`, candidate values are tried in random order (used to build random full boards).
    """
    (unit_ids, _, full), used = _layout(shape), _unit_masks(cells, shape)
    empty = [i for i, value in enumerate(cells) if not value]
    solutions: list[tuple[int, ...]] = []

    def recurse() -> None:
        best, best_mask, best_count = -1, 0, shape[0] + 1
        for index in empty:
            if not cells[index]:
                row, col, box = unit_ids[index]
                mask = full & ~(used[row] | used[col] | used[box])
                if mask.bit_count() < best_count:
                    best, best_mask, best_count = index, mask, mask.bit_count()
                    if best_count <= 1:
                        break
        if best < 0:
            solutions.append(tuple(cells))
            return
        values = _values(best_mask)
        if rng is not None:
            rng.shuffle(values)
        for value in values:
            cells[best] = value
            for unit in unit_ids[best]:
                used[unit] |= 1 << value
            recurse()
            for unit in unit_ids[best]:
                used[unit] &= ~(1 << value)
            cells[best] = 0
            if len(solutions) >= limit:
                return

    recurse()
    return solutions


def solve(instance: SudokuState, limit: int = 2) -> list[tuple[int, ...]]:
    """Up to `limit` solutions (each a row-major cells tuple); raises ValueError for a malformed board."""
    _validate_board(instance.shape, instance.cells)
    return _search(list(instance.cells), instance.shape, limit)


def count_solutions(instance: SudokuState, limit: int = 2) -> int:
    """Number of solutions, counting no further than `limit`."""
    return len(solve(instance, limit))


def check_solution(instance: SudokuInstance, cells) -> bool:
    """True iff `cells` is a full valid board that keeps every given of `instance`."""
    cells = tuple(cells)
    if len(cells) != len(instance.cells) or any(g and g != c for g, c in zip(instance.cells, cells)):
        return False
    if not all(isinstance(v, int) and 1 <= v <= instance.size for v in cells):
        return False
    return is_solved(SudokuState(*instance.shape, cells))


def _make_puzzle(shape: Shape, fraction: float, rng: random.Random) -> SudokuInstance:
    size = shape[0]
    cells = list(_search([0] * (size * size), shape, limit=1, rng=rng)[0])
    to_remove = int(fraction * size * size)  # Floor, as in the paper's generator.
    removed = 0
    for index in rng.sample(range(size * size), size * size):
        if removed >= to_remove:
            break
        value, cells[index] = cells[index], 0
        if len(_search(list(cells), shape, limit=2)) == 1:
            removed += 1
        else:
            cells[index] = value
    return SudokuInstance(*shape, tuple(cells))


def generate(size: int, difficulty: str, count: int, seed: int,
             box_shape: tuple[int, int] | None = None) -> list[SudokuInstance]:
    """`count` distinct uniquely solvable puzzles; same seed, same list.

    A random full board loses cells in random order, each removal kept only if the solution stays
    unique, until int(fraction * cells) are removed or one pass over the cells ends. Hard boards
    (e.g. 9x9 expert) can stop short; `SudokuInstance.empty_fraction` records what was achieved.
    `box_shape` (rows, cols) defaults to `BOX_SHAPES[size]`.
    """
    if size not in BOX_SHAPES:
        raise ValueError(f"size must be one of {sorted(BOX_SHAPES)}, got {size}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {list(DIFFICULTIES)}, got {difficulty!r}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    shape = (size, *(box_shape or BOX_SHAPES[size]))
    _validate_board(shape, (0,) * size * size)
    rng = random.Random(f"sudoku-{size}-{shape[1]}x{shape[2]}-{difficulty}-{seed}")
    instances: dict[tuple[int, ...], SudokuInstance] = {}  # Insertion-ordered, keyed for deduplication.
    for _ in range(20 * count + 100):
        if len(instances) == count:
            return list(instances.values())
        instance = _make_puzzle(shape, DIFFICULTIES[difficulty], rng)
        instances.setdefault(instance.cells, instance)
    if len(instances) == count:
        return list(instances.values())
    raise ValueError(f"found only {len(instances)} of {count} distinct {size}x{size} {difficulty} puzzles")


# ---------------------------------------------------------------------------------------------------------
# Heuristic value (the offline stand-in for an LLM's value estimate).


def _propagate(state: SudokuState) -> list[int] | None:
    """Naked and hidden singles to a fixpoint; the resulting cells, or None on a contradiction."""
    if _has_repeat(state.cells, state.shape):
        return None
    all_units = [unit for units in _units(state.shape) for unit in units]
    _, peers, full = _layout(state.shape)
    cells = list(state.cells)
    masks = _candidates(cells, state.shape)

    def place(index: int, value: int) -> bool:
        """Fills a cell and prunes its peers; False when that leaves a peer with no candidates."""
        if value < 1 or cells[index] or not masks[index] >> value & 1:
            return False
        cells[index], masks[index] = value, 0
        for peer in peers[index]:
            if not cells[peer]:
                masks[peer] &= ~(1 << value)
                if not masks[peer]:
                    return False
        return True

    changed = True
    while changed:
        changed = False
        for index in range(len(cells)):
            if not cells[index] and masks[index].bit_count() <= 1:
                if not place(index, masks[index].bit_length() - 1):
                    return None  # An empty cell with no candidates, or a placement that empties a peer.
                changed = True
        for unit in all_units:
            placed, places = 0, {}
            for index in unit:
                if cells[index]:
                    placed |= 1 << cells[index]
                else:
                    for value in _values(masks[index]):
                        places.setdefault(value, []).append(index)
            for value in _values(full & ~placed):
                if value not in places:
                    return None  # The unit has nowhere left for a missing value.
                if len(places[value]) == 1:
                    if not place(places[value][0], value):
                        return None
                    changed = True
                    break  # The unit's other places are stale now; the next sweep revisits it.
    return cells


def heuristic_value(state: SudokuState) -> float:
    """HEURISTIC value in [0, 1] (no LLM): the offline stand-in for an LLM's value estimate.

    Runs naked and hidden singles to a fixpoint: 0.0 on a contradiction, 1.0 if the board ends solved,
    else 0.2 + 0.7 * (fraction of cells filled after propagation).
    """
    cells = _propagate(state)
    if cells is None:
        return 0.0
    if all(cells):
        return 1.0 if is_solved(SudokuState(*state.shape, tuple(cells))) else 0.0
    return 0.2 + 0.7 * sum(1 for v in cells if v) / len(cells)


def heuristic_priors(state: SudokuState, moves: list[Move], temperature: float = 0.1) -> list[float]:
    """Softmax (at `temperature`) over the heuristic values of the children reached by `moves`."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    values = [heuristic_value(apply(state, move)) for move in moves]
    peak = max(values, default=0.0)
    weights = [math.exp((value - peak) / temperature) for value in values]
    total = math.fsum(weights)
    return [weight / total for weight in weights]
