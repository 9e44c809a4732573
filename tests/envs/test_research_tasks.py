"""Research tasks: every folder loads, its data is prepared once and deterministically, its baseline runs and
scores within range, its evaluator rejects garbage; the tunables parser; the runner and evaluator plumbing."""

import dataclasses
import json
import random
import re
import sys
import time

import pytest

from libs.envs import research_tasks as rt
from libs.envs.research_tasks import tasks as tasks_lib
from libs.envs.research_tasks.tunables import Range, Tunable, TunableError, apply_tunable, parse_tunables
from libs.train.errors import UserError

TASKS = rt.list_tasks()
SLOW = {"language_modelling"}  # its baseline trains the speedrun binary for ~40 s
BASELINE_TASKS = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in TASKS]


@pytest.fixture(autouse=True)
def _one_device(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # the suite's 8 fake devices are not for the subprocesses


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("research_data")


def _data(name, data_root):
    return rt.prepare_data(rt.load_task(name), data_root)


# ---------------------------------------------------------------------------------------------------------
# Task folders.


def test_at_least_eight_tasks():
    assert len(TASKS) >= 8, TASKS
    assert {"sat3_speed", "prisoners_dilemma", "battle_of_sexes", "colonel_blotto", "tabular_classification",
            "tabular_regression", "digits_classification", "cartpole", "language_modelling"} <= set(TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_task_loads_with_two_to_five_tunables(name):
    task = rt.load_task(name)
    assert task.name == name and task.command and task.submission and task.baseline_range
    assert "baseline" in task.description.lower() and "## Submission" in task.description
    marks = [t for found in task.tunables().values() for t in found]
    assert 2 <= len(marks) <= 5, marks
    for mark in marks:  # every mark offers at least one other value
        assert any(value != mark.value for value in mark.candidates(4)), mark


def _write_task(tmp_path, **changes):
    src = rt.load_task("digits_classification").path
    folder = tmp_path / "my_task"
    (folder / "starter").mkdir(parents=True)
    for name in ("description.md", "evaluate.py", "prepare.py"):
        (folder / name).write_text((src / name).read_text())
    (folder / "starter" / "train.py").write_text((src / "starter" / "train.py").read_text())
    raw = {**json.loads((src / "task.json").read_text()), "name": "my_task", **changes}
    (folder / "task.json").write_text(json.dumps({k: v for k, v in raw.items() if v is not None}))
    return folder


@pytest.mark.parametrize("changes, words", [
    ({"metric": None}, "field 'metric' is missing"),
    ({"lower_is_better": "no"}, "field 'lower_is_better' must be bool"),
    ({"time_limit_s": 0}, "field 'time_limit_s' must be positive"),
    ({"memory_mb": True}, "field 'memory_mb' must be int"),
    ({"command": []}, "field 'command' must be a non-empty list"),
    ({"name": "other"}, "field 'name' is 'other' but the folder is 'my_task'"),
    ({"editable": ["nope.py"]}, "field 'editable' names nope.py"),
    ({"baseline_range": [1, 0]}, "field 'baseline_range' must be [low, high]"),
    ({"colour": "red"}, "field 'colour' is not a task field"),
])
def test_bad_task_json_is_one_line_naming_file_and_field(tmp_path, changes, words):
    folder = _write_task(tmp_path, **changes)
    with pytest.raises(UserError) as info:
        rt.load_task_dir(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder / "task.json") in message and words in message, message


def test_bad_files_are_named(tmp_path):
    folder = _write_task(tmp_path)
    (folder / "task.json").write_text("{not json")
    with pytest.raises(UserError, match="task.json: not valid JSON"):
        rt.load_task_dir(folder)
    folder = _write_task(tmp_path / "b")
    (folder / "starter" / "train.py").write_text("LR = 0.1  # tune: [0.2, 0.3]\n")
    with pytest.raises(UserError, match=r"train.py: line 1: LR = 0.1 is outside its own mark"):
        rt.load_task_dir(folder)
    (folder / "evaluate.py").unlink()
    with pytest.raises(UserError, match="the task folder has no evaluate.py"):
        rt.load_task_dir(folder)
    with pytest.raises(UserError, match="unknown research task 'nope'; known: .*cartpole"):
        rt.load_task("nope")


# ---------------------------------------------------------------------------------------------------------
# Data.


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["sat3_speed", "tabular_regression", "colonel_blotto"])
def test_prepare_is_deterministic_and_cached(tmp_path, monkeypatch, name):
    task = rt.load_task(name)
    first, second = rt.prepare_data(task, tmp_path / "a"), rt.prepare_data(task, tmp_path / "b")
    assert _files(first.public_dir) == _files(second.public_dir) and _files(first.public_dir)
    assert _files(first.private_dir) == _files(second.private_dir) and _files(first.private_dir)
    assert f"v{task.data_version}_seed{task.seed}" in str(first.public_dir)
    monkeypatch.setattr(tasks_lib, "_load_module", lambda *a: pytest.fail("prepared again"))
    assert rt.prepare_data(task, tmp_path / "a") == first  # reused: prepare.py is not loaded again


@pytest.mark.parametrize("name", TASKS)
def test_private_data_stays_out_of_the_public_dir(name, data_root):
    data = _data(name, data_root)
    public, private = data.public_dir.resolve(), data.private_dir.resolve()
    assert not private.is_relative_to(public) and not public.is_relative_to(private)
    assert _files(private), "no private data"
    public_bytes = set(_files(public).values())
    assert not public_bytes & set(_files(private).values())  # no private file copied into public
    assert not any(p.is_symlink() for p in public.rglob("*"))


def test_partial_build_is_redone(tmp_path):
    task = rt.load_task("prisoners_dilemma")
    data = rt.prepare_data(task, tmp_path)
    marker = data.public_dir.parent / tasks_lib._DONE
    marker.unlink()
    (data.public_dir / "stale.txt").write_text("left by a crash")
    again = rt.prepare_data(task, tmp_path)
    assert marker.is_file() and not (again.public_dir / "stale.txt").exists()


# ---------------------------------------------------------------------------------------------------------
# Baselines (this is "each task's baseline runs and scores in CI") and evaluators.


# Runs a Python script with the project's editable install hidden, as a sandbox that shows only the task
# folders and the data would: tasks without `needs_project` must not import `libs`.
_HIDE_PROJECT = """
import os, runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "EditableFinder" not in repr(f)]
script = sys.argv[1]
sys.argv, sys.path[0] = sys.argv[1:], os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
"""


def _without_project(spec):
    assert spec.command[0] == sys.executable and spec.command[1].endswith(".py"), spec.command
    return rt.local_runner(dataclasses.replace(spec, command=(sys.executable, "-c", _HIDE_PROJECT, *spec.command[1:])))


def test_hiding_the_project_works(tmp_path):
    (tmp_path / "probe.py").write_text("import importlib.util\nprint(importlib.util.find_spec('libs'))\n")
    result = _without_project(rt.RunSpec((sys.executable, "probe.py"), tmp_path, 30, 100))
    assert result.stdout == "None\n", result


@pytest.mark.parametrize("name", BASELINE_TASKS)
def test_baseline_runs_and_scores_in_range(name, data_root, tmp_path):
    task = rt.load_task(name)
    start = time.perf_counter()
    runner = rt.local_runner if task.needs_project else _without_project
    metrics = rt.run_baseline(task, tmp_path / "work", _data(name, data_root), runner=runner)
    low, high = task.baseline_range
    print(f"{name}: {task.metric} = {metrics[task.metric]} in {time.perf_counter() - start:.1f} s")
    assert low <= metrics[task.metric] <= high, metrics
    for path in task.submission:
        assert (tmp_path / "work" / path).exists(), path
    assert not (tmp_path / "work" / "data").exists()  # the runner's view of the public data is gone
    if name == "language_modelling":
        _check_lm_rejections(task, tmp_path / "work", _data(name, data_root))


def _check_lm_rejections(task, workdir, data):
    """The trained run, tampered with: the evaluator rebuilds the model from run/config.gin and refuses what
    does not fit."""
    config = workdir / "run" / "config.gin"
    good = config.read_text()
    for change, words in (("import os\n", "may import only project modules"),
                          ("GPTConfig.num_layers = 3\n", "the checkpoint does not fit"),
                          ("GPTConfig.max_seq_len = 64\n", "exceeds GPTConfig.max_seq_len=64")):
        config.write_text(change + good if change.startswith("import") else good + change)
        with pytest.raises(rt.InvalidSubmission, match=words):
            rt.evaluate(task, workdir, data)
    config.write_text(good)


_GARBAGE = {"solver.py": "def solve(n, clauses):\n    return [True] * n\n",  # wrong answers
            "strategy.py": "def row_strategy(history):\n    return 'defect'\n",
            "submission.csv": "id,target\n0,1\n0,1\n",
            "policy.py": "def act(observation):\n    raise RuntimeError('no idea')\n",
            "weights.json": "[]", "run/config.gin": "this is not gin (\n"}


@pytest.mark.parametrize("name", TASKS)
def test_empty_and_garbage_submissions_are_rejected(name, data_root, tmp_path):
    task, data = rt.load_task(name), _data(name, data_root)
    with pytest.raises(rt.InvalidSubmission, match=f"^{name}: invalid submission: .*missing"):
        rt.evaluate(task, tmp_path, data)
    for path in task.submission:
        if path in _GARBAGE:
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(_GARBAGE[path])
    with pytest.raises(rt.InvalidSubmission) as info:
        rt.evaluate(task, tmp_path, data)
    assert "\n" not in str(info.value), info.value


def test_tuned_choice_still_runs_and_can_beat_the_baseline(data_root, tmp_path):
    task = rt.load_task("digits_classification")
    data = _data(task.name, data_root)
    source = task.starter_sources()["train.py"]
    hidden = next(t for t in parse_tunables(source) if t.name == "HIDDEN")
    assert hidden.choices and hidden.value != 128
    edited = apply_tunable(apply_tunable(source, "HIDDEN", 128), "EPOCHS", 60)
    rt.prepare_workdir(task, tmp_path / "work", {"train.py": edited})
    rt.run_solution(task, tmp_path / "work", data)
    metrics = rt.evaluate(task, tmp_path / "work", data)
    assert metrics["accuracy"] > task.baseline_range[0] and task.better(metrics["accuracy"], 0.94), metrics


@pytest.mark.parametrize("name", ["sat3_speed", "battle_of_sexes"])
def test_every_choice_of_a_game_or_solver_runs(name, data_root, tmp_path):
    task = rt.load_task(name)
    data = _data(name, data_root)
    (file, marks), = task.tunables().items()
    mark = marks[0]
    for k, value in enumerate(v for v in mark.candidates() if v != mark.value):
        workdir = tmp_path / f"w{k}"
        rt.prepare_workdir(task, workdir, {file: apply_tunable(task.starter_sources()[file], mark.name, value)})
        rt.run_solution(task, workdir, data)
        assert isinstance(rt.evaluate(task, workdir, data)[task.metric], float)


# ---------------------------------------------------------------------------------------------------------
# Runner and evaluator plumbing (fake runners: no subprocess).


def _fake(returncode, stdout="", stderr="", seen=None):
    def runner(spec):
        if seen is not None:
            seen.append(spec)
        return rt.RunResult(returncode, stdout, stderr, 0.01)
    return runner


def test_specs_handed_to_the_runner(data_root, tmp_path):
    task, data = rt.load_task("tabular_classification"), _data("tabular_classification", data_root)
    workdir = rt.prepare_workdir(task, tmp_path / "w", {"notes/extra.txt": "hi"})
    assert (workdir / "train.py").is_file() and (workdir / "notes/extra.txt").exists()
    assert not (workdir / "data").exists()
    seen = []
    rt.run_solution(task, workdir, data, runner=_fake(0, seen=seen), env={"A": "1"})
    rt.evaluate(task, workdir, data, runner=_fake(0, '{"accuracy": 0.5}\n', seen=seen))
    run, ev = seen
    assert run.command == (sys.executable, "train.py") and run.cwd == workdir.resolve() and run.env == (("A", "1"),)
    assert run.timeout_s == task.time_limit_s and run.read_only == ((data.public_dir.resolve(), "data"),)
    assert run.collect == ("submission.csv",)
    assert ev.command[1:] == (".tasks/tabular_classification/evaluate.py", "--submission_dir=.",
                              "--private_dir=.private", "--public_dir=data")
    assert dict(ev.read_only) == {tasks_lib.TASKS_DIR: ".tasks", data.private_dir.resolve(): ".private",
                                  data.public_dir.resolve(): "data"}
    lm = rt.load_task("language_modelling")
    rt.run_solution(lm, workdir, data, runner=_fake(0, seen=seen))
    assert (tasks_lib.REPO_ROOT / "libs", str(tasks_lib.REPO_ROOT / "libs")) in seen[-1].read_only
    with pytest.raises(UserError, match="not empty"):
        rt.prepare_workdir(task, workdir)
    with pytest.raises(UserError, match="relative path inside"):
        rt.prepare_workdir(task, tmp_path / "w2", {"../escape.py": ""})


def test_local_runner_shows_read_only_views_for_the_run_only(tmp_path):
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "x.txt").write_text("hello")
    (tmp_path / "cwd").mkdir()
    spec = rt.RunSpec((sys.executable, "-c", "print(open('data/x.txt').read())"), tmp_path / "cwd", 30, 100,
                      read_only=((tmp_path / "public", "data"),))
    result = rt.local_runner(spec)
    assert result.returncode == 0 and result.stdout == "hello\n" and not (tmp_path / "cwd" / "data").exists()
    (tmp_path / "cwd" / "data").mkdir()
    with pytest.raises(UserError, match="in the way"):
        rt.local_runner(spec)


