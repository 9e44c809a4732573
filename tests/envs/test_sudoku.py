"""Sudoku environment: validation, moves, solver, generator and the offline heuristic."""

import pytest

from libs.envs import sudoku as sd

# A 4x4 board whose cell (row 0, col 2) has no candidates: its row holds 1, 2 and its column 3, 4.
DEAD_4X4 = (1, 2, 0, 0,
            0, 0, 0, 0,
            0, 0, 3, 0,
            0, 0, 4, 0)


def _instance(cells, size=4):
    return sd.SudokuInstance(size, *sd.BOX_SHAPES[size], tuple(cells))


@pytest.mark.parametrize("size, difficulty, count", [(4, "hard", 10), (6, "medium", 8), (9, "easy", 4)])
def test_generate_unique_deterministic_and_at_requested_difficulty(size, difficulty, count):
    instances = sd.generate(size, difficulty, count, seed=3)
    assert instances == sd.generate(size, difficulty, count, seed=3)
    assert instances != sd.generate(size, difficulty, count, seed=4)
    assert len({instance.cells for instance in instances}) == count
    fraction = sd.DIFFICULTIES[difficulty]
    for instance in instances:
        instance.validate(check_unique=True)
        assert sd.count_solutions(instance) == 1
        assert (instance.size, instance.box_rows, instance.box_cols) == (size, *sd.BOX_SHAPES[size])
        assert fraction - 0.1 <= instance.empty_fraction <= fraction


def test_generate_stops_where_uniqueness_stops_for_expert():
    instance = sd.generate(9, "expert", 1, seed=0)[0]
    instance.validate(check_unique=True)
    assert 0.5 < instance.empty_fraction < 0.9  # 9x9 needs at least 17 givens, so 0.9 is out of reach.


def test_generate_rejects_unknown_size_or_difficulty():
    with pytest.raises(ValueError, match="size"):
        sd.generate(5, "easy", 1, seed=0)
    with pytest.raises(ValueError, match="difficulty"):
        sd.generate(4, "insane", 1, seed=0)


