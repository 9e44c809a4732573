"""Tests for libs.evals.speedrun_scores: FSR, aggregates, best-of-k and the hint x scaffold table."""

import math

import numpy as np
import pytest

from libs.evals import speedrun_scores as S


def test_fsr_known_times():
    assert S.fsr(100, 60, 80) == S.FsrResult(0.5)
    assert S.fsr(100, 60, 60).fsr == 1.0
    assert S.fsr(100, 60, 100).fsr == 0.0
    assert S.fsr(100, 60, 40).fsr == pytest.approx(1.5)  # Beat the next record.
    assert S.fsr(100, 60, 120) == S.FsrResult(0.0, S.NEGATIVE)
    assert S.fsr(100, 60, None) == S.FsrResult(0.0, S.FAILED)
    # Measure-agnostic: steps or tokens work the same way.
    assert S.fsr(5000, 4000, 4750).fsr == pytest.approx(0.25)
    assert S.fsr(3.2e9, 2.4e9, 2.8e9).fsr == pytest.approx(0.5)


def test_fsr_cap():
    # (100 - 0) / (100 - 90) = 10 > 3: zeroed by default, kept with cap=None, cap is inclusive.
    assert S.fsr(100, 90, 0) == S.FsrResult(0.0, S.ABOVE_CAP)
    assert S.fsr(100, 90, 0, cap=None).fsr == pytest.approx(10.0)
    assert S.fsr(100, 90, 70).fsr == pytest.approx(3.0)
    assert S.fsr(100, 90, 70, cap=2.0).fsr == 0.0


@pytest.mark.parametrize("t_next", [100, 120])
def test_fsr_no_speedup_is_flagged_not_scored(t_next):
    result = S.fsr(100, t_next, 50)
    assert result.fsr is None and result.flag == S.NO_SPEEDUP == "no speedup between the references"
    assert S.fsr(100, t_next, None).fsr is None


@pytest.mark.parametrize("args, culprit", [
    ((100, 60, -1), "t_agent"), ((100, 60, math.nan), "t_agent"), ((-100, 60, 80), "t_record"),
    ((100, math.inf, 80), "t_next"), ((None, 60, 80), "t_record"), ((100, 60, 80, 0), "cap"),
    ((100, 60, 80, math.nan), "cap"),
])
def test_fsr_bad_input(args, culprit):
    with pytest.raises(ValueError, match=culprit):
        S.fsr(*args)


def test_iqm_known_vectors():
    assert S.iqm(np.arange(8.0)) == pytest.approx(3.5)  # mean of [2, 3, 4, 5]
    assert S.iqm([0, 0, 1, 1, 1, 1, 100, 100]) == pytest.approx(1.0)
    assert S.iqm(np.arange(10.0)) == pytest.approx(4.5)  # cuts 2 per side: mean of 2..7
    assert S.iqm([7.0]) == 7.0


def test_aggregate_known_vector_and_skips():
    scores = [0, 1, 2, 3, S.fsr(100, 100, 50), 4, 5, 6, 7, None]
    agg = S.aggregate_fsr(scores, n_resamples=500)
    assert (agg.n, agg.skipped) == (8, 2)
    assert agg.mean.value == pytest.approx(3.5)
    assert agg.median.value == pytest.approx(3.5)
    assert agg.iqm.value == pytest.approx(3.5)
    for est in (agg.mean, agg.median, agg.iqm):
        assert est.low <= est.value <= est.high and est.low < est.high
    assert S.aggregate_fsr([S.fsr(1, 2, 1), None]) == S.Aggregate(0, 2, None, None, None)


def test_bootstrap_deterministic_and_contains_estimate():
    x = np.random.default_rng(1).uniform(0, 1, size=30)
    for stat in ("mean", "median", "iqm"):
        a = S.bootstrap_interval(x, stat, seed=7)
        assert a == S.bootstrap_interval(x, stat, seed=7)
        assert a[0] <= float(S.STATISTICS[stat](x)) <= a[1]
    assert S.bootstrap_interval(x, seed=7) != S.bootstrap_interval(x, seed=8)
    wide = S.bootstrap_interval(x, confidence=0.99)
    narrow = S.bootstrap_interval(x, confidence=0.5)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]
    assert S.bootstrap_interval([0.4, 0.4, 0.4]) == pytest.approx((0.4, 0.4))


