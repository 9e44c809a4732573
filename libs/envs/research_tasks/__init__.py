"""Research tasks (MLGym-style, offline): folders an agent's code is run and scored in.

Each task is a folder `libs/envs/research_tasks/<name>/` holding:

- `task.json`: name (= the folder), title, metric, lower_is_better, time_limit_s (the solution's command),
  eval_time_limit_s, memory_mb, command (e.g. ["python", "train.py"]; "python" is the running
  interpreter), editable (the starter files an agent edits), submission (what the solution leaves in its
  working directory), data_version and seed (the data's cache key), baseline_range (optional [low, high]),
  needs_project (optional: the solution and evaluator import the project's code).
- `description.md`: the task, the data layout under ./data, the submission format, the metric.
- `starter/`: the starter code, which is the baseline. It runs with its folder as working directory, reads
  the public data from `./data/`, and writes its submission into the working directory. Its tunable
  hyperparameters are marked (`NAME = value  # tune: [...]`, see `tunables`).
- `evaluate.py`: `python evaluate.py --submission_dir=DIR --private_dir=DIR [--public_dir=DIR]` prints ONE
  JSON dict of metrics as its last stdout line; a missing or invalid submission exits with code 3 and a
  one-line reason on stderr. It may run submitted code (strategies, policies, solvers). `evaluate` runs it
  in the submission dir with the task folders at `.tasks/`, the private data at `.private/` and the public
  data at `data/`; it imports only `taskkit.py` (beside the task folders), numpy and the task's packages,
  unless task.json says `needs_project` (then `libs/`, `experiments/` and `configs/` must be visible).
- `prepare.py`: `prepare(public_dir, private_dir, seed)` writes the data deterministically, with no network.
  Private data (test labels, opponent pools, evaluation seeds) goes only to private_dir.

`prepare_data` caches the data under the project's data dir; `run_solution` / `evaluate` take an
injectable runner (default `local_runner`: UNSANDBOXED, for baselines and tests only).
"""

from libs.envs.research_tasks.tasks import (EXIT_INVALID, EvaluationError, InvalidSubmission, ResearchTask,
                                            RunResult, Runner, RunSpec, SolutionFailed, TaskData, evaluate,
                                            list_tasks, load_task, load_task_dir, local_runner, prepare_data,
                                            prepare_workdir, run_baseline, run_solution)
from libs.envs.research_tasks.tunables import Range, Tunable, TunableError, apply_tunable, parse_tunables

__all__ = [
    "EXIT_INVALID", "EvaluationError", "InvalidSubmission", "Range", "ResearchTask", "RunResult", "RunSpec",
    "Runner", "SolutionFailed", "TaskData", "Tunable", "TunableError", "apply_tunable", "evaluate",
    "list_tasks", "load_task", "load_task_dir", "local_runner", "parse_tunables", "prepare_data",
    "prepare_workdir", "run_baseline", "run_solution",
]