def test_legal_moves_are_exactly_the_valid_placements():
    for instance in sd.generate(6, "medium", 3, seed=0) + [_instance(DEAD_4X4)]:
        state = sd.initial_state(instance)
        moves = sd.legal_moves(state)
        brute_force = set()
        for index, value in enumerate(state.cells):
            if value == 0:
                for candidate in range(1, state.size + 1):
                    try:
                        child = sd.apply(state, (index // state.size, index % state.size, candidate))
                    except ValueError:
                        continue
                    sd.SudokuInstance(*child.shape, child.cells).validate()  # No repeats.
                    brute_force.add((index // state.size, index % state.size, candidate))
        assert len(moves) == len(set(moves)) and set(moves) == brute_force


def test_legal_moves_are_row_major_with_values_ascending():
    state = sd.initial_state(sd.generate(9, "easy", 1, seed=1)[0])
    moves = sd.legal_moves(state)
    assert moves == sorted(moves)  # The paper's order: cells row-major, then values ascending.


@pytest.mark.parametrize("shape", [(3, 2), (2, 3)])
def test_six_by_six_in_both_box_orientations(shape):
    (instance,) = sd.generate(6, "medium", 1, seed=3, box_shape=shape)
    assert (instance.box_rows, instance.box_cols) == shape and sd.count_solutions(instance) == 1
    rows, cols, boxes = sd._units(instance.shape)  # pylint: disable=protected-access
    assert len(boxes[0]) == 6 and {i // 6 for i in boxes[0]} == set(range(shape[0]))
    assert sd.BOX_SHAPES[6] == (3, 2)  # The paper's 6x6 default (py-sudoku width=2, height=3).
    # A board valid under one orientation breaks the other's boxes.
    (solution,) = sd.solve(instance, limit=1)
    other = (6, *shape[::-1])
    with pytest.raises(ValueError, match="conflicting givens"):
        sd.SudokuInstance(*other, solution).validate()


def test_dead_ends_follow_the_paper_unless_strict():
    # Cell (0, 0) has no candidate (row has 2, 3; column has 1; box has 4) but (0, 3) still has one.
    cells = (0, 2, 3, 0,
             0, 4, 0, 0,
             1, 0, 0, 0,
             0, 0, 0, 0)
    state = sd.SudokuState(4, 2, 2, cells)
    assert not sd.is_terminal(state) and sd.is_terminal(state, strict=True)
    assert sd.legal_moves(state) and all((r, c) != (0, 0) for r, c, _ in sd.legal_moves(state))


def test_apply_rejects_filled_cells_and_conflicts():
    state = sd.initial_state(_instance(DEAD_4X4))
    with pytest.raises(ValueError, match="already filled"):
        sd.apply(state, (0, 0, 3))
    with pytest.raises(ValueError, match="conflicts"):
        sd.apply(state, (0, 3, 1))
    with pytest.raises(ValueError, match="off the 4x4 board"):
        sd.apply(state, (0, 4, 1))


def test_solve_check_solution_terminal_and_win():
    instance = sd.generate(4, "hard", 1, seed=5)[0]
    (solution,) = sd.solve(instance, limit=2)
    assert sd.check_solution(instance, solution)
    solved = sd.SudokuState(*instance.shape, solution)
    assert sd.is_terminal(solved) and sd.is_solved(solved) and sd.is_win(solved)
    assert not sd.is_terminal(sd.initial_state(instance)) and not sd.is_solved(sd.initial_state(instance))
    swapped = list(solution)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert not sd.check_solution(instance, swapped)
    assert not sd.check_solution(instance, solution[:-1])
    other = next(s for s in sd.solve(_instance([0] * 16), limit=300) if s != solution)
    assert not sd.check_solution(instance, other)  # A valid board that ignores the givens.
    dead = sd.initial_state(_instance(DEAD_4X4))
    assert sd.is_terminal(dead, strict=True) and not sd.is_solved(dead) and sd.solve(dead) == []
    assert sd.count_solutions(_instance([0] * 16), limit=10) == 10


@pytest.mark.parametrize("cells, size, box_rows, box_cols, message", [
    ((0,) * 15, 4, 2, 2, "16 entries"),
    ((7,) + (0,) * 15, 4, 2, 2, "value 7"),
    ((1, 0, 1, 0) + (0,) * 12, 4, 2, 2, "value 1 appears twice in row 0"),
    ((2,) + (0,) * 3 + (0,) * 4 + (2,) + (0,) * 7, 4, 2, 2, "value 2 appears twice in col 0"),
    ((0,) * 16, 5, 2, 2, "size"),
    ((0,) * 36, 6, 3, 3, "2 rows x 3 cols"),
])
def test_malformed_instances_raise_helpful_errors(cells, size, box_rows, box_cols, message):
    with pytest.raises(ValueError, match=message):
        sd.SudokuInstance(size, box_rows, box_cols, cells).validate()


def test_check_unique_rejects_no_or_multiple_solutions():
    with pytest.raises(ValueError, match="no solution"):
        _instance(DEAD_4X4).validate(check_unique=True)
    with pytest.raises(ValueError, match="multiple solutions"):
        _instance([0] * 16).validate(check_unique=True)


def test_heuristic_value():
    instance = sd.generate(4, "hard", 1, seed=2)[0]
    solution = sd.solve(instance)[0]
    nearly_solved = sd.SudokuState(*instance.shape, (0,) + solution[1:])
    assert sd.heuristic_value(nearly_solved) == 1.0
    assert sd.heuristic_value(sd.initial_state(instance)) == 1.0  # Singles solve generated 4x4 puzzles.
    assert sd.heuristic_value(sd.initial_state(_instance(DEAD_4X4))) == 0.0  # A cell with no candidates.
    # Every empty cell of row 0 has candidates {2, 3}, but the row has nowhere left for its 4.
    no_place = (1, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0)
    assert sd.heuristic_value(sd.SudokuState(4, 2, 2, no_place)) == 0.0
    empty = sd.heuristic_value(sd.SudokuState(9, 3, 3, (0,) * 81))
    assert empty == pytest.approx(0.2)
    state = sd.initial_state(sd.generate(9, "hard", 1, seed=0)[0])
    assert 0.0 <= sd.heuristic_value(state) <= 1.0


def test_heuristic_priors_favour_correct_moves():
    instance = sd.generate(4, "hard", 1, seed=6)[0]
    state = sd.initial_state(instance)
    moves = sd.legal_moves(state)
    priors = sd.heuristic_priors(state, moves)
    assert len(priors) == len(moves) and sum(priors) == pytest.approx(1.0)
    solution = sd.solve(instance)[0]
    best_row, best_col, best_value = moves[priors.index(max(priors))]
    assert solution[best_row * 4 + best_col] == best_value
    assert sd.heuristic_priors(state, []) == []


def test_greedy_search_with_heuristic_solves_4x4():
    for instance in sd.generate(4, "hard", 10, seed=9):
        state = sd.initial_state(instance)
        while not sd.is_terminal(state):
            children = [sd.apply(state, move) for move in sd.legal_moves(state)]
            state = max(children, key=sd.heuristic_value)
        assert sd.is_solved(state) and sd.check_solution(instance, state.cells)


def test_states_are_hashable_and_described():
    instance = sd.generate(4, "hard", 1, seed=0)[0]
    state = sd.initial_state(instance)
    assert len({state, sd.SudokuState(*state.shape, list(state.cells))}) == 1
    text = sd.describe_state(state)
    assert text.count(".") == state.cells.count(0) and len(text.splitlines()) == 5
    assert sd.describe_move((0, 2, 3)) == "Place 3 at cell (0, 2)"  # 0-based, as in the paper's prompts
