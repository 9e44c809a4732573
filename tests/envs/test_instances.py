"""Instance files: the paper's Countdown JSON and Sudoku pickles (restricted unpickler), and our JSONL."""

import json
import pickle
import re
import sys
import types

import pytest

from libs.envs import countdown as cd
from libs.envs import sudoku as sd
from libs.envs.instances import InstanceError, describe, game_of, load_instances

# Full 6x6 boards: GRID_3X2 is valid with boxes of 3 rows x 2 cols (py-sudoku width=2, height=3) but
# not with 2 x 3 boxes; GRID_2X3 the other way round.
GRID_3X2 = [[1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 1, 2], [5, 6, 1, 2, 3, 4],
            [2, 1, 4, 3, 6, 5], [4, 3, 6, 5, 2, 1], [6, 5, 2, 1, 4, 3]]
GRID_2X3 = [[1, 2, 3, 4, 5, 6], [4, 5, 6, 1, 2, 3], [2, 3, 1, 5, 6, 4],
            [5, 6, 4, 2, 3, 1], [3, 1, 2, 6, 4, 5], [6, 4, 5, 3, 1, 2]]


def _puzzle(grid, empty=None):
    """`grid` with every third cell (by r + c) emptied."""
    return [[empty if (r + c) % 3 == 0 else v for c, v in enumerate(row)] for r, row in enumerate(grid)]


def _write(path, text):
    path.write_text(text)
    return str(path)


def _jsonl(path, *items):
    return _write(path, "\n".join(json.dumps(item) for item in items) + "\n")


# ---------------------------------------------------------------------------------------------------------
# The paper's Countdown JSON.

PAPER_COUNTDOWN = [
    {"nums": [7, 60, 27], "target": 80, "solution": ["60-7=53", "27+53=80"], "rating": 0.0},
    {"nums": [60, 83, 77, 65, 72, 48, 24, 55], "target": 66, "complexity": 0.7},
    {"nums": [2, 3, 4], "target": 24},
]


def test_paper_countdown_loads_plain_ints(tmp_path):
    instances = load_instances(_write(tmp_path / "val_3.json", json.dumps(PAPER_COUNTDOWN)))
    assert instances == [cd.CountdownInstance(tuple(e["nums"]), e["target"]) for e in PAPER_COUNTDOWN]
    for instance in instances:
        assert game_of(instance) == "countdown"
        assert all(type(n) is int for n in instance.numbers) and type(instance.target) is int
    assert describe(instances) == "3 countdown instances (3 numbers; 8 numbers)"
    assert describe(instances[:1]) == "1 countdown instance (3 numbers)"


@pytest.mark.parametrize("entry, reason", [
    ({"nums": [1, 2], "target": 50}, "numbers must hold 3..8 values"),
    ({"nums": [1, 2, 3]}, "missing field 'target'"),
    ({"nums": [1, 2, 300], "target": 50}, "numbers must be integers in 1..99"),
    ({"nums": [1, 2, 3.0], "target": 50}, "numbers[2] must be an integer, got 3.0"),
    ({"nums": [1, 2, 3], "target": True}, "target is True: booleans are not numbers"),
    ({"nums": [True, 2, 3], "target": 50}, "numbers[0] is True: booleans are not numbers"),
    ({"nums": "1 2 3", "target": 50}, "numbers must be a list"),
    ([1, 2, 3], "expected an object, got a list"),
    ({"nums": [1, 1, 1], "target": 100}, "unsolvable: numbers (1, 1, 1) cannot make target 100"),
])
def test_paper_countdown_bad_entry_reported_with_its_index(tmp_path, entry, reason):
    path = _write(tmp_path / "val.json", json.dumps(PAPER_COUNTDOWN[:2] + [entry] + PAPER_COUNTDOWN[2:]))
    with pytest.raises(InstanceError) as info:
        load_instances(path)
    assert str(info.value).startswith(f"{path}: instance 2: {reason}")
    assert (info.value.path, info.value.index) == (path, 2)
    assert len(load_instances(path, limit=2)) == 2  # The bad entry is past the limit.