def test_evaluator_outcomes(tmp_path, data_root):
    task, data = rt.load_task("tabular_regression"), _data("tabular_regression", data_root)
    assert rt.evaluate(task, tmp_path, data, runner=_fake(0, 'log line\n{"rmse": 50.0, "r2": 0.4}\n')) == {
        "rmse": 50.0, "r2": 0.4}
    with pytest.raises(rt.InvalidSubmission, match="tabular_regression: invalid submission: bad ids"):
        rt.evaluate(task, tmp_path, data, runner=_fake(3, stderr="invalid submission: bad ids\n"))
    with pytest.raises(rt.InvalidSubmission, match="past its 60 s limit"):
        rt.evaluate(task, tmp_path, data, runner=_fake(None))
    with pytest.raises(rt.EvaluationError, match="exited with code 1: .*KeyError"):
        rt.evaluate(task, tmp_path, data, runner=_fake(1, stderr="Traceback\nKeyError: 'x'\n"))
    with pytest.raises(rt.EvaluationError, match="no JSON line"):
        rt.evaluate(task, tmp_path, data, runner=_fake(0, "done\n"))
    for bad in ('{"r2": 0.4}', '{"rmse": NaN}', '{"rmse": true}', '[1]'):
        with pytest.raises(rt.EvaluationError, match="no finite number 'rmse'"):
            rt.evaluate(task, tmp_path, data, runner=_fake(0, bad + "\n"))
    assert task.better(50.0, 60.0) and not task.better(60.0, 50.0)


