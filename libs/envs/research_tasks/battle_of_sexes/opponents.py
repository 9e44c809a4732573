"""The private pool of column players (who prefer (1, 1)); history: (own, other) pairs, oldest first."""


def stubborn(history, rng):
    return 1


def accommodating(history, rng):
    return 0


def copy_last(history, rng):
    return history[-1][1] if history else 1


def noisy_copy(history, rng):
    """Copies the row player's last move 80% of the time, else insists on 1."""
    if not history or rng.random() < 0.2:
        return 1
    return history[-1][1]


def random_player(history, rng):
    return int(rng.random() < 0.5)


def alternator(history, rng):
    return 1 - len(history) % 2


def majority(history, rng):
    """Plays the row player's most frequent move so far (1 on a tie)."""
    zeros = sum(1 for _, other in history if other == 0)
    return 0 if zeros * 2 > len(history) else 1


def yield_after_conflicts(history, rng):
    """Insists on 1 until two mismatches in a row, then gives in to 0 for good."""
    conflicts = any(history[i][0] != history[i][1] and history[i - 1][0] != history[i - 1][1]
                    for i in range(1, len(history)))
    return 0 if conflicts else 1


def tit_for_tat_preference(history, rng):
    """Plays 1, but answers a row 0 at a conflict by playing 0 next (meets the row player once)."""
    if history and history[-1] == (1, 0):
        return 0
    return 1


POOL = {f.__name__: f for f in (stubborn, accommodating, copy_last, noisy_copy, random_player, alternator,
                                majority, yield_after_conflicts, tit_for_tat_preference)}
