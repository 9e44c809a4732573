"""Answer metrics and curation slices."""

import pytest

from libs.source2synth import curation, scoring


@pytest.mark.parametrize("pred,gold,em,soft", [
    ("The Saturn", "saturn", True, True), ("3.0", "3", True, True), ("1,969", "1969", True, True),
    ("It was Saturn.", "Saturn", False, True), ("Saturnalia", "Saturn", False, False),
    ("55.8334", "55.83", False, False), ("", "Saturn", False, False), ("NASA/ESA/ASI", "NASA/ESA/ASI", True, True),
])
def test_exact_and_soft_match(pred, gold, em, soft):
    assert scoring.exact_match(pred, gold) is em
    assert scoring.soft_exact_match(pred, gold) is soft


def test_score_uses_execution_for_tables():
    example = {"pipeline": "table", "answer": "2", "gold": {"sql": "q", "result": [[2]]}}

    def run_sql(query):
        if query == "bad":
            from libs.source2synth.sql import SQLRejected  # pylint: disable=import-outside-toplevel
            raise SQLRejected("sql_parse", "no")
        return [(2,)] if query == "good" else [(3,)]

    assert scoring.score(example, {"sql": "good", "answer": "unknown"}, run_sql)["execution_accuracy"] is True
    wrong = scoring.score(example, {"sql": "other", "answer": "two"}, run_sql)
    assert wrong["execution_accuracy"] is False and not scoring.correct(wrong)
    assert scoring.score(example, {"sql": "bad", "answer": "2"}, run_sql) == {
        "exact_match": True, "soft_exact_match": True, "execution_accuracy": False}
    text = scoring.score({"pipeline": "multihop", "answer": "1930"}, {"answer": "in 1930"}, run_sql)
    assert text["execution_accuracy"] is None and scoring.correct(text)


def test_summary_has_wilson_intervals():
    rows = [{"exact_match": i < 3, "soft_exact_match": True, "execution_accuracy": None} for i in range(10)]
    summary = scoring.summarize(rows)
    assert summary["exact_match"]["rate"] == 0.3 and summary["exact_match"]["low"] < 0.3 < summary["exact_match"]["high"]
    assert summary["soft_exact_match"]["high"] == 1.0 and "execution_accuracy" not in summary


def test_slices_are_stable_and_sized():
    ids = [f"table-0-{i:05d}" for i in range(2000)]
    zero = [i for i in ids if curation.slice_of(i, 0.3) == 0]
    assert 0.25 < len(zero) / len(ids) < 0.35
    assert zero == [i for i in ids if curation.slice_of(i, 0.3) == 0]
    assert all(curation.slice_of(i, 0.0) == 1 for i in ids)