def test_local_runner_timeout_and_failure(tmp_path):
    spec = rt.RunSpec((sys.executable, "-c", "import time; time.sleep(30)"), tmp_path, 0.5, 100)
    result = rt.local_runner(spec)
    assert result.timed_out and result.elapsed_s < 10
    task = rt.load_task("prisoners_dilemma")
    data = rt.TaskData(tmp_path, tmp_path)
    with pytest.raises(rt.SolutionFailed, match="past its 60 s limit"):
        rt.run_solution(task, tmp_path, data, runner=_fake(None))
    with pytest.raises(rt.SolutionFailed, match="exited with code 1: ValueError: boom") as info:
        rt.run_solution(task, tmp_path, data, runner=_fake(1, stderr="Traceback\nValueError: boom\n"))
    assert info.value.result.returncode == 1


# ---------------------------------------------------------------------------------------------------------
# Tunables.

SOURCE = '''"""A starter."""
import math

LEARNING_RATE = 0.03  # tune: log(1e-3, 1.0)
HIDDEN = 32  # tune: [16, 32, 64]
LAYERS=2 # tune: int(1, 4)
MOMENTUM = 0.9  # tune: float(0.0, 0.99)
MODEL = "knn"  # tune: ["knn", "ridge"]
USE_BIAS = True  # tune: [True, False]
train.total_steps = 80  # tune: int(40, 240)
OTHER = 3  # a plain comment
    INDENTED = None  # tune: [None, "balanced"]
'''


