"""Loading puzzle instances from files: the paper's Countdown JSON and Sudoku pickles, and our JSONL.

`load_instances(path)` picks the format from the file name's suffix:

- `.json`: the paper's Countdown file (NathanHerr/LLM-First-Search `data/countdown/val_<k>.json`), a
  JSON list of objects; "nums" (list of integers) and "target" (integer) are read, other fields ignored.
- `.pkl`: the paper's Sudoku file (`data/sudoku/sudoku_diff_<level>_w_<w>_h_<h>.pkl`), a pickled dict
  whose "puzzles" list holds py-sudoku `sudoku.sudoku.Sudoku` objects ("solutions" is ignored), each
  with state {"width": cols per box, "height": rows per box, "size", "board": rows with None = empty,
  "_Sudoku__difficulty"}; so `w_2_h_3` means boxes of 3 rows x 2 columns. The box shapes given by the
  file name, the dict's "box_width"/"box_height", each object and the `box_shape` argument must agree.
  A restricted unpickler admits only `sudoku.sudoku.Sudoku` (as a local stand-in that keeps the state
  dict), so py-sudoku need not be installed and any other global is refused before anything runs.
- `.jsonl`: our format, one JSON object per line (blank lines allowed), all lines the same game:
      {"game": "countdown", "numbers": [7, 60, 27], "target": 80}
      {"game": "sudoku", "box_rows": 3, "box_cols": 2, "cells": [[0, 3, 0, 1, 0, 0], ...]}
  "cells" is a list of rows or a flat row-major list; 0 or null is empty. "box_rows"/"box_cols" are
  optional (both or neither); without them the `box_shape` argument, then `sudoku.BOX_SHAPES[size]`,
  applies. Other fields are ignored. Numbers must be JSON integers: 3.0 and booleans are rejected.

Every instance is checked on load: Countdown in range and solvable; Sudoku well formed, no conflicting
givens, at least one solution (several allowed). Problems raise `InstanceError`: the file path, then
`instance <i>: ` (0-based) when one instance is at fault.
"""

from __future__ import annotations

import io
import json
import math
import numbers as numbers_abc
import os
import pickle
import re

from libs.envs import countdown, sudoku
from libs.envs.countdown import CountdownInstance
from libs.envs.sudoku import SudokuInstance

Instance = CountdownInstance | SudokuInstance
BoxShape = tuple[int, int]  # (rows, cols) per box.

_NAME_SHAPE = re.compile(r"_w_(\d+)_h_(\d+)")  # py-sudoku width (cols per box), height (rows per box).
_KINDS = {dict: "an object", list: "a list", str: "a string", type(None): "null"}


