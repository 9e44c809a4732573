"""Baseline 3-SAT solver: DPLL with unit propagation (the task's baseline; make it faster).

The evaluator imports this file and calls `solve(num_vars, clauses)` on each hidden instance. Running it
(`python solver.py`) solves the public development instances in ./data/instances.json, checks the answers
and prints the time taken.
"""

import json
import sys
import time
from collections import Counter

# Which literal to branch on: the first literal of the first clause, the most frequent literal, or the
# Jeroslow-Wang score (frequency weighted by 2^-clause length). Then which value to try first.
BRANCHING = "first"  # tune: ["first", "most_frequent", "jeroslow_wang"]
POLARITY = "true"  # tune: ["true", "false", "literal"]

def _assign(clauses, literal):
    """The clauses with `literal` set true, or None on an empty clause (a conflict)."""
    out = []
    for clause in clauses:
        if literal in clause:
            continue
        if -literal in clause:
            clause = tuple(lit for lit in clause if lit != -literal)
            if not clause:
                return None
        out.append(clause)
    return out


def _branch_literal(clauses):
    if BRANCHING == "first":
        literal = clauses[0][0]
    else:
        scores = Counter()
        for clause in clauses:
            weight = 1.0 if BRANCHING == "most_frequent" else 2.0 ** -len(clause)
            for lit in clause:
                scores[lit] += weight
        literal = max(scores, key=scores.get)
    if POLARITY == "true":
        return abs(literal)
    return -abs(literal) if POLARITY == "false" else literal


def _dpll(clauses, trail):
    while True:
        unit = next((clause[0] for clause in clauses if len(clause) == 1), None)
        if unit is None:
            break
        clauses = _assign(clauses, unit)
        if clauses is None:
            return None
        trail = trail + [unit]
    if not clauses:
        return trail
    literal = _branch_literal(clauses)
    for lit in (literal, -literal):
        reduced = _assign(clauses, lit)
        if reduced is not None and (found := _dpll(reduced, trail + [lit])) is not None:
            return found
    return None


def solve(num_vars, clauses):
    """A satisfying assignment (a list of num_vars booleans, variable v at index v - 1), or None."""
    trail = _dpll([tuple(clause) for clause in clauses], [])
    if trail is None:
        return None
    values = [False] * num_vars
    for lit in trail:
        values[abs(lit) - 1] = lit > 0
    return values


def main():
    instances = json.loads(open("data/instances.json").read())
    start = time.perf_counter()
    for i, instance in enumerate(instances):
        values = solve(instance["num_vars"], instance["clauses"])
        ok = values is not None and all(any((lit > 0) == values[abs(lit) - 1] for lit in clause)
                                        for clause in instance["clauses"])
        if not ok:
            sys.exit(f"instance {i}: no satisfying assignment found")
    print(f"solved {len(instances)} development instances in {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
