"""Iterated battle of the sexes (MLGym's payoffs): the rules and a few example opponents.

Moves: 0 or 1. Both players gain only when they match; the row player prefers (0, 0), the column
player (1, 1). A history is a list of (own move, other's move) pairs, oldest first. An opponent is
`opponent(history, rng) -> move` with `rng` a random.Random.
"""

from taskkit import binary_move as check_move  # noqa: F401 - part of the rules (taskkit.py is beside this file)

ROUNDS = 10
# The row player's payoff for (row move, column move); the column player gets 1 at (0, 0), 2 at (1, 1).
PAYOFFS = {(0, 0): 2, (1, 1): 1, (0, 1): 0, (1, 0): 0}


def payoff(row_move: int, col_move: int) -> float:
    return PAYOFFS[row_move, col_move]


def stubborn(history, rng):
    return 1


def copy_last(history, rng):
    """Plays the row player's previous move (its own favourite first)."""
    return history[-1][1] if history else 1


def coin_flip(history, rng):
    return int(rng.random() < 0.5)


EXAMPLES = {"stubborn": stubborn, "copy_last": copy_last, "coin_flip": coin_flip}
