"""Executing candidates: a score, a crash, a rejected submission, a timeout and a stop request each give the
outcome the operators rely on; the value mapping ranks metrics in either direction."""

import asyncio
import time

import pytest

from libs.agents.research.executor import Executor
from libs.agents.research.operators import metric_value
from libs.envs import research_tasks
from libs.sandbox import Sandbox
from libs.search.base import Interrupted

TASK = research_tasks.load_task("prisoners_dilemma")
STARTER = TASK.starter_sources()["strategy.py"]


@pytest.fixture(scope="module", name="data")
def _data():
    return research_tasks.prepare_data(TASK)


def _run(data, tmp_path, code, **kwargs):
    executor = Executor(TASK, data, Sandbox("auto"), str(tmp_path), **kwargs)
    return asyncio.run(executor.run({"strategy.py": code}))


def test_the_baseline_scores(data, tmp_path):
    outcome = _run(data, tmp_path, STARTER)
    assert outcome.ok and outcome.failure is None and 2.3 < outcome.metric < 2.8
    assert outcome.metrics["score"] == outcome.metric and '"score"' in outcome.evaluation
    assert list(tmp_path.iterdir()) == []  # the execution's folder is gone


def test_a_crash_is_a_failed_execution_with_its_output(data, tmp_path):
    outcome = _run(data, tmp_path, STARTER.replace("import random\n", "import random\nprint('hello'); 1 / 0\n"))
    assert not outcome.ok and outcome.failure == "exit" and outcome.exit_code == 1
    assert "hello" in outcome.output and "ZeroDivisionError" in outcome.output


def test_a_rejected_submission_is_invalid(data, tmp_path):
    sabotage = "\nif __name__ != '__main__':  # the run's self-check passes; the evaluator's import does not\n" \
               "    row_strategy = None\n"
    outcome = _run(data, tmp_path, STARTER + sabotage)
    assert not outcome.ok and outcome.failure == "invalid" and "rejected" in outcome.evaluation


def test_the_execution_limit_stops_a_slow_program(data, tmp_path):
    outcome = _run(data, tmp_path, STARTER + "\nimport time\ntime.sleep(60)\n", max_execution_s=1.5)
    assert not outcome.ok and outcome.failure == "timeout" and outcome.exit_code is None
    assert outcome.seconds < 5


def test_a_stop_request_kills_the_execution_and_interrupts(data, tmp_path):
    start = time.monotonic()
    with pytest.raises(Interrupted):
        _run(data, tmp_path, STARTER + "\nimport time\ntime.sleep(60)\n",
             should_stop=lambda: time.monotonic() - start > 1.0)
    assert time.monotonic() - start < 5


def test_metric_value_is_monotone_and_centred_on_the_baseline():
    assert metric_value(2.5, 2.5, False) == 0.5 == metric_value(-0.2, -0.2, True)
    higher = [metric_value(m, 2.5, False) for m in (0.0, 2.0, 2.5, 3.0, 1e6)]
    lower = [metric_value(m, 1.4, True) for m in (100.0, 2.0, 1.4, 0.5, 1e-6)]
    for values in (higher, lower):
        assert values == sorted(values) and len(set(values)) == 5 and all(0 < v < 1 for v in values)
    assert metric_value(0.1, -0.2, False) > 0.5  # a negative baseline (Colonel Blotto) still ranks right
