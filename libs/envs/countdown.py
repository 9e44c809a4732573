"""Countdown puzzle (LLM-First Search, arXiv 2506.05213): combine numbers with + - * / to hit a target.

A state is the list of remaining numbers plus the steps taken so far. A move picks two remaining
numbers and an operation; both are removed and the result is appended, as in the paper's code.
Subtraction takes the smaller number from the larger and division must be exact. As in the paper, the
game is won when exactly one number is left and it equals the target, so every number must be used.

`legal_moves` branches as the paper does: every pair of positions, each with +, *, - and (when exact)
/, so a state with repeated numbers has repeated children. `merge_equivalent=True` keeps one move per
resulting multiset instead (this codebase's earlier, smaller branching).
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers as numbers_abc
import random
from dataclasses import dataclass, field

Move = tuple[int, str, int]  # (a, op, b), meaning "a op b".
Step = tuple[int, str, int, int]  # (a, op, b, result).

OPS = "+-*/"
MIN_NUMBERS, MAX_NUMBERS = 3, 8
MIN_NUMBER, MAX_NUMBER = 1, 99
MIN_TARGET, MAX_TARGET = 10, 100
EXACT_HEURISTIC_MAX_NUMBERS = 4  # Above this, heuristic_value uses a bounded search.
HEURISTIC_EVAL_BUDGET = 48  # Exact four-number evaluations per bounded heuristic call.


@dataclass(frozen=True)
class CountdownInstance:
    """A puzzle: the starting numbers and the target."""

    numbers: tuple[int, ...]
    target: int

    def __post_init__(self):
        object.__setattr__(self, "numbers", tuple(_as_int(n) for n in self.numbers))
        object.__setattr__(self, "target", _as_int(self.target))

    def validate(self, require_solvable: bool = False) -> None:
        """Raises ValueError if the instance is out of range (or unsolvable, when asked)."""
        if not MIN_NUMBERS <= len(self.numbers) <= MAX_NUMBERS:
            raise ValueError(f"numbers must hold {MIN_NUMBERS}..{MAX_NUMBERS} values, got {len(self.numbers)}: "
                             f"{self.numbers}")
        for number in self.numbers:
            if isinstance(number, bool) or not isinstance(number, int) or not MIN_NUMBER <= number <= MAX_NUMBER:
                raise ValueError(f"numbers must be integers in {MIN_NUMBER}..{MAX_NUMBER}, got {number!r}")
        if (isinstance(self.target, bool) or not isinstance(self.target, int)
                or not MIN_TARGET <= self.target <= MAX_TARGET):
            raise ValueError(f"target must be an integer in {MIN_TARGET}..{MAX_TARGET}, got {self.target!r}")
        if require_solvable and solve(self) is None:
            raise ValueError(f"instance is unsolvable: numbers {self.numbers} cannot make target {self.target}")


def _as_int(value):
    """numpy and other integers become int; anything else (booleans included) is left for validate()."""
    if isinstance(value, numbers_abc.Integral) and not isinstance(value, bool):
        return int(value)
    return value


@dataclass(frozen=True)
class CountdownState:
    """Remaining numbers (untouched ones in their order, results appended) and the steps so far.

    Equality and hashing use only `numbers`; `key` is the multiset, equal for states that hold the
    same numbers in another order. `steps` is kept for display and for replaying a solution.
    """

    numbers: tuple[int, ...]
    steps: tuple[Step, ...] = field(default=(), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "numbers", tuple(self.numbers))
        object.__setattr__(self, "steps", tuple(tuple(step) for step in self.steps))

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(sorted(self.numbers))


def _combine(a: int, op: str, b: int) -> int | None:
    """The result of `a op b`, or None when the operation is not allowed."""
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b if a >= b else None
    if op == "/":
        return a // b if b != 0 and a % b == 0 else None
    raise ValueError(f"op must be one of {OPS!r}, got {op!r}")


def _remove_pair(numbers: tuple[int, ...], a: int, b: int) -> list[int] | None:
    """`numbers` without one `a` and one `b`, or None if they are not both available."""
    rest = list(numbers)
    for value in (a, b):
        if value not in rest:
            return None
        rest.remove(value)
    return rest


def initial_state(instance: CountdownInstance) -> CountdownState:
    instance.validate()
    return CountdownState(instance.numbers)


def legal_moves(state: CountdownState, merge_equivalent: bool = False) -> list[Move]:
    """Moves in the paper's order: pairs of positions (i < j), then +, *, - and exact /.

    + and * keep the pair's order; - and / put the larger number first, so - never goes negative.
    With `merge_equivalent`, only the first move leading to each resulting multiset is kept.
    """
    moves, seen = [], set()
    numbers = state.numbers
    for i, j in itertools.combinations(range(len(numbers)), 2):
        x, y = numbers[i], numbers[j]
        big, small = max(x, y), min(x, y)
        pair = [(x, "+", y), (x, "*", y), (big, "-", small)]
        if small != 0 and big % small == 0:
            pair.append((big, "/", small))
        for a, op, b in pair:
            if merge_equivalent:
                rest = numbers[:i] + numbers[i + 1:j] + numbers[j + 1:]
                key = tuple(sorted(rest + (_combine(a, op, b),)))
                if key in seen:
                    continue
                seen.add(key)
            moves.append((a, op, b))
    return moves


def apply(state: CountdownState, move: Move) -> CountdownState:
    """The state after `move`; raises ValueError for an unavailable number or illegal arithmetic."""
    a, op, b = move
    result = _combine(a, op, b)
    if result is None:
        raise ValueError(f"illegal operation {a} {op} {b}: '-' must stay non-negative and '/' must be exact")
    rest = _remove_pair(state.numbers, a, b)
    if rest is None:
        raise ValueError(f"move {a} {op} {b} uses numbers not available in {list(state.numbers)}")
    return CountdownState(tuple(rest) + (result,), state.steps + ((a, op, b, result),))


def is_terminal(state: CountdownState) -> bool:
    return len(state.numbers) <= 1


def is_win(state: CountdownState, target: int) -> bool:
    """True when exactly one number is left and it equals the target (the paper's rule)."""
    return len(state.numbers) == 1 and state.numbers[0] == target


def describe_move(move: Move) -> str:
    a, op, b = move
    result = _combine(a, op, b)
    return f"{a} {op} {b} = {result if result is not None else '?'}"


def describe_state(state: CountdownState, target: int) -> str:
    """Prompt text: target, remaining numbers and the operations so far."""
    lines = [f"Target: {target}", f"Remaining numbers: {list(state.numbers)}"]
    if state.steps:
        lines.append("Operations so far: " + ", ".join(f"{a} {op} {b} = {r}" for a, op, b, r in state.steps))
    else:
        lines.append("Operations so far: none")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Reachable values.


@functools.lru_cache(maxsize=1 << 13)
def _reachable(numbers: tuple[int, ...]) -> frozenset[int]:
    """Every value that uses all of `numbers` (sorted, at most 3 for cheap caching)."""
    if len(numbers) == 1:
        return frozenset(numbers)
    values = set()
    for left, right in _splits(numbers):
        for x in _reachable(left):
            for y in _reachable(right):
                values.update(_pair_results(x, y))
    return frozenset(values)


def _pair_results(x: int, y: int) -> list[int]:
    a, b = (x, y) if x >= y else (y, x)
    results = [a + b, a * b, a - b]
    if b != 0 and a % b == 0:
        results.append(a // b)
    return results


def _splits(numbers: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Distinct ways to split the multiset into two non-empty parts (each part sorted)."""
    splits, seen = [], set()
    n = len(numbers)
    for mask in range(1, 1 << (n - 1)):  # Index n-1 always lands on the right: each split once.
        left = tuple(numbers[i] for i in range(n) if mask >> i & 1)
        right = tuple(numbers[i] for i in range(n) if not mask >> i & 1)
        key = (left, right) if left <= right else (right, left)
        if key not in seen:
            seen.add(key)
            splits.append(key)
    return splits


@functools.lru_cache(maxsize=1 << 16)
def _closest_distance(numbers: tuple[int, ...], target: int) -> int:
    """min |v - target| over values v using all of `numbers` (sorted, at most 4); exact."""
    if len(numbers) <= 3:
        return min(abs(v - target) for v in _reachable(numbers))
    best = math.inf
    for left, right in _splits(numbers):
        right_values = _reachable(right)
        for x in _reachable(left):
            for y in right_values:
                for v in _pair_results(x, y):
                    d = abs(v - target)
                    if d < best:
                        if d == 0:
                            return 0
                        best = d
    return int(best)


# ---------------------------------------------------------------------------------------------------------
# Exhaustive solver, checker and generator.


def solve(instance: CountdownInstance) -> list[Step] | None:
    """A list of steps reaching the target, or None when the instance is unsolvable.

    Depth-first search over sorted multisets with a memo of dead ends; multisets of four or fewer
    numbers are decided by the exact reachable-value check before being expanded. Ranges are not
    checked (call `instance.validate()` for that), only the count of numbers.
    """
    if len(instance.numbers) > MAX_NUMBERS:
        raise ValueError(f"solve supports at most {MAX_NUMBERS} numbers, got {len(instance.numbers)}")
    dead: set[tuple[int, ...]] = set()
    target = instance.target

    def search(state: CountdownState) -> CountdownState | None:
        if is_terminal(state):
            return state if is_win(state, target) else None
        key = state.key
        if key in dead:
            return None
        if len(key) <= EXACT_HEURISTIC_MAX_NUMBERS and _closest_distance(key, target) != 0:
            dead.add(key)
            return None
        for move in legal_moves(state, merge_equivalent=True):
            found = search(apply(state, move))
            if found is not None:
                return found
        dead.add(key)
        return None

    found = search(CountdownState(instance.numbers))
    return list(found.steps) if found is not None else None


def check_solution(instance: CountdownInstance, steps: list[Step]) -> bool:
    """True iff `steps` replay legally from the instance's numbers and end on the target alone."""
    state = CountdownState(instance.numbers)
    for step in steps:
        try:
            a, op, b, result = step
            state = apply(state, (a, op, b))
        except (ValueError, TypeError):
            return False
        if state.steps[-1][3] != result:
            return False
    return is_win(state, instance.target)


def generate(num_numbers: int, count: int, seed: int, min_target: int = MIN_TARGET,
             max_target: int = MAX_TARGET) -> list[CountdownInstance]:
    """`count` distinct solvable instances, as in the paper's generator; same seed, same list.

    Numbers are uniform in 1..max_target-1 and the target uniform in min_target..max_target. Instances
    are deduplicated by (sorted numbers, target) and stored with sorted numbers.
    """
    if not MIN_NUMBERS <= num_numbers <= MAX_NUMBERS:
        raise ValueError(f"num_numbers must be in {MIN_NUMBERS}..{MAX_NUMBERS}, got {num_numbers}")
    if not MIN_TARGET <= min_target <= max_target <= MAX_TARGET:
        raise ValueError(f"need {MIN_TARGET} <= min_target <= max_target <= {MAX_TARGET}, "
                         f"got min_target={min_target}, max_target={max_target}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    rng = random.Random(seed)
    instances, seen = [], set()
    max_attempts = 1000 * count + 1000
    for _ in range(max_attempts):
        if len(instances) == count:
            return instances
        numbers = tuple(sorted(rng.randint(1, max_target - 1) for _ in range(num_numbers)))
        target = rng.randint(min_target, max_target)
        if (numbers, target) in seen:
            continue
        seen.add((numbers, target))
        instance = CountdownInstance(numbers, target)
        if solve(instance) is not None:
            instances.append(instance)
    if len(instances) == count:
        return instances
    raise ValueError(f"found only {len(instances)} of {count} distinct solvable instances in {max_attempts} draws")


# ---------------------------------------------------------------------------------------------------------
# Heuristic value (the offline stand-in for an LLM's value estimate).


def _distance_to_value(distance: float) -> float:
    return 1.0 if distance == 0 else 0.9 / (1.0 + distance / 10.0)


@functools.lru_cache(maxsize=1 << 16)
def _bounded_distance(numbers: tuple[int, ...], target: int) -> int:
    """An upper bound on the closest-value distance for more than four numbers.

    Spreads a budget of exact four-number evaluations over reduction paths (moves in a fixed shuffled
    order), stopping early on an exact hit. Every distance found is achievable.
    """
    best = math.inf

    def visit(state: CountdownState, budget: int) -> int:
        nonlocal best
        if len(state.numbers) <= EXACT_HEURISTIC_MAX_NUMBERS:
            best = min(best, _closest_distance(state.key, target))
            return 1
        moves = legal_moves(state, merge_equivalent=True)
        # A fixed pseudo-random order (seeded by the state) so a small budget covers varied pairs and ops.
        random.Random(f"{state.key}/{target}").shuffle(moves)
        used = 0
        for k, move in enumerate(moves[:budget]):
            share = max(1, (budget - used) // (min(budget, len(moves)) - k))
            used += visit(apply(state, move), share)
            if best == 0 or used >= budget:
                break
        return used

    visit(CountdownState(numbers), HEURISTIC_EVAL_BUDGET)
    return int(best)


def heuristic_value(state: CountdownState, target: int) -> float:
    """HEURISTIC value in [0, 1] (no LLM): the offline stand-in for an LLM's value estimate.

    1.0 when the target is reachable from the remaining numbers (all used); otherwise
    0.9 / (1 + d / 10), where d is the distance from the target to the closest reachable value. With
    four or fewer numbers the search is exhaustive; with more it is bounded (see `_bounded_distance`),
    so 1.0 is always sound but a reachable target can occasionally be missed.
    """
    if not state.numbers:
        return 0.0
    if len(state.numbers) <= EXACT_HEURISTIC_MAX_NUMBERS:
        return _distance_to_value(_closest_distance(state.key, target))
    return _distance_to_value(_bounded_distance(state.key, target))


def heuristic_priors(state: CountdownState, target: int, moves: list[Move],
                     temperature: float = 0.1) -> list[float]:
    """Softmax (at `temperature`) over the heuristic values of the children reached by `moves`."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    values = [heuristic_value(apply(state, move), target) for move in moves]
    peak = max(values, default=0.0)
    weights = [math.exp((value - peak) / temperature) for value in values]
    total = math.fsum(weights)
    return [weight / total for weight in weights]
