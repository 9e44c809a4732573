"""Colonel Blotto (MLGym's variant): the rules and a few example opponents.

Each round both players split 120 soldiers over 6 battlefields; a battlefield goes to whoever sends
more (a tie to neither); whoever takes more battlefields wins the round (+1 / -1; 0 on a tie). A move
is a list of 6 non-negative integers summing to 120. A history is a list of (own allocation, other's
allocation) pairs, oldest first. An opponent is `opponent(history, rng) -> allocation`.
"""

FIELDS, SOLDIERS = 6, 120
ROUNDS = 10


def check_move(move) -> tuple[int, ...]:
    try:
        allocation = tuple(int(x) for x in move)
        exact = all(a == x for a, x in zip(allocation, move))
    except (TypeError, ValueError):
        raise ValueError(f"an allocation is a list of {FIELDS} integers") from None
    if len(allocation) != FIELDS or not exact or min(allocation) < 0 or sum(allocation) != SOLDIERS:
        raise ValueError(f"an allocation is {FIELDS} non-negative integers summing to {SOLDIERS}")
    return allocation


def payoff(row_move, col_move) -> float:
    won = sum(a > b for a, b in zip(row_move, col_move))
    lost = sum(a < b for a, b in zip(row_move, col_move))
    return float(won > lost) - float(won < lost)


def spread(weights, total=SOLDIERS) -> list[int]:
    """Integer allocation proportional to `weights`, summing to `total` (largest remainders)."""
    raw = [w * total / sum(weights) for w in weights]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[:total - sum(out)]:
        out[i] += 1
    return out


def even(history, rng):
    return [SOLDIERS // FIELDS] * FIELDS


def uniform_random(history, rng):
    return spread([rng.random() for _ in range(FIELDS)])


def three_fields(history, rng):
    chosen = rng.sample(range(FIELDS), 3)
    return [SOLDIERS // 3 if i in chosen else 0 for i in range(FIELDS)]


EXAMPLES = {"even": even, "uniform_random": uniform_random, "three_fields": three_fields}
