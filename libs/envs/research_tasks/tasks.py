"""Research tasks as folders: loading, data preparation, running a solution, and scoring it.

A task is a folder `libs/envs/research_tasks/<name>/` (see this package's docstring for its files). The
runner that executes code is injectable: `run_solution` and `evaluate` hand a `RunSpec` to it and get a
`RunResult` back. The default, `local_runner`, is a plain subprocess with a timeout and NO isolation: it
is for the shipped baselines and the tests only; generated code goes through the sandbox (`libs/sandbox`),
through a runner that adapts the same `RunSpec` (views, limits, collected files) to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from libs.envs.research_tasks import tunables as tunables_lib
from libs.train.errors import UserError

TASKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TASKS_DIR.parents[2]
PROJECT_DIRS = (REPO_ROOT / "libs", REPO_ROOT / "experiments", REPO_ROOT / "configs")
# Where the evaluator sees the task folders (taskkit.py beside them) and the private data, inside its cwd.
_TASKS_VIEW, _PRIVATE_VIEW = ".tasks", ".private"
EXIT_INVALID = 3  # evaluate.py's exit code for a missing or invalid submission (one-line reason on stderr)
_FILES = ("task.json", "description.md", "evaluate.py", "prepare.py", "starter")
_DONE = ".prepared.json"


class InvalidSubmission(UserError):
    """The evaluator rejected the submission (missing, malformed, wrong answers, too slow); one line."""


class EvaluationError(RuntimeError):
    """The evaluator itself failed (crash, no JSON line, no metric): a bug in the task, not the submission."""


class SolutionFailed(RuntimeError):
    """The solution's command exited non-zero or ran past the task's time limit."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


@dataclasses.dataclass(frozen=True)
class ResearchTask:
    """A task folder's `task.json`, validated. `path` is the folder."""

    name: str
    title: str
    metric: str
    lower_is_better: bool
    time_limit_s: float  # the solution's command
    eval_time_limit_s: float  # evaluate.py, which may run submitted code (game strategies, policies, solvers)
    memory_mb: int  # for the sandbox; local_runner does not enforce it
    command: tuple[str, ...]  # runs the solution in its working directory ("python" = this interpreter)
    editable: tuple[str, ...]  # starter files the agent edits (the marked tunables live in them)
    submission: tuple[str, ...]  # what the solution must leave in its working directory
    data_version: int
    seed: int
    baseline_range: tuple[float, float] | None
    needs_project: bool  # the solution and evaluator import the project (libs, experiments, configs)
    path: Path

    @property
    def description(self) -> str:
        return (self.path / "description.md").read_text()

    @property
    def starter_dir(self) -> Path:
        return self.path / "starter"

    def starter_sources(self) -> dict[str, str]:
        """The editable starter files' text, by file name."""
        return {name: (self.starter_dir / name).read_text() for name in self.editable}

    def tunables(self) -> dict[str, list[tunables_lib.Tunable]]:
        """The marked hyperparameters of each editable file (files without marks are left out)."""
        found = {name: tunables_lib.parse_tunables(text) for name, text in self.starter_sources().items()}
        return {name: marks for name, marks in found.items() if marks}

    def better(self, a: float, b: float) -> bool:
        """Whether score `a` beats score `b` in this task's direction."""
        return a < b if self.lower_is_better else a > b


