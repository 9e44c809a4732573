"""The private pool of Colonel Blotto opponents (history: (own allocation, other's allocation) pairs)."""

FIELDS, SOLDIERS = 6, 120


def _spread(weights):
    raw = [w * SOLDIERS / sum(weights) for w in weights]
    out = [int(r) for r in raw]
    for i in sorted(range(FIELDS), key=lambda i: out[i] - raw[i])[:SOLDIERS - sum(out)]:
        out[i] += 1
    return out


def even(history, rng):
    return [20] * FIELDS


def uniform_random(history, rng):
    return _spread([rng.random() for _ in range(FIELDS)])


def dirichlet_spiky(history, rng):
    return _spread([rng.gammavariate(0.3, 1.0) + 1e-9 for _ in range(FIELDS)])


def three_fields(history, rng):
    chosen = rng.sample(range(FIELDS), 3)
    return [40 if i in chosen else 0 for i in range(FIELDS)]


def four_fields(history, rng):
    chosen = rng.sample(range(FIELDS), 4)
    return [30 if i in chosen else 0 for i in range(FIELDS)]


def two_heavy(history, rng):
    out = [50, 50, 5, 5, 5, 5]
    rng.shuffle(out)
    return out


def counter_last(history, rng):
    """Outbids the row player's last allocation by one on its four cheapest battlefields."""
    if not history:
        return uniform_random(history, rng)
    last = history[-1][1]
    cheapest = sorted(range(FIELDS), key=lambda i: (last[i], rng.random()))[:4]
    out = [0] * FIELDS
    for i in cheapest:
        out[i] = last[i] + 1
    spare = SOLDIERS - sum(out)
    if spare < 0:
        return uniform_random(history, rng)
    for k in range(spare):
        out[cheapest[k % 4]] += 1
    return out


def repeat_winner(history, rng):
    """Plays its own last allocation again after a won round, else a fresh random one."""
    if history:
        own, other = history[-1]
        if sum(a > b for a, b in zip(own, other)) > sum(a < b for a, b in zip(own, other)):
            return list(own)
    return uniform_random(history, rng)


POOL = {f.__name__: f for f in (even, uniform_random, dirichlet_spiky, three_fields, four_fields, two_heavy,
                                counter_last, repeat_winner)}
