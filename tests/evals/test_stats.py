"""Tests for libs.evals.stats: Wilson intervals and win-rate summaries."""

import math

import pytest

from libs.evals.stats import RateSummary, mean_and_std, summarize_wins, wilson_interval


def test_wilson_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=5e-4)
    assert high == pytest.approx(0.9433, abs=5e-4)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=5e-4))
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(0.7225, abs=5e-4)
    # 50/100 at 95%: 0.5 +- 0.0963 (centre stays at 0.5 by symmetry).
    low, high = wilson_interval(50, 100)
    assert (low + high) / 2 == pytest.approx(0.5)
    assert low == pytest.approx(0.4038, abs=5e-4)


def test_wilson_confidence_widens_interval():
    narrow = wilson_interval(30, 50, confidence=0.80)
    wide = wilson_interval(30, 50, confidence=0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


def test_wilson_bounds_in_unit_interval_and_contain_rate():
    for n in (1, 2, 5, 17, 100, 1000):
        for s in range(n + 1):
            for conf in (0.5, 0.95, 0.999):
                low, high = wilson_interval(s, n, conf)
                assert 0.0 <= low <= s / n <= high <= 1.0


def test_wilson_empty_and_fractional():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(2.6, 4)  # Summed per-game win fractions.
    assert 0.0 < low < 0.65 < high < 1.0


BAD_WILSON_ARGS = [(-1, 10), (11, 10), (1, -1), (1, 2.5), (math.nan, 3), (1, 10, 1.0), (1, 10, 0.0)]


@pytest.mark.parametrize("args", BAD_WILSON_ARGS)
def test_wilson_bad_input(args):
    with pytest.raises(ValueError):
        wilson_interval(*args)


def test_summarize_wins_bools_and_fractions():
    summary = summarize_wins([True, False, True, True])
    assert isinstance(summary, RateSummary)
    assert (summary.successes, summary.n, summary.rate) == (3.0, 4, 0.75)
    assert (summary.low, summary.high) == wilson_interval(3, 4)
    # A game played 5 times with 3 wins counts 0.6.
    frac = summarize_wins([1.0, 0.6, 0.0, 0.2])
    assert frac.successes == pytest.approx(1.8)
    assert frac.rate == pytest.approx(0.45)
    assert frac.low <= frac.rate <= frac.high


def test_summarize_wins_empty_and_bad():
    empty = summarize_wins([])
    assert (empty.n, empty.rate, empty.low, empty.high) == (0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"wins\[1\]"):
        summarize_wins([0.5, 1.5])
    with pytest.raises(ValueError):
        summarize_wins([-0.1])


def test_mean_and_std():
    assert mean_and_std([1.0, 2.0, 3.0, 4.0]) == (2.5, pytest.approx(math.sqrt(1.25)))
    assert mean_and_std([1.0, 2.0, 3.0, 4.0], ddof=1)[1] == pytest.approx(math.sqrt(5 / 3))
    assert mean_and_std([7.0]) == (7.0, 0.0)
    with pytest.raises(ValueError):
        mean_and_std([])
    with pytest.raises(ValueError):
        mean_and_std([1.0], ddof=1)
    with pytest.raises(ValueError):
        mean_and_std([1.0, math.inf])
