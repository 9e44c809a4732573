"""Random satisfiable 3-SAT instances with a planted solution (deterministic in the seed).

Each clause has three distinct variables with random signs and is kept only if the hidden assignment
satisfies it, so every instance is satisfiable. Public: a development set; private: the test set.
"""

import json
import random
from pathlib import Path

NUM_VARS = 80
CLAUSE_RATIO = 4.26  # the hard region of random 3-SAT
DEV_INSTANCES, TEST_INSTANCES = 10, 20


def planted_instance(rng: random.Random, num_vars: int, num_clauses: int) -> dict:
    hidden = [rng.random() < 0.5 for _ in range(num_vars)]
    clauses = []
    while len(clauses) < num_clauses:
        variables = rng.sample(range(1, num_vars + 1), 3)
        clause = [v if rng.random() < 0.5 else -v for v in variables]
        if any((lit > 0) == hidden[abs(lit) - 1] for lit in clause):
            clauses.append(clause)
    return {"num_vars": num_vars, "clauses": clauses}


def instances(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    return [planted_instance(rng, NUM_VARS, round(CLAUSE_RATIO * NUM_VARS)) for _ in range(count)]


def prepare(public_dir: Path, private_dir: Path, seed: int) -> None:
    (Path(public_dir) / "instances.json").write_text(json.dumps(instances(seed, DEV_INSTANCES)))
    (Path(private_dir) / "test_instances.json").write_text(json.dumps(instances(seed + 1, TEST_INSTANCES)))
