"""Baseline strategy for Colonel Blotto (the task's baseline; improve it).

`row_strategy(history)` gets the list of (your allocation, opponent's allocation) pairs so far, oldest
first, and returns 6 non-negative integers summing to 120. `python strategy.py` prints its scores
against ./data/game.py's example opponents.
"""

import random

FIELDS, SOLDIERS = 6, 120
# Each round: pick FOCUS random battlefields and split the soldiers over them with random weights
# (Dirichlet with parameter CONCENTRATION: small = lopsided, large = nearly even).
FOCUS = 6  # tune: int(2, 6)
CONCENTRATION = 0.5  # tune: log(0.1, 10.0)


def row_strategy(history):
    fields = random.sample(range(FIELDS), FOCUS)
    weights = [random.gammavariate(CONCENTRATION, 1.0) + 1e-9 for _ in fields]
    raw = [w * SOLDIERS / sum(weights) for w in weights]
    allocation = [0] * FIELDS
    for field, share in zip(fields, raw):
        allocation[field] = int(share)
    for k in range(SOLDIERS - sum(allocation)):  # hand out what rounding left over
        allocation[fields[k % FOCUS]] += 1
    return allocation


if __name__ == "__main__":
    import sys

    sys.path.insert(0, "data")
    import taskkit  # the game's harness, in ./data

    taskkit.self_check(row_strategy)
