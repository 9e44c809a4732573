"""Tests for the LFS query prompts (libs/agents/prompts.py)."""

import re

import pytest

from libs.agents import prompts as P

SHAPES = [(4, 2, 2), (6, 2, 3), (6, 3, 2), (9, 3, 3)]


def _sequence():
    states = [P.countdown_state_text(24, [3, 8, 2, 5], []),
              P.countdown_state_text(24, [2, 5, 24], ["3 * 8 = 24"]),
              P.countdown_state_text(24, [24, 7], ["3 * 8 = 24", "2 + 5 = 7"])]
    return P.countdown_sequence_text(states, ["3 * 8 = 24", "2 + 5 = 7"])


def test_countdown_rendering():
    assert P.countdown_operation(52, "-", 2, 50) == "52 - 2 = 50"
    with pytest.raises(ValueError):
        P.countdown_operation(1, "^", 2, 1)
    state = P.countdown_state_text(24, [3, 8], ["1 + 2 = 3"])
    assert "Target: 24" in state and "[3, 8]" in state and "['1 + 2 = 3']" in state
    seq = _sequence()
    assert seq.index("**State 0**") < seq.index("**Action 0**") < seq.index("**State 1** (after 3 * 8 = 24)")
    assert seq.index("**State 1**") < seq.index("**Action 1**") < seq.index("**State 2** (after 2 + 5 = 7)")
    assert "[24, 7]" in seq
    with pytest.raises(ValueError):
        P.countdown_sequence_text(["a", "b"], [])


def test_actions_text_keeps_sparse_keys():
    assert P.actions_text({3: "b", 0: "a"}) == "{0: 'a', 3: 'b'}"
    assert P.sudoku_move(1, 0, 3) == "Place 3 at cell (1, 0)"


@pytest.mark.parametrize("kind,key", [("child_values", "operation_values"), ("value", "state_value_estimation"),
                                      ("explore", "explore"), ("priors", "operation_scores")])
def test_countdown_prompt(kind, key):
    seq = _sequence()
    actions = {0: "24 + 7 = 31", 2: "24 - 7 = 17"}
    prompt = P.countdown_prompt(kind, seq, actions)
    assert seq in prompt.user and "{0: '24 + 7 = 31', 2: '24 - 7 = 17'}" in prompt.user
    assert f'"{key}"' in prompt.user and f'"{key}"' in prompt.system
    assert "\\boxed{" in prompt.user and "\\boxed{" in prompt.system
    assert "Rules" in prompt.system and "State 3" in prompt.system  # rules and the solved example
    assert prompt.messages() == [{"role": "system", "content": prompt.system},
                                 {"role": "user", "content": prompt.user}]
    others = {"operation_values", "state_value_estimation", "explore", "operation_scores"} - {key}
    assert not any(f'"{k}"' in prompt.user for k in others)


def test_explore_prompts_say_explore_only_when_confident():
    for prompt in (P.countdown_prompt("explore", _sequence(), {0: "x"}),
                   P.sudoku_prompt("explore", 4, 2, 2, P.sudoku_board_text([0] * 16, 4, 2, 2), {0: "x"})):
        assert "only if you are confident" in prompt.system
        assert "unexplored" in prompt.user and "true" in prompt.user and "false" in prompt.user


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="child_values"):
        P.countdown_prompt("best", "seq", {0: "x"})
    with pytest.raises(ValueError, match="priors"):
        P.sudoku_prompt("filter", 4, 2, 2, "board", {0: "x"})
    with pytest.raises(ValueError):
        P.sudoku_prompt("value", 6, 2, 2, "board", {0: "x"})


def test_sudoku_board_text():
    cells = [1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 4]
    text = P.sudoku_board_text(cells, 4, 2, 2)
    lines = text.splitlines()
    assert lines[0] == "1 . | . ." and lines[1] == ". 2 | . ."
    assert set(lines[2]) == {"-"} and lines[3] == ". . | 3 ." and len(lines) == 5
    with pytest.raises(ValueError):
        P.sudoku_board_text(cells[:-1], 4, 2, 2)


def test_sudoku_6x6_orientations_differ():
    cells = list(range(1, 7)) * 6
    wide = P.sudoku_board_text(cells, 6, 2, 3).splitlines()  # boxes of 2 rows x 3 columns
    tall = P.sudoku_board_text(cells, 6, 3, 2).splitlines()  # boxes of 3 rows x 2 columns
    assert wide[0].count("|") == 1 and tall[0].count("|") == 2
    assert [i for i, l in enumerate(wide) if l.startswith("-")] == [2, 5]
    assert [i for i, l in enumerate(tall) if l.startswith("-")] == [3]
    assert "boxes of 2 rows x 3 columns" in P.sudoku_prompt("value", 6, 2, 3, "b", {}).system
    assert "boxes of 3 rows x 2 columns" in P.sudoku_prompt("value", 6, 3, 2, "b", {}).system


@pytest.mark.parametrize("size,box_rows,box_cols", SHAPES)
@pytest.mark.parametrize("kind,key", [("child_values", "move_values"), ("value", "state_value_estimation"),
                                      ("explore", "explore"), ("priors", "operation_scores")])
def test_sudoku_prompt(size, box_rows, box_cols, kind, key):
    board = P.sudoku_board_text([0] * size * size, size, box_rows, box_cols)
    actions = {0: P.sudoku_move(1, 0, 3), 4: P.sudoku_move(0, size - 1, 2)}
    prompt = P.sudoku_prompt(kind, size, box_rows, box_cols, board, actions)
    assert board in prompt.user
    assert f"{{0: 'Place 3 at cell (1, 0)', 4: 'Place 2 at cell (0, {size - 1})'}}" in prompt.user
    assert f'"{key}"' in prompt.user and f'"{key}"' in prompt.system
    assert f"{size}x{size}" in prompt.system and f"boxes of {box_rows} rows x {box_cols} columns" in prompt.system
    assert f"numbered 0 to {size - 1}" in prompt.system


@pytest.mark.parametrize("size,box_rows,box_cols", SHAPES)
def test_sudoku_example_is_consistent(size, box_rows, box_cols):
    cells, moves, correct = P._sudoku_example(box_rows, box_cols)
    n = size

    def peers(r, c):
        r0, c0 = r - r % box_rows, c - c % box_cols
        return ({(r, j) for j in range(n)} | {(i, c) for i in range(n)}
                | {(i, j) for i in range(r0, r0 + box_rows) for j in range(c0, c0 + box_cols)}) - {(r, c)}

    for p, v in enumerate(cells):  # the givens break no rule
        if v:
            assert all(cells[i * n + j] != v for i, j in peers(p // n, p % n))
    assert len(moves) == 4 and sum(correct.values()) == 2
    for text in moves.values():  # every example move is legal on the example board
        v, r, c = map(int, re.fullmatch(r"Place (\d+) at cell \((\d+), (\d+)\)", text).groups())
        assert cells[r * n + c] == 0 and all(cells[i * n + j] != v for i, j in peers(r, c))
    assert P.sudoku_board_text(cells, size, box_rows, box_cols) in P._sudoku_system("value", size, box_rows, box_cols)


def test_try_again_mentions_boxed_json():
    assert "\\boxed{" in P.TRY_AGAIN and "JSON" in P.TRY_AGAIN