@pytest.mark.parametrize("name, text, reason", [
    ("missing.json", None, "no such file"),
    ("empty.json", "  \n", "file is empty"),
    ("empty_list.json", "[]", "file holds no instances"),
    ("garbled.json", '[\n{"nums": [1, 2, 3], "target": 6},\n{"nums": [1,,\n]', "invalid JSON at line 3, column 13"),
    ("dict.json", '{"nums": [1, 2, 3], "target": 6}', "expected a JSON list of instances, got an object"),
    ("puzzles.txt", "[]", "unknown instance file type '.txt'"),
])
def test_file_level_errors_name_the_file(tmp_path, name, text, reason):
    path = str(tmp_path / name) if text is None else _write(tmp_path / name, text)
    with pytest.raises(InstanceError, match="^" + re.escape(f"{path}: {reason}")) as info:
        load_instances(path)
    assert info.value.index is None and info.value.__cause__ is None and "\n" not in str(info.value)


def test_instance_error_pickles():
    error = pickle.loads(pickle.dumps(InstanceError("a.json", "bad", 3)))
    assert (str(error), error.path, error.reason, error.index) == ("a.json: instance 3: bad", "a.json", "bad", 3)


# ---------------------------------------------------------------------------------------------------------
# The paper's Sudoku pickles, written with a stand-in for py-sudoku that is removed before loading.


@pytest.fixture
def py_sudoku(monkeypatch):
    """Registers a fake `sudoku.sudoku` module; returns make(board, width, height) -> Sudoku object."""
    package, module = types.ModuleType("sudoku"), types.ModuleType("sudoku.sudoku")

    class Sudoku:
        pass

    Sudoku.__module__, Sudoku.__qualname__, Sudoku.__name__ = "sudoku.sudoku", "Sudoku", "Sudoku"
    module.Sudoku, package.sudoku = Sudoku, module
    monkeypatch.setitem(sys.modules, "sudoku", package)
    monkeypatch.setitem(sys.modules, "sudoku.sudoku", module)

    def make(board, width=None, height=None):
        puzzle = Sudoku()
        if width is not None:
            puzzle.__dict__.update(width=width, height=height, size=width * height)
        puzzle.__dict__.update({"board": board, "_Sudoku__difficulty": 0.5})
        return puzzle

    yield make
    monkeypatch.delitem(sys.modules, "sudoku", raising=False)
    monkeypatch.delitem(sys.modules, "sudoku.sudoku", raising=False)