@dataclasses.dataclass(frozen=True)
class TaskData:
    """The prepared data: `public_dir` the solution may read (as ./data), `private_dir` only the evaluator."""

    public_dir: Path
    private_dir: Path


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One command for a runner: run `command` in `cwd` (writable; its files persist) within `timeout_s`.

    `read_only` pairs a host path with where the command must see it: a relative path is inside `cwd` (the
    public data at `data`), an absolute one is that path (the project's code for tasks that need it).
    `collect` names what the command leaves in `cwd` that the caller reads afterwards (a sandbox that runs
    in a copy of `cwd` copies these back); `env` adds environment variables.
    """

    command: tuple[str, ...]
    cwd: Path
    timeout_s: float
    memory_mb: int
    read_only: tuple[tuple[Path, str], ...] = ()
    collect: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class RunResult:
    returncode: int | None  # None when killed at the time limit
    stdout: str
    stderr: str
    elapsed_s: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


Runner = Callable[[RunSpec], RunResult]


def local_runner(spec: RunSpec) -> RunResult:
    """UNSANDBOXED: a plain subprocess with a timeout (the process group is killed at the limit); memory is
    not limited and the command sees the whole machine. For the shipped baselines and tests only, never for
    generated code. Relative read-only views become symlinks in `cwd` for the run; absolute ones must be
    the host path itself."""
    links = []
    try:
        for host, inside in spec.read_only:
            if Path(inside).is_absolute():
                if Path(inside) != Path(host):
                    raise ValueError(f"local_runner cannot show {host} at {inside}")
                continue
            link = Path(spec.cwd) / inside
            if link.is_symlink() or link.exists():
                raise UserError(f"{link}: in the way of the read-only view of {host}")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(host).resolve(), target_is_directory=Path(host).is_dir())
            links.append(link)
        env = {**os.environ, **dict(spec.env)}
        start = time.perf_counter()
        proc = subprocess.Popen(list(spec.command), cwd=spec.cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=spec.timeout_s)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            out, err = proc.communicate()
            code = None
        return RunResult(code, out, err, time.perf_counter() - start)
    finally:
        for link in links:
            link.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# Loading.


def _field(raw: dict, key: str, kind, where: Path, required: bool = True, default=None):
    if key not in raw:
        if required:
            raise UserError(f"{where}: field '{key}' is missing")
        return default
    value = raw[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise UserError(f"{where}: field '{key}' must be {names}, got {json.dumps(value)}")
    return value


def _strings(raw: dict, key: str, where: Path) -> tuple[str, ...]:
    value = _field(raw, key, list, where)
    if not value or not all(isinstance(v, str) and v for v in value):
        raise UserError(f"{where}: field '{key}' must be a non-empty list of strings, got {json.dumps(value)}")
    return tuple(value)


def _positive(raw: dict, key: str, where: Path, kind=(int, float)) -> Any:
    value = _field(raw, key, kind, where)
    if not value > 0 or not math.isfinite(value):
        raise UserError(f"{where}: field '{key}' must be positive, got {json.dumps(value)}")
    return value


def load_task_dir(path: str | os.PathLike) -> ResearchTask:
    """Loads and checks the task folder `path`; a problem is one UserError naming the file and field."""
    path = Path(path)
    for name in _FILES:
        if not (path / name).exists():
            raise UserError(f"{path}: the task folder has no {name}")
    where = path / "task.json"
    try:
        raw = json.loads(where.read_text())
    except ValueError as e:
        raise UserError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{where}: must hold a JSON object")
    known = {f.name for f in dataclasses.fields(ResearchTask)} - {"path"}
    if unknown := sorted(set(raw) - known):
        raise UserError(f"{where}: field '{unknown[0]}' is not a task field ({', '.join(sorted(known))})")
    name = _field(raw, "name", str, where)
    if name != path.name:
        raise UserError(f"{where}: field 'name' is {name!r} but the folder is {path.name!r}")
    editable, submission = _strings(raw, "editable", where), _strings(raw, "submission", where)
    for file in editable:
        if not (path / "starter" / file).is_file():
            raise UserError(f"{where}: field 'editable' names {file}, which starter/ does not have")
        try:
            tunables_lib.parse_tunables((path / "starter" / file).read_text())
        except tunables_lib.TunableError as e:
            raise UserError(f"{path / 'starter' / file}: {e}") from None
    baseline_range = _field(raw, "baseline_range", list, where, required=False)
    if baseline_range is not None:
        if (len(baseline_range) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in baseline_range) or baseline_range[0] > baseline_range[1]):
            raise UserError(f"{where}: field 'baseline_range' must be [low, high], got {json.dumps(baseline_range)}")
        baseline_range = (float(baseline_range[0]), float(baseline_range[1]))
    seed = _field(raw, "seed", int, where, required=False, default=0)
    return ResearchTask(
        name=name, title=_field(raw, "title", str, where), metric=_field(raw, "metric", str, where),
        lower_is_better=_field(raw, "lower_is_better", bool, where),
        time_limit_s=float(_positive(raw, "time_limit_s", where)),
        eval_time_limit_s=float(_positive(raw, "eval_time_limit_s", where)),
        memory_mb=_positive(raw, "memory_mb", where, int), command=_strings(raw, "command", where),
        editable=editable, submission=submission, data_version=_positive(raw, "data_version", where, int),
        seed=seed, baseline_range=baseline_range,
        needs_project=_field(raw, "needs_project", bool, where, required=False, default=False), path=path)


def list_tasks() -> list[str]:
    """Names of the shipped tasks (folders with a task.json), sorted."""
    return sorted(p.name for p in TASKS_DIR.iterdir() if (p / "task.json").is_file())


def load_task(name: str) -> ResearchTask:
    """The shipped task `name`; an unknown name is a UserError listing the known ones."""
    if name not in list_tasks():
        raise UserError(f"unknown research task {name!r}; known: {', '.join(list_tasks())}")
    return load_task_dir(TASKS_DIR / name)


# ---------------------------------------------------------------------------------------------------------
# Data.


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_data(task: ResearchTask, data_root: str | os.PathLike | None = None) -> TaskData:
    """The task's public and private data, generated once by its `prepare.py` and reused.

    They live in `<data_root>/research_tasks/<name>/v<data_version>_seed<seed>/{public,private}` (data_root
    defaults to the project's data dir, `$JAX_MONOREPO_DATA` or `<repo>/data`). Concurrent callers build it
    once (a lock file); a build is complete when its marker file exists, and a partial one is redone.
    """
    from libs.train import corpus  # the data dir and its build lock; imported here to keep this module light

    if data_root is None:
        data_root = corpus.default_data_dir()
    root = Path(data_root) / "research_tasks" / task.name / f"v{task.data_version}_seed{task.seed}"
    data = TaskData(root / "public", root / "private")
    marker = root / _DONE
    if marker.is_file():
        return data
    with corpus._exclusive_lock(root.parent / f".{root.name}.lock"):  # pylint: disable=protected-access
        if marker.is_file():
            return data
        for path in (data.public_dir, data.private_dir):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        start = time.perf_counter()
        module = _load_module(task.path / "prepare.py", f"research_task_prepare_{task.name}")
        module.prepare(data.public_dir, data.private_dir, task.seed)
        marker.write_text(json.dumps({"task": task.name, "data_version": task.data_version, "seed": task.seed,
                                      "seconds": round(time.perf_counter() - start, 2)}) + "\n")
    return data


# ---------------------------------------------------------------------------------------------------------
# Running and scoring.


def _command(command: Sequence[str]) -> tuple[str, ...]:
    return tuple(sys.executable if i == 0 and part == "python" else part for i, part in enumerate(command))


def prepare_workdir(task: ResearchTask, workdir: str | os.PathLike, sources: dict[str, str] | None = None) -> Path:
    """Copies starter/ into `workdir` (which must not exist or be empty) and writes `sources` (file name ->
    text; edited starter files) over the copies. The runner shows the public data at ./data."""
    workdir = Path(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        raise UserError(f"{workdir}: the working directory is not empty")
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(task.starter_dir, workdir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name, text in (sources or {}).items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise UserError(f"{name}: a solution file must be a relative path inside the working directory")
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    return workdir


def run_solution(task: ResearchTask, workdir: str | os.PathLike, data: TaskData,
                 runner: Runner = local_runner, env: dict[str, str] | None = None) -> RunResult:
    """Runs the task's command in a prepared `workdir`; raises SolutionFailed on a non-zero exit or timeout."""
    spec = RunSpec(_command(task.command), Path(workdir).resolve(), task.time_limit_s, task.memory_mb,
                   read_only=((data.public_dir.resolve(), "data"), *_project_views(task)), collect=task.submission,
                   env=tuple(sorted((env or {}).items())))
    result = runner(spec)
    if result.timed_out:
        raise SolutionFailed(f"{task.name}: the solution ran past its {task.time_limit_s:g} s limit", result)
    if result.returncode != 0:
        raise SolutionFailed(f"{task.name}: the solution exited with code {result.returncode}: "
                             f"{_tail(result.stderr)}", result)
    return result


def _project_views(task: ResearchTask) -> tuple[tuple[Path, str], ...]:
    """The project's code at its own paths, for tasks that import it (the editable install points there)."""
    return tuple((path, str(path)) for path in PROJECT_DIRS) if task.needs_project else ()


def _tail(text: str, lines: int = 1) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) if kept else "(no output)"


def evaluate(task: ResearchTask, submission_dir: str | os.PathLike, data: TaskData,
             runner: Runner = local_runner, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs the task's `evaluate.py` on `submission_dir`; returns its metrics (the task's metric included).

    Raises InvalidSubmission when the evaluator rejects the submission (exit code 3, or its time limit,
    since it may run submitted code) and EvaluationError when it fails otherwise.
    """
    command = (sys.executable, f"{_TASKS_VIEW}/{task.name}/evaluate.py", "--submission_dir=.",
               f"--private_dir={_PRIVATE_VIEW}", "--public_dir=data")
    # The folder holding the task (TASKS_DIR for the shipped ones, with taskkit.py beside them).
    views = ((task.path.parent.resolve(), _TASKS_VIEW), (data.private_dir.resolve(), _PRIVATE_VIEW),
             (data.public_dir.resolve(), "data"))
    spec = RunSpec(command, Path(submission_dir).resolve(), task.eval_time_limit_s, task.memory_mb,
                   read_only=(*views, *_project_views(task)), env=tuple(sorted((env or {}).items())))
    result = runner(spec)
    if result.timed_out:
        raise InvalidSubmission(f"{task.name}: evaluation ran past its {task.eval_time_limit_s:g} s limit")
    if result.returncode == EXIT_INVALID:
        raise InvalidSubmission(f"{task.name}: {_tail(result.stderr)}")
    if result.returncode != 0:
        raise EvaluationError(f"{task.name}: evaluate.py exited with code {result.returncode}: "
                              f"{_tail(result.stderr, 3)}")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        metrics = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise EvaluationError(f"{task.name}: evaluate.py printed no JSON line last: {_tail(result.stdout)}") from None
    value = metrics.get(task.metric) if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EvaluationError(f"{task.name}: evaluate.py's JSON has no finite number {task.metric!r}: {lines[-1]}")
    return metrics


def run_baseline(task: ResearchTask, workdir: str | os.PathLike, data: TaskData | None = None,
                 runner: Runner = local_runner, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Prepares `workdir` from starter/, runs the baseline and scores it; the metrics gain `run_time_s`."""
    data = data or prepare_data(task)
    prepare_workdir(task, workdir)
    result = run_solution(task, workdir, data, runner, env)
    return {**evaluate(task, workdir, data, runner, env), "run_time_s": round(result.elapsed_s, 2)}
