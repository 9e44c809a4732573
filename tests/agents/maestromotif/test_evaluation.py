"""Success rates with Wilson intervals, the results table, and the descender check on real games."""

import pytest

from libs.agents.maestromotif import evaluation


def test_rate_is_the_share_with_its_wilson_interval():
    rate = evaluation.Rate.of([True] * 3 + [False] * 97)
    assert (rate.successes, rate.episodes, rate.rate) == (3, 100, 0.03)
    assert rate.low == pytest.approx(0.0103, abs=1e-3) and rate.high == pytest.approx(0.0845, abs=1e-3)
    assert rate.text() == "3.0% [1.0, 8.5] (n=100)"


def test_results_table_is_method_by_task():
    rows = {"ours": {"delphi": evaluation.Rate.of([True, False]), "buc_id": None},
            "random policy": {"delphi": evaluation.Rate.of([False, False])}}
    table = evaluation.results_table(rows, ["delphi", "buc_id"]).splitlines()
    assert table[0] == "| method | delphi | buc_id |"
    assert table[2].startswith("| ours | 50.0% [") and table[2].endswith(" | - |")
    assert table[3].startswith("| random policy | 0.0% [0.0, ")


def test_descender_check_plays_each_episode_once_with_the_same_games_for_the_same_seed():
    seen = []

    def counting_random(chunk):
        policy = evaluation.random_policy(28, chunk)

        def act(obs, skills):
            seen.append(len(skills))
            return policy(obs, skills)
        return act

    a = evaluation.descender_rate(counting_random, episodes=6, step_limit=20, num_envs=4, num_workers=0, seed=3,
                                  should_stop=lambda: False)
    b = evaluation.descender_rate(lambda chunk: evaluation.random_policy(28, chunk), episodes=6, step_limit=20,
                                  num_envs=4, num_workers=0, seed=3, should_stop=lambda: False)
    assert a.episodes == 6 and a == b
    assert sorted(set(seen)) == [2, 4]  # a chunk of 4 envs, then one of 2
    assert evaluation.descender_rate(lambda c: evaluation.random_policy(28, c), episodes=2, step_limit=20,
                                     num_envs=2, num_workers=0, should_stop=lambda: True) is None


def test_task_rates_use_each_tasks_program_and_the_workers_detectors():
    from libs.agents.maestromotif import skills as skills_lib

    sources = []

    def source(task):
        sources.append(task)
        return skills_lib.default_program_source(task)

    rates = evaluation.task_rates(lambda chunk: evaluation.random_policy(28, chunk), ["gnomish_mines", "transaction"],
                                  source, episodes=3, max_steps=15, num_envs=2, num_workers=0,
                                  should_stop=lambda: False)
    assert sources == ["gnomish_mines", "transaction"]
    assert all(r.episodes == 3 and r.successes == 0 for r in rates.values())  # 15 random steps reach neither
