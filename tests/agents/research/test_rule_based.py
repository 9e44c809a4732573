"""The rule-based stand-in operators: drafts, one-value improvements, reverts and crossovers that run."""

import random

import pytest

from libs.agents.research.rule_based import STAND_IN, RuleBasedProposer
from libs.envs import research_tasks


def _values(sources):
    return {(n, t.name): t.value for n, text in sources.items() for t in research_tasks.parse_tunables(text)}


@pytest.fixture(name="task")
def _task():
    return research_tasks.load_task("tabular_classification")


def test_first_draft_is_the_baseline_and_later_drafts_differ(task):
    proposer = RuleBasedProposer(task)
    rng = random.Random(0)
    first = proposer.draft(0, rng)
    assert first.sources == task.starter_sources() and STAND_IN in first.plan
    later = [proposer.draft(i, rng).sources for i in range(1, 4)]
    assert any(_values(s) != _values(first.sources) for s in later)


@pytest.mark.parametrize("mode", ["random", "grid"])
def test_improve_changes_exactly_one_marked_value_to_an_allowed_one(task, mode):
    proposer = RuleBasedProposer(task, mode=mode)
    parent = task.starter_sources()
    marks = {(n, t.name): t for n, text in parent.items() for t in research_tasks.parse_tunables(text)}
    for seed in range(10):
        child = proposer.improve(parent, random.Random(seed))
        changed = {k for k, v in _values(child.sources).items() if v != _values(parent)[k]}
        assert len(changed) == 1 and all(marks[k].allows(_values(child.sources)[k]) for k in changed)
        assert "one marked value changed" in child.plan


def test_debug_reverts_and_crossover_mixes_the_parents(task):
    proposer = RuleBasedProposer(task)
    a = task.starter_sources()
    b = proposer.draft(1, random.Random(3)).sources
    assert proposer.debug(a).sources == a and proposer.debug(None).sources == task.starter_sources()
    child = proposer.crossover(a, b, random.Random(1))
    for key, value in _values(child.sources).items():
        assert value in (_values(a)[key], _values(b)[key])


def test_a_mutated_candidate_runs_and_scores(task, tmp_path):
    proposal = RuleBasedProposer(task, mode="grid").improve(task.starter_sources(), random.Random(0))
    data = research_tasks.prepare_data(task)
    research_tasks.prepare_workdir(task, tmp_path / "w", proposal.sources)
    research_tasks.run_solution(task, tmp_path / "w", data)
    assert 0.5 <= research_tasks.evaluate(task, tmp_path / "w", data)["accuracy"] <= 1.0
