"""Times `solve(num_vars, clauses)` of the submitted solver.py on the hidden test instances.

Metrics: {"time_s": total solving time, "solved": instances}. Any wrong or missing assignment, or an
exception, rejects the submission (exit code 3), so speed only counts with every answer correct.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # taskkit.py, also where the project is not importable
import taskkit  # noqa: E402

_clock = time.perf_counter  # bound before the submission is imported, so patching the module cannot fool it


def check(values, instance) -> None:
    num_vars = instance["num_vars"]
    if not isinstance(values, (list, tuple)) or len(values) != num_vars:
        raise taskkit.Invalid(f"solve() must return a list of {num_vars} booleans, got {str(values)[:80]}")
    try:
        values = [bool(v) for v in values]
    except (TypeError, ValueError):
        raise taskkit.Invalid("solve() must return booleans") from None
    if not all(any((lit > 0) == values[abs(lit) - 1] for lit in clause) for clause in instance["clauses"]):
        raise taskkit.Invalid("solve() returned an assignment that leaves a clause unsatisfied")


def main():
    args = taskkit.parse_args()
    instances = json.loads((args.private_dir / "test_instances.json").read_text())
    with taskkit.evaluation():
        solver = taskkit.load_module(args.submission_dir / "solver.py", "submitted_solver")
        solve = taskkit.function(solver, "solve")
        total = 0.0
        for i, instance in enumerate(instances):
            start = _clock()
            values = taskkit.guarded("solve()", solve, instance["num_vars"], [list(c) for c in instance["clauses"]])
            total += _clock() - start
            try:
                check(values, instance)
            except taskkit.Invalid as e:
                raise taskkit.Invalid(f"test instance {i}: {e}") from None
    taskkit.report({"time_s": round(total, 4), "solved": len(instances)})


if __name__ == "__main__":
    main()
