"""Every shipped task's baseline runs and scores inside the sandbox, as generated code will."""

import shutil

import pytest

from libs.agents.research.runner import sandbox_runner
from libs.envs import research_tasks
from libs.sandbox import Sandbox

TASKS = [pytest.param(name, marks=pytest.mark.slow) if research_tasks.load_task(name).needs_project else name
         for name in research_tasks.list_tasks()]  # language modelling trains for ~20 s: slow


@pytest.fixture(scope="module", name="sandbox")
def _sandbox():
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    return Sandbox("bwrap")


@pytest.mark.parametrize("name", TASKS)
def test_baseline_scores_inside_the_sandbox(name, sandbox, tmp_path):
    task = research_tasks.load_task(name)
    metrics = research_tasks.run_baseline(task, tmp_path / "work", runner=sandbox_runner(sandbox))
    low, high = task.baseline_range
    assert low <= metrics[task.metric] <= high, metrics


def test_a_solution_that_reads_private_data_fails_in_the_sandbox(sandbox, tmp_path):
    task = research_tasks.load_task("tabular_classification")
    data = research_tasks.prepare_data(task)
    snoop = f"print(open({str(next(p for p in data.private_dir.rglob('*') if p.is_file()))!r}).read())\n"
    research_tasks.prepare_workdir(task, tmp_path / "work", {task.editable[0]: snoop})
    with pytest.raises(research_tasks.SolutionFailed, match="exited with code 1"):
        research_tasks.run_solution(task, tmp_path / "work", data, sandbox_runner(sandbox))
