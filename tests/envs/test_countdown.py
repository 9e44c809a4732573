"""Countdown environment: rules, solver, checker, generator and the offline heuristic."""

import random

import pytest

from libs.envs import countdown as cd


def _random_states(instances, seed):
    """Every state on one random playout from each instance."""
    rng, states = random.Random(seed), []
    for instance in instances:
        state = cd.initial_state(instance)
        while True:
            states.append((state, instance.target))
            if cd.is_terminal(state):
                break
            state = cd.apply(state, rng.choice(cd.legal_moves(state)))
    return states


def test_legal_moves_never_produce_negative_or_fractional_numbers():
    states = _random_states(cd.generate(5, 10, seed=0), seed=1)
    states.append((cd.CountdownState((0, 3, 3, 7, 12)), 10))  # Zeros and duplicates.
    for state, _ in states:
        children = [cd.apply(state, move) for move in cd.legal_moves(state)]
        merged = [cd.apply(state, move) for move in cd.legal_moves(state, merge_equivalent=True)]
        assert len({child.key for child in merged}) == len(merged)  # Deduplicated by multiset ...
        assert {child.key for child in merged} == {child.key for child in children}  # ... losing none.
        for child in children:
            assert len(child.numbers) == len(state.numbers) - 1
            assert all(isinstance(n, int) and n >= 0 for n in child.numbers)


def test_legal_moves_follow_the_paper_and_merge_on_request():
    state = cd.CountdownState((2, 2, 5))
    # The paper's branching: pairs of positions in order, then +, *, - (larger first), exact /.
    assert cd.legal_moves(state) == [
        (2, "+", 2), (2, "*", 2), (2, "-", 2), (2, "/", 2),
        (2, "+", 5), (2, "*", 5), (5, "-", 2),
        (2, "+", 5), (2, "*", 5), (5, "-", 2)]
    assert cd.apply(state, (5, "-", 2)).numbers == (2, 3)  # Untouched numbers keep their order; result last.
    # Merged: 2 + 2 and 2 * 2 both leave {4, 5}; the second (1st, 3rd) pair repeats the first (2nd, 3rd).
    merged = cd.legal_moves(state, merge_equivalent=True)
    assert merged == [(2, "+", 2), (2, "-", 2), (2, "/", 2), (2, "+", 5), (2, "*", 5), (5, "-", 2)]
    assert cd.legal_moves(cd.CountdownState((0, 3))) == [(0, "+", 3), (0, "*", 3), (3, "-", 0)]  # No / by 0.


def test_apply_terminal_win_and_descriptions():
    instance = cd.CountdownInstance((4, 6, 10), 34)
    state = cd.initial_state(instance)
    assert not cd.is_terminal(state) and not cd.is_win(state, 34)
    state = cd.apply(state, (6, "*", 4))
    assert state.numbers == (10, 24) and state.steps == ((6, "*", 4, 24),)
    state = cd.apply(state, (24, "+", 10))
    assert cd.is_terminal(state) and cd.is_win(state, 34) and not cd.is_win(state, 33)
    assert cd.check_solution(instance, list(state.steps))
    assert cd.describe_move((24, "/", 6)) == "24 / 6 = 4"
    text = cd.describe_state(state, 34)
    assert "Target: 34" in text and "[34]" in text and "6 * 4 = 24" in text


def test_intermediate_target_is_not_a_win():
    state = cd.apply(cd.CountdownState((10, 24, 3)), (24, "+", 10))  # 34 reached, but 3 is left over.
    assert not cd.is_terminal(state) and not cd.is_win(state, 34)


@pytest.mark.parametrize("move", [(5, "-", 7), (7, "/", 2), (9, "+", 1), (5, "+", 5), (5, "%", 1)])
def test_apply_rejects_illegal_moves(move):
    with pytest.raises(ValueError):
        cd.apply(cd.CountdownState((5, 7, 2)), move)


def test_states_compare_in_order_and_key_by_multiset():
    a = cd.apply(cd.CountdownState((1, 2, 3, 4)), (3, "+", 1))  # [2, 4, 4]
    d = cd.CountdownState((4, 2, 4), steps=((9, "-", 5, 4),))
    assert a.numbers == (2, 4, 4) and a != d and a.key == d.key == (2, 4, 4)
    assert cd.CountdownState((4, 2, 4)) == d and hash(cd.CountdownState((4, 2, 4))) == hash(d)


def test_numpy_integers_are_numbers_and_booleans_are_not():
    np = pytest.importorskip("numpy")
    instance = cd.CountdownInstance(np.array([7, 60, 27]), np.int64(80))
    instance.validate(require_solvable=True)
    assert instance.numbers == (7, 60, 27) and type(instance.numbers[0]) is int and type(instance.target) is int
    with pytest.raises(ValueError, match="numbers"):
        cd.CountdownInstance((True, 60, 27), 80).validate()
    with pytest.raises(ValueError, match="target"):
        cd.CountdownInstance((7, 60, 27), True).validate()