def test_parse_tunables():
    marks = {t.name: t for t in parse_tunables(SOURCE)}
    assert list(marks) == ["LEARNING_RATE", "HIDDEN", "LAYERS", "MOMENTUM", "MODEL", "USE_BIAS",
                           "train.total_steps", "INDENTED"]
    assert marks["LEARNING_RATE"] == Tunable("LEARNING_RATE", 4, 0.03, None, Range("log", 1e-3, 1.0))
    assert marks["HIDDEN"] == Tunable("HIDDEN", 5, 32, (16, 32, 64))
    assert marks["LAYERS"].range == Range("int", 1, 4) and marks["LAYERS"].value == 2
    assert marks["MODEL"].choices == ("knn", "ridge") and marks["USE_BIAS"].value is True
    assert marks["train.total_steps"].range.kind == "int" and marks["INDENTED"].choices == (None, "balanced")


def test_apply_tunable_round_trips():
    for mark in parse_tunables(SOURCE):
        for value in mark.candidates(4):
            edited = apply_tunable(SOURCE, mark.name, value)
            again = {t.name: t for t in parse_tunables(edited)}[mark.name]
            assert again.value == value and type(again.value) is type(value) and again.line == mark.line
            changed = [i for i, (a, b) in enumerate(zip(SOURCE.splitlines(), edited.splitlines())) if a != b]
            assert changed in ([], [mark.line - 1])
            assert edited.splitlines()[mark.line - 1].endswith(SOURCE.splitlines()[mark.line - 1].split("#", 1)[1])
        assert apply_tunable(SOURCE, mark.name, mark.value).splitlines()[mark.line - 1].split("#")[0].strip() == \
            SOURCE.splitlines()[mark.line - 1].split("#")[0].strip()
    edited = apply_tunable(SOURCE, "MODEL", "ridge")
    assert 'MODEL = "ridge"  # tune: ["knn", "ridge"]' in edited and "    INDENTED = None  #" in edited
    assert apply_tunable("X = 1  # tune: [1, 2]\r\n", "X", 2) == "X = 2  # tune: [1, 2]\r\n"