@pytest.mark.parametrize("call, culprit", [
    (lambda: S.aggregate_fsr([]), "empty"),
    (lambda: S.aggregate_fsr([0.5, math.nan]), r"scores\[1\]"),
    (lambda: S.aggregate_fsr([0.5, -0.1]), r"scores\[1\]"),
    (lambda: S.bootstrap_interval([]), "values"),
    (lambda: S.bootstrap_interval([1.0], "mode"), "statistic"),
    (lambda: S.bootstrap_interval([1.0], confidence=1.0), "confidence"),
    (lambda: S.expected_max_of_k([], 1), "values"),
    (lambda: S.expected_max_of_k([1.0, 2.0], 3), "k"),
    (lambda: S.expected_max_of_k([1.0, 2.0], 0), "k"),
    (lambda: S.best_of_k({"r3": [0.1], "r4": [0.2, 0.3]}, 2), "r3"),
    (lambda: S.best_of_k({}, 1), "empty"),
    (lambda: S.fsr_table([]), "empty"),
    (lambda: S.fsr_table([{"task": "r1", "hint": "z", "fsr": 0.1}]), "scaffold"),
])
def test_aggregate_and_best_of_k_bad_input(call, culprit):
    with pytest.raises(ValueError, match=culprit):
        call()


def test_expected_max_of_k():
    runs = [0.3, 0.0, 0.9, 0.6]
    assert S.expected_max_of_k(runs, 1) == pytest.approx(np.mean(runs))
    assert S.expected_max_of_k(runs, 4) == pytest.approx(0.9)
    # k=2: the 6 pairs have maxima 0.3, 0.9, 0.6, 0.9, 0.6, 0.9 -> 4.2 / 6.
    assert S.expected_max_of_k(runs, 2) == pytest.approx(4.2 / 6)
    # Brute force over subsets agrees for k=3.
    from itertools import combinations
    brute = np.mean([max(c) for c in combinations(runs, 3)])
    assert S.expected_max_of_k(runs, 3) == pytest.approx(brute)
    assert S.best_of_k({"r1": runs, "r2": [0.5]}, 1) == {"r1": pytest.approx(0.45), "r2": 0.5}


def _records():
    recs = []
    for hint, shift in (("none", 0.0), ("pseudocode", 0.3)):
        for scaffold, bump in (("flat", 0.0), ("tree", 0.1)):
            for t in range(6):
                for run in range(2):
                    recs.append({"task": f"r{t}", "hint": hint, "scaffold": scaffold,
                                 "fsr": shift + bump + 0.05 * t + 0.01 * run, "flag": None})
    recs.append({"task": "r9", "hint": "none", "scaffold": "flat", "fsr": None, "flag": S.NO_SPEEDUP})
    return recs


def test_cell_aggregates_average_runs_per_task():
    cells = S.cell_aggregates(_records(), n_resamples=200)
    assert set(cells) == {(h, s) for h in ("none", "pseudocode") for s in ("flat", "tree")}
    flat = cells[("none", "flat")]
    assert (flat.n, flat.skipped) == (6, 1)
    assert flat.mean.value == pytest.approx(np.mean([0.05 * t + 0.005 for t in range(6)]))


def test_fsr_table_and_plot(tmp_path):
    png = tmp_path / "plots" / "fsr.png"
    table = S.fsr_table(_records(), png_path=str(png), n_resamples=200)
    lines = table.strip().splitlines()
    assert len(lines) == 4 and "flat" in lines[0] and "tree" in lines[0] and "mean FSR" in lines[0]
    assert lines[2].startswith("| none |") and lines[3].startswith("| pseudocode |")
    assert "n=6" in lines[2] and "(skipped 1)" in lines[2] and "[" in lines[3]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    iqm_table = S.fsr_table(_records(), statistic="iqm", n_resamples=200)
    assert "iqm FSR" in iqm_table and iqm_table != table
    # A missing (hint, scaffold) pair shows "-"; a cell of skipped tasks only shows n/a.
    sparse = [{"task": "r1", "hint": "z", "scaffold": "flat", "fsr": 0.2},
              {"task": "r1", "hint": "1", "scaffold": "tree", "fsr": None}]
    out = S.fsr_table(sparse, png_path=str(tmp_path / "sparse.png"), n_resamples=50)
    assert "| z | 0.200 [0.200, 0.200] n=1 | - |" in out
    assert "| 1 | - | n/a n=0 (skipped 1) |" in out