def _pickle_file(path, monkeypatch, puzzles, **extra):
    """Pickles the paper's dict, then unregisters the fake module and forbids plain pickle.load(s)."""
    path.write_bytes(pickle.dumps({"difficulty_name": "medium", "puzzles": puzzles, "solutions": [], **extra}))
    monkeypatch.delitem(sys.modules, "sudoku.sudoku")
    monkeypatch.delitem(sys.modules, "sudoku")

    def forbidden(*args, **kwargs):
        raise AssertionError("plain pickle.load(s) must not be used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    return str(path)


@pytest.mark.parametrize("width, height, grid", [(2, 3, GRID_3X2), (3, 2, GRID_2X3)])
def test_paper_sudoku_pickle_in_both_6x6_orientations(tmp_path, monkeypatch, py_sudoku, width, height, grid):
    puzzles = [py_sudoku(_puzzle(grid), width, height), py_sudoku(grid, width, height)]
    path = _pickle_file(tmp_path / f"sudoku_diff_medium_w_{width}_h_{height}.pkl", monkeypatch, puzzles,
                        box_width=width, box_height=height)
    instances = load_instances(path)
    assert "sudoku.sudoku" not in sys.modules
    assert describe(instances) == f"2 sudoku instances (6x6, boxes {height}x{width})"
    for instance in instances:
        assert game_of(instance) == "sudoku" and instance.shape == (6, height, width)
        assert all(type(v) is int for v in instance.cells)
        assert sd.check_solution(instance, [v for row in grid for v in row])
    assert instances[0].cells.count(0) == 12 and instances[1].cells.count(0) == 0
    assert load_instances(path, box_shape=(height, width)) == instances
    assert load_instances(path, limit=1) == instances[:1]


def test_paper_sudoku_board_in_the_wrong_orientation_is_rejected(tmp_path, monkeypatch, py_sudoku):
    path = _pickle_file(tmp_path / "sudoku_diff_easy_w_3_h_2.pkl", monkeypatch, [py_sudoku(GRID_3X2, 3, 2)])
    with pytest.raises(InstanceError, match=r"instance 0: conflicting givens"):
        load_instances(path)


@pytest.mark.parametrize("name, width, height, box_shape, extra, reason", [
    ("x_w_2_h_3.pkl", 3, 2, None, {}, "instance 1: box shapes disagree: the file name (w_2_h_3) says 3 rows x 2 "
                                      "cols, the puzzle (width=3, height=2) says 2 rows x 3 cols"),
    ("x_w_2_h_3.pkl", 2, 3, (2, 3), {}, "box shapes disagree: the file name (w_2_h_3) says 3 rows x 2 cols, "
                                        "the box_shape argument says 2 rows x 3 cols"),
    ("x.pkl", 2, 3, (2, 3), {}, "instance 0: box shapes disagree: the box_shape argument says 2 rows x 3 cols, "
                                "the puzzle (width=2, height=3) says 3 rows x 2 cols"),
    ("x_w_2_h_3.pkl", 2, 3, None, {"box_width": 3, "box_height": 2}, "box shapes disagree"),
])
def test_paper_sudoku_box_shape_conflicts(tmp_path, monkeypatch, py_sudoku, name, width, height, box_shape,
                                          extra, reason):
    puzzles = [py_sudoku(_puzzle(GRID_3X2), 2, 3), py_sudoku(_puzzle(GRID_3X2), width, height)]
    path = _pickle_file(tmp_path / name, monkeypatch, puzzles, **extra)
    with pytest.raises(InstanceError, match=re.escape(f"{path}: {reason}")):
        load_instances(path, box_shape=box_shape)


def test_paper_sudoku_box_shape_argument_used_when_the_file_says_nothing(tmp_path, monkeypatch, py_sudoku):
    path = _pickle_file(tmp_path / "puzzles.pkl", monkeypatch, [py_sudoku(_puzzle(GRID_2X3))])
    assert load_instances(path, box_shape=(2, 3))[0].shape == (6, 2, 3)
    with pytest.raises(InstanceError, match="instance 0: conflicting givens"):
        load_instances(path)  # Defaults to 3 x 2 boxes, in which GRID_2X3 repeats values.


def test_paper_sudoku_unsolvable_rejected(tmp_path, monkeypatch, py_sudoku):
    board = [[1, 2, None, None], [None, None, None, None], [None, None, 3, None], [None, None, 4, None]]
    path = _pickle_file(tmp_path / "s_w_2_h_2.pkl", monkeypatch, [py_sudoku(board, 2, 2)])
    with pytest.raises(InstanceError, match=r"instance 0: unsolvable"):
        load_instances(path)


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("make", [
    lambda marker: _Evil(__import__("os").system, f"touch {marker}"),
    lambda marker: _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
])
def test_malicious_pickle_refused_without_running(tmp_path, monkeypatch, py_sudoku, make):
    marker = tmp_path / "pwned"
    puzzles = [py_sudoku(_puzzle(GRID_3X2), 2, 3), make(marker)]
    path = _pickle_file(tmp_path / "sudoku_diff_easy_w_2_h_3.pkl", monkeypatch, puzzles)
    with pytest.raises(InstanceError, match=r"pkl: refusing to unpickle (posix|nt|builtins)\.(system|eval)$"):
        load_instances(path)
    assert not marker.exists()


@pytest.mark.parametrize("data, reason", [
    (b"\x80\x04garbage", "not a valid pickle"),
    (pickle.dumps([1, 2]), "expected a pickled dict with a 'puzzles' list, got a list"),
    (pickle.dumps({"puzzles": [{"board": []}]}), "instance 0: expected a sudoku.sudoku.Sudoku object"),
])
def test_garbled_or_wrong_pickle(tmp_path, data, reason):
    (tmp_path / "s.pkl").write_bytes(data)
    with pytest.raises(InstanceError, match=re.escape(reason)):
        load_instances(str(tmp_path / "s.pkl"))


# ---------------------------------------------------------------------------------------------------------
# Our JSONL.


def test_jsonl_countdown(tmp_path):
    path = _write(tmp_path / "c.jsonl", '{"game": "countdown", "numbers": [7, 60, 27], "target": 80}\n\n'
                                        '{"game": "countdown", "numbers": [2, 3, 4], "target": 24, "id": "x"}\n')
    assert load_instances(path) == [cd.CountdownInstance((7, 60, 27), 80), cd.CountdownInstance((2, 3, 4), 24)]


def test_jsonl_sudoku_flat_nested_nulls_and_box_shapes(tmp_path):
    nested = {"game": "sudoku", "cells": _puzzle(GRID_3X2, empty=None)}
    flat = {"game": "sudoku", "box_rows": 2, "box_cols": 3, "cells": [v for row in _puzzle(GRID_2X3, 0) for v in row]}
    a, b = load_instances(_jsonl(tmp_path / "s.jsonl", nested, flat))
    assert a.shape == (6, 3, 2) and b.shape == (6, 2, 3)  # No box fields: sudoku.BOX_SHAPES[6].
    assert a.cells == tuple(v or 0 for row in _puzzle(GRID_3X2) for v in row)
    assert sd.check_solution(a, sum(GRID_3X2, []))
    assert sd.check_solution(b, sum(GRID_2X3, []))
    assert describe([a, b]) == "2 sudoku instances (6x6, boxes 2x3; 6x6, boxes 3x2)"
    only_nested = _jsonl(tmp_path / "n.jsonl", {"game": "sudoku", "cells": _puzzle(GRID_2X3)})
    assert load_instances(only_nested, box_shape=(2, 3))[0].shape == (6, 2, 3)
    with pytest.raises(InstanceError, match=r"instance 1: box shapes disagree: the line says 2 rows x 3 cols, "
                                            r"the box_shape argument says 3 rows x 2 cols \(line 2\)"):
        load_instances(_jsonl(tmp_path / "s.jsonl", nested, flat), box_shape=(3, 2))


@pytest.mark.parametrize("lines, reason", [
    (['{"game": "countdown", "numbers": [2, 3, 4], "target": 24}', "", '{"game": "countdown", "numbers": [1,'],
     "line 3: invalid JSON at column"),
    (['{"game": "countdown", "numbers": [2, 3, 4], "target": 24}',
      '{"game": "sudoku", "cells": [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]}'],
     "instance 1: mixed games: line 1 is countdown, this line is sudoku (line 2)"),
    (['{"game": "countdown", "numbers": [2, 3, 4.0], "target": 24}'], "instance 0: numbers[2] must be an integer"),
    (['{"game": "countdown", "numbers": [2, 3, 4], "target": false}'], "instance 0: target is False: booleans"),
    (['{"game": "sudoku", "cells": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, true]}'],
     "instance 0: cell (row 3, col 3) is True: booleans are not numbers"),
    (['{"game": "sudoku", "cells": [1, 0, 0]}'], "instance 0: a flat cells list needs a square number"),
    (['{"game": "sudoku", "cells": [[1, 0, 0, 0], [0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]}'], "instance 0: row 1 has 2"),
    (['{"game": "sudoku", "box_rows": 2, "cells": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}'],
     "instance 0: missing field 'box_cols'"),
    (['{"game": "sudoku", "cells": [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}'],
     "instance 0: conflicting givens"),
    (['{"game": "chess"}'], "instance 0: game must be 'countdown' or 'sudoku'"),
    (['[1, 2]'], "instance 0: expected an object, got a list (line 1)"),
    (['', '  '], "file is empty"),
])
def test_jsonl_errors(tmp_path, lines, reason):
    path = _write(tmp_path / "x.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(InstanceError, match="^" + re.escape(f"{path}: {reason}")):
        load_instances(path)


def test_limit_skips_the_rest(tmp_path):
    good = '{"game": "countdown", "numbers": [2, 3, 4], "target": 24}'
    path = _write(tmp_path / "x.jsonl", f"{good}\n{good}\nnot json\n")
    assert len(load_instances(path, limit=2)) == 2
    assert load_instances(path, limit=0) == []
    with pytest.raises(InstanceError, match="line 3: invalid JSON"):
        load_instances(path)
    with pytest.raises(ValueError, match="limit"):
        load_instances(path, limit=-1)