def test_tunable_candidates_and_samples_stay_allowed():
    rng = random.Random(0)
    for mark in parse_tunables(SOURCE):
        assert all(mark.allows(v) for v in mark.candidates(5)), mark
        assert all(mark.allows(mark.sample(rng)) for _ in range(50)), mark
    lr = parse_tunables(SOURCE)[0]
    assert lr.candidates(3) == [0.001, 0.0316, 1.0]
    assert parse_tunables("N = 2  # tune: int(1, 4)")[0].candidates(10) == [1, 2, 3, 4]


@pytest.mark.parametrize("source, words", [
    ("X = 1  # tune: [1, 2", "line 1: choices '[1, 2' is not a literal"),
    ("X = 1  # tune: []", "a non-empty list of values"),
    ("X = 1  # tune: log(0, 1)", "needs low > 0"),
    ("X = 1  # tune: int(1.5, 3)", "needs integer bounds"),
    ("X = 1  # tune: float(2, 1)", "low <= high"),
    ("X = f(1)  # tune: [1, 2]", "value 'f(1)' is not a literal"),
    ("X = 5  # tune: int(1, 4)", "outside its own mark"),
    ("print(1)  # tune: [1, 2]", "must end a one-line assignment"),
    ("\nX = 1  # tune: [1]\nX = 1  # tune: [1]", "line 3: X is marked twice (first on line 2)"),
])
def test_malformed_marks(source, words):
    with pytest.raises(TunableError, match=re.escape(words)):
        parse_tunables(source)


def test_apply_refuses_unknown_names_and_disallowed_values():
    with pytest.raises(TunableError, match="NOPE is not a marked tunable"):
        apply_tunable(SOURCE, "NOPE", 1)
    with pytest.raises(TunableError, match="HIDDEN = 48 is not allowed"):
        apply_tunable(SOURCE, "HIDDEN", 48)
    with pytest.raises(TunableError, match="LAYERS = 2.5 is not allowed"):
        apply_tunable(SOURCE, "LAYERS", 2.5)
    with pytest.raises(TunableError, match="USE_BIAS = 1 is not allowed"):
        apply_tunable(SOURCE, "USE_BIAS", 1)
    assert parse_tunables("# X = 1  # tune: [1]\ntext = 'a # tune: b'\n") == []