class InstanceError(ValueError):
    """A bad instance file: `path: reason`, or `path: instance <index>: reason` for one instance."""

    def __init__(self, path: str, reason: str, index: int | None = None):
        self.path, self.reason, self.index = str(path), reason, index
        super().__init__(f"{self.path}: {'' if index is None else f'instance {index}: '}{reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.index)


def game_of(instance: Instance) -> str:
    """'countdown' or 'sudoku'."""
    if isinstance(instance, CountdownInstance):
        return "countdown"
    if isinstance(instance, SudokuInstance):
        return "sudoku"
    raise TypeError(f"not a puzzle instance: {type(instance).__name__}")


def describe(instances: list[Instance]) -> str:
    """A log line, e.g. '200 countdown instances (7 numbers)' or '100 sudoku instances (6x6, boxes 3x2)'."""
    parts = []
    for game, detail in (("countdown", lambda x: f"{len(x.numbers)} numbers"),
                         ("sudoku", lambda x: f"{x.size}x{x.size}, boxes {x.box_rows}x{x.box_cols}")):
        if group := [x for x in instances if game_of(x) == game]:
            details = "; ".join(sorted({detail(x) for x in group}))
            parts.append(f"{len(group)} {game} instance{'s' * (len(group) != 1)} ({details})")
    return " + ".join(parts) or "0 instances"


def load_instances(path: str, box_shape: BoxShape | None = None, limit: int | None = None) -> list[Instance]:
    """The checked instances in `path` (format from the suffix; see the module docstring).

    `box_shape` (rows, cols), Sudoku only, must agree with any box shape the file states and is used
    where it states none. `limit` keeps the first `limit` instances; later ones are not checked.
    """
    if limit is not None and _int(limit, "limit") < 0:
        raise ValueError(f"limit must be non-negative or None, got {limit}")
    if box_shape is not None and len(box_shape := tuple(_int(v, "box_shape") for v in box_shape)) != 2:
        raise ValueError(f"box_shape must be (rows, cols), got {box_shape!r}")
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    loaders = {".json": _load_paper_countdown, ".pkl": _load_paper_sudoku, ".jsonl": _load_jsonl}
    if suffix not in loaders:
        raise InstanceError(path, f"unknown instance file type {suffix!r}; expected .json, .jsonl or .pkl")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InstanceError(path, "no such file") from None
    except OSError as e:
        raise InstanceError(path, f"cannot read: {e.strerror or e}") from None
    if not data.strip():
        raise InstanceError(path, "file is empty")
    instances = loaders[suffix](path, data, box_shape, limit)
    if not instances and limit != 0:
        raise InstanceError(path, "file holds no instances")
    return instances


def _load_paper_countdown(path, data, box_shape, limit):
    try:
        items = json.loads(_text(path, data))
    except json.JSONDecodeError as e:
        raise InstanceError(path, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(items, list):
        raise InstanceError(path, f"expected a JSON list of instances, got {_kind(items)}")
    return _build_each(path, items[:limit], lambda item: _countdown(_field(item, "nums"), _field(item, "target")))


def _build_each(path, items, build):
    """[build(item) for item in items], with the first ValueError raised as an InstanceError."""
    instances = []
    for i, item in enumerate(items):
        try:
            instances.append(build(item))
        except ValueError as e:
            raise InstanceError(path, str(e), i) from None
    return instances


class _PaperSudoku:
    """Stand-in for py-sudoku's `Sudoku`: keeps the pickled state (BUILD) and nothing else."""

    def __setstate__(self, state):
        self.state = state


class _Refused(pickle.UnpicklingError):
    """A global the restricted unpickler does not admit."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only py-sudoku's `Sudoku` class (as `_PaperSudoku`); any other global is refused."""

    def find_class(self, module, name):
        if (module, name) == ("sudoku.sudoku", "Sudoku"):
            return _PaperSudoku
        raise _Refused(f"refusing to unpickle {module}.{name}")


def _load_paper_sudoku(path, data, box_shape, limit):
    try:
        top = _RestrictedUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise InstanceError(path, str(e)) from None
    except Exception as e:  # Untrusted bytes: any failure while parsing them means a garbled file.
        raise InstanceError(path, f"not a valid pickle: {type(e).__name__}: {e}") from None
    if not isinstance(top, dict) or not isinstance(top.get("puzzles"), list):
        raise InstanceError(path, f"expected a pickled dict with a 'puzzles' list, got {_kind(top)}")
    match = _NAME_SHAPE.search(os.path.basename(path))
    try:  # (box shape or None, who says so); all must agree, the first one given wins.
        claims = [((int(match[2]), int(match[1])) if match else None, f"the file name ({match and match[0][1:]})"),
                  (_box_pair(top, "box_width", "box_height"), "the file's box_width/box_height"),
                  (box_shape, "the box_shape argument")]
        _agreed(claims)
    except ValueError as e:
        raise InstanceError(path, str(e)) from None
    return _build_each(path, top["puzzles"][:limit], lambda puzzle: _paper_sudoku(puzzle, claims))


def _paper_sudoku(puzzle, claims) -> SudokuInstance:
    if not isinstance(puzzle, _PaperSudoku) or not isinstance(getattr(puzzle, "state", None), dict):
        raise ValueError(f"expected a sudoku.sudoku.Sudoku object with a state dict, got {_kind(puzzle)}")
    state = puzzle.state
    board = _field(state, "board")
    if not isinstance(board, list) or not all(isinstance(row, list) for row in board):
        raise ValueError(f"board must be a list of rows, got {_kind(board)}")
    if "size" in state and state["size"] != len(board):
        raise ValueError(f"size is {state['size']!r} but the board has {len(board)} rows")
    own = _box_pair(state, "width", "height")
    return _sudoku(board, _agreed(claims + [(own, f"the puzzle (width={own and own[1]}, height={own and own[0]})")]))


def _load_jsonl(path, data, box_shape, limit):
    instances, game, first_line = [], None, 0
    for line_number, line in enumerate(_text(path, data).splitlines(), start=1):
        if limit is not None and len(instances) >= limit:
            break
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise InstanceError(path, f"line {line_number}: invalid JSON at column {e.colno}: {e.msg}") from None
        try:
            this_game = _field(item, "game")
            if this_game not in ("countdown", "sudoku"):
                raise ValueError(f"game must be 'countdown' or 'sudoku', got {this_game!r}")
            if game is not None and this_game != game:
                raise ValueError(f"mixed games: line {first_line} is {game}, this line is {this_game}")
            game, first_line = this_game, first_line or line_number
            if game == "countdown":
                instances.append(_countdown(_field(item, "numbers"), _field(item, "target")))
            else:
                shape = _agreed([(_box_pair(item, "box_cols", "box_rows"), "the line"),
                                 (box_shape, "the box_shape argument")])
                instances.append(_sudoku(_field(item, "cells"), shape))
        except ValueError as e:
            raise InstanceError(path, f"{e} (line {line_number})", len(instances)) from None
    return instances


def _countdown(numbers, target) -> CountdownInstance:
    """A checked, solvable instance; raises ValueError with the reason."""
    if not isinstance(numbers, list):
        raise ValueError(f"numbers must be a list of integers, got {_kind(numbers)}")
    instance = CountdownInstance(tuple(_int(n, f"numbers[{k}]") for k, n in enumerate(numbers)),
                                 _int(target, "target"))
    instance.validate()
    if countdown.solve(instance) is None:
        raise ValueError(f"unsolvable: numbers {instance.numbers} cannot make target {instance.target}")
    return instance


def _sudoku(cells, shape: BoxShape | None) -> SudokuInstance:
    """A checked board with a solution from rows or a flat list (None = 0); raises ValueError."""
    if not isinstance(cells, list) or not cells:
        raise ValueError(f"cells must be a non-empty list, got {_kind(cells)}")
    if all(isinstance(row, list) for row in cells):
        size = len(cells)
        for r, row in enumerate(cells):
            if len(row) != size:
                raise ValueError(f"row {r} has {len(row)} cells; a board of {size} rows needs {size}")
        flat = [value for row in cells for value in row]
    else:
        flat, size = cells, math.isqrt(len(cells))
        if size * size != len(cells):
            raise ValueError(f"a flat cells list needs a square number of entries, got {len(cells)}")
    if size not in sudoku.BOX_SHAPES:
        raise ValueError(f"board size must be one of {sorted(sudoku.BOX_SHAPES)}, got {size}")
    values = tuple(0 if v is None else _int(v, f"cell (row {k // size}, col {k % size})") for k, v in enumerate(flat))
    instance = SudokuInstance(size, *(shape or sudoku.BOX_SHAPES[size]), values)
    instance.validate()
    if sudoku.count_solutions(instance, limit=1) < 1:
        raise ValueError("unsolvable: the givens admit no solution")
    return instance


def _int(value, what: str) -> int:
    """`value` as an int (numpy integers too); booleans, floats and everything else raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{what} is {value!r}: booleans are not numbers")
    if not isinstance(value, numbers_abc.Integral):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _box_pair(mapping: dict, cols_key: str, rows_key: str) -> BoxShape | None:
    """(rows, cols) from two fields (both or neither), or None when both are absent."""
    if cols_key not in mapping and rows_key not in mapping:
        return None
    return _int(_field(mapping, rows_key), rows_key), _int(_field(mapping, cols_key), cols_key)


def _agreed(claims: list[tuple[BoxShape | None, str]]) -> BoxShape | None:
    """The box shape all (shape, who says so) claims agree on, ignoring None; None when there is none."""
    claims = [(shape, source) for shape, source in claims if shape]
    for shape, source in claims[1:]:
        if shape != claims[0][0]:
            (r0, c0), (r, c) = claims[0][0], shape
            raise ValueError(f"box shapes disagree: {claims[0][1]} says {r0} rows x {c0} cols, "
                             f"{source} says {r} rows x {c} cols")
    return claims[0][0] if claims else None


def _field(mapping: dict, name: str):
    if not isinstance(mapping, dict):
        raise ValueError(f"expected an object, got {_kind(mapping)}")
    if name not in mapping:
        raise ValueError(f"missing field {name!r}")
    return mapping[name]


def _kind(value) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _text(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InstanceError(path, f"not UTF-8 text (byte {e.start})") from None
