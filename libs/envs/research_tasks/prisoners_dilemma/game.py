"""Iterated prisoner's dilemma (MLGym's payoffs): the rules and a few example opponents.

Moves: 0 = cooperate, 1 = defect. A history is a list of (own move, other's move) pairs, oldest first.
An opponent is `opponent(history, rng) -> move` with `rng` a random.Random.
"""

from taskkit import binary_move as check_move  # noqa: F401 - part of the rules (taskkit.py is beside this file)

ROUNDS = 20
# The row player's payoff for (row move, column move): mutual cooperation 3, sucker 0, temptation 5,
# mutual defection 1.
PAYOFFS = {(0, 0): 3, (0, 1): 0, (1, 0): 5, (1, 1): 1}


def payoff(row_move: int, col_move: int) -> float:
    return PAYOFFS[row_move, col_move]


def tit_for_tat(history, rng):
    return history[-1][1] if history else 0


def always_defect(history, rng):
    return 1


def coin_flip(history, rng):
    return int(rng.random() < 0.5)


EXAMPLES = {"tit_for_tat": tit_for_tat, "always_defect": always_defect, "coin_flip": coin_flip}