@pytest.mark.parametrize("num_numbers", [3, 5, 7])
def test_solve_and_check_solution_on_generated_instances(num_numbers):
    for instance in cd.generate(num_numbers, 10, seed=num_numbers):
        steps = cd.solve(instance)
        assert steps is not None and len(steps) == num_numbers - 1
        assert cd.check_solution(instance, steps)
        a, op, b, result = steps[-1]
        assert not cd.check_solution(instance, steps[:-1] + [(a, op, b, result + 1)])  # Wrong arithmetic.
        assert not cd.check_solution(instance, steps[:-1])  # Two numbers left.
    instance = cd.CountdownInstance((4, 6, 10), 34)
    assert not cd.check_solution(instance, [(6, "*", 5, 30), (30, "+", 4, 34)])  # 5 is not available.
    assert not cd.check_solution(instance, [(6, "*", 4, 24), (24, "+", 24, 48)])  # 24 used twice.
    assert not cd.check_solution(instance, [("x",)])


def test_unsolvable_instance():
    instance = cd.CountdownInstance((1, 1, 1), 100)
    instance.validate()  # In range ...
    assert cd.solve(instance) is None
    with pytest.raises(ValueError, match="unsolvable"):  # ... but rejected when solvability is required.
        instance.validate(require_solvable=True)
    assert cd.solve(cd.CountdownInstance((2, 3, 7, 11, 13, 17), 99)) is not None


@pytest.mark.parametrize("numbers, target, field", [
    ((1, 2), 20, "numbers"), ((1, 2, 3, 4, 5, 6, 7, 8, 9), 20, "numbers"), ((0, 2, 3), 20, "numbers"),
    ((1, 2, 100), 20, "numbers"), ((1, 2, 3), 9, "target"), ((1, 2, 3), 101, "target"),
])
def test_validate_rejects_out_of_range(numbers, target, field):
    with pytest.raises(ValueError, match=field):
        cd.CountdownInstance(numbers, target).validate()


@pytest.mark.parametrize("num_numbers", [3, 5, 7])
def test_generate_is_deterministic_deduplicated_and_in_range(num_numbers):
    instances = cd.generate(num_numbers, 15, seed=7)
    assert instances == cd.generate(num_numbers, 15, seed=7)
    assert instances != cd.generate(num_numbers, 15, seed=8)
    assert len({(tuple(sorted(i.numbers)), i.target) for i in instances}) == 15
    for instance in instances:
        instance.validate()
        assert len(instance.numbers) == num_numbers
        assert all(1 <= n <= 99 for n in instance.numbers) and 10 <= instance.target <= 100


def test_generate_rejects_bad_arguments():
    for num_numbers in (2, 9):
        with pytest.raises(ValueError, match="num_numbers"):
            cd.generate(num_numbers, 1, seed=0)
    with pytest.raises(ValueError, match="max_target"):
        cd.generate(3, 1, seed=0, max_target=150)


def test_heuristic_value_exact_for_small_states():
    assert cd.heuristic_value(cd.CountdownState((30, 4)), 34) == 1.0  # One move from the target.
    assert cd.heuristic_value(cd.CountdownState((34,)), 34) == 1.0
    hopeless = cd.heuristic_value(cd.CountdownState((1, 1)), 100)
    near_miss = cd.heuristic_value(cd.CountdownState((30, 3)), 34)  # Closest reachable value: 33.
    assert 0.0 < hopeless < 0.2 < near_miss < 1.0
    assert cd.heuristic_value(cd.CountdownState((2, 3, 5, 7)), 47) == 1.0  # 7 * 2 * 3 + 5.


def test_heuristic_value_is_sound_and_bounded_for_large_states():
    for state, target in _random_states(cd.generate(7, 4, seed=3), seed=4):
        value = cd.heuristic_value(state, target)
        assert 0.0 <= value <= 1.0
        if value == 1.0:  # 1.0 is only ever given to states that can still win.
            assert cd.solve(cd.CountdownInstance(state.numbers, target)) is not None


def test_heuristic_priors_sum_to_one_and_favour_the_winning_move():
    state = cd.CountdownState((30, 8, 2))  # Only 30 + 8 / 2 reaches 34.
    moves = cd.legal_moves(state)
    priors = cd.heuristic_priors(state, 34, moves)
    assert len(priors) == len(moves) and sum(priors) == pytest.approx(1.0)
    best = moves[priors.index(max(priors))]
    assert cd.solve(cd.CountdownInstance(cd.apply(state, best).numbers, 34)) is not None
    assert cd.heuristic_priors(state, 34, []) == []


def test_greedy_search_with_heuristic_solves_most_three_number_instances():
    instances = cd.generate(3, 20, seed=11)
    wins = 0
    for instance in instances:
        state = cd.initial_state(instance)
        while not cd.is_terminal(state):
            children = [cd.apply(state, move) for move in cd.legal_moves(state)]
            state = max(children, key=lambda child: cd.heuristic_value(child, instance.target))
        wins += cd.is_win(state, instance.target)
    assert wins >= 16
