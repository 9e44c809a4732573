"""Tests for libs.evals.game_biases: bias direction, strength and aligned/misaligned accuracy drop."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from libs.evals import game_biases as G
from libs.evals.stats import wilson_interval

FIELDS = ("first", "correct", "max_self", "max_common", "self_action", "common_action")
CANDIDATE_KEYS = {"positional": ("first", None), "payoff": ("max_self", "max_common"),
                  "behavioural": ("self_action", "common_action")}


def _grid(reps: int, game: str = "stag_hunt") -> list[dict]:
    """Every combination of the six binary fields, `reps` times each (so the fields are independent)."""
    records = []
    for values in itertools.product((0, 1), repeat=len(FIELDS)):
        rec = dict(zip(FIELDS, values))
        rec["game"] = game
        rec["config"] = (f"order{rec['first']}/payoff{rec['max_self']}{rec['max_common']}"
                         f"/pref{rec['self_action']}{rec['common_action']}")
        records += [dict(rec) for _ in range(reps)]
    return records


def _candidate(rec: dict, bias: str, direction: str) -> int:
    x_key, y_key = CANDIDATE_KEYS[bias]
    x = rec[x_key]
    y = 1 - x if y_key is None else rec[y_key]
    return x if direction == "x" else y


def _play(records, bias, direction, s, a, seed, invalid=0.0) -> list[dict]:
    """Invalid with prob `invalid`; else the biased candidate with prob s, else correct with prob a,
    else the other action."""
    rng = np.random.default_rng(seed)
    out = []
    for rec in records:
        if rng.random() < invalid:
            choice = None
        elif rng.random() < s:
            choice = _candidate(rec, bias, direction)
        elif rng.random() < a:
            choice = rec["correct"]
        else:
            choice = 1 - rec["correct"]
        out.append({**rec, "choice": choice})
    return out


def _theoretical_follow(records, bias, direction, s, a) -> float:
    probs = []
    for rec in records:
        x, y = _candidate(rec, bias, "x"), _candidate(rec, bias, "y")
        if x != y:
            aligned = _candidate(rec, bias, direction) == rec["correct"]
            probs.append(s + (1 - s) * (a if aligned else 1 - a))
    return float(np.mean(probs))


@pytest.mark.parametrize("bias", G.BIASES)
@pytest.mark.parametrize("direction", ["x", "y"])
def test_injected_bias_is_recovered(bias, direction):
    s, a = 0.35, 0.6
    records = _play(_grid(100), bias, direction, s, a, seed=100 + 10 * G.BIASES.index(bias) + (direction == "y"))
    m = G.measure_bias(records, bias, confidence=0.99)  # 99%: several interval checks per case.
    assert m.bias == bias and m.identifiable
    assert m.direction == direction
    assert m.direction_label == G._LABELS[bias][0 if direction == "x" else 1]
    follow = _theoretical_follow(records, bias, direction, s, a)
    assert m.follow.rate == pytest.approx(follow, abs=0.03)
    assert m.follow.low <= follow <= m.follow.high
    assert m.aligned.rate == pytest.approx(s + (1 - s) * a, abs=0.04)
    assert m.misaligned.rate == pytest.approx((1 - s) * a, abs=0.04)
    assert m.aligned.n + m.misaligned.n == len(records)
    assert m.drop == pytest.approx(s, abs=0.05)
    assert m.drop_low <= s <= m.drop_high
    assert m.drop_high - m.drop_low < 0.1


def test_unbiased_player_has_no_drop_for_any_bias():
    records = _play(_grid(100), "positional", "x", s=0.0, a=0.7, seed=3)
    measures = G.measure_all(records)
    assert set(measures) == set(G.BIASES)
    for m in measures.values():
        assert m.identifiable
        assert m.drop_low <= 0.0 <= m.drop_high
        assert abs(m.drop) < 0.05
        assert m.follow.rate == pytest.approx(0.5, abs=0.03)


def test_bootstrap_interval_is_seeded_and_of_nominal_width():
    records = _play(_grid(50), "payoff", "x", s=0.3, a=0.6, seed=5)
    m = G.measure_bias(records, "payoff", seed=7)
    again = G.measure_bias(records, "payoff", seed=7)
    other = G.measure_bias(records, "payoff", seed=8)
    assert (m.drop_low, m.drop_high) == (again.drop_low, again.drop_high)
    assert (m.drop_low, m.drop_high) != (other.drop_low, other.drop_high)
    pa, na, pm, nm = m.aligned.rate, m.aligned.n, m.misaligned.rate, m.misaligned.n
    normal_width = 2 * 1.96 * math.sqrt(pa * (1 - pa) / na + pm * (1 - pm) / nm)
    assert m.drop_high - m.drop_low == pytest.approx(normal_width, rel=0.15)
    narrow = G.measure_bias(records, "payoff", confidence=0.5, seed=7)
    assert narrow.drop_high - narrow.drop_low < 0.5 * (m.drop_high - m.drop_low)


def test_invalid_replies_count_as_wrong_and_in_invalid_rate():
    base = {"game": "pd", "config": "c", "first": 0, "max_self": 0, "max_common": 0,
            "self_action": 0, "common_action": 0}
    cases = [(0, 0), (0, None), (1, None), (1, 0), (0, 0)]  # (correct, choice)
    records = [{**base, "correct": c, "choice": ch} for c, ch in cases]
    assert G.invalid_rate(records).rate == pytest.approx(2 / 5)
    assert G.invalid_rate(records).n == 5
    acc = G.accuracy_by_config(records)["c"]
    assert (acc.rate, acc.n) == (pytest.approx(2 / 5), 5)
    assert (acc.low, acc.high) == pytest.approx(wilson_interval(2, 5))
    m = G.measure_bias(records, "positional")
    assert m.direction == "x" and m.follow.n == 3 and m.follow.rate == 1.0
    assert (m.aligned.rate, m.aligned.n) == (pytest.approx(2 / 3), 3)
    assert (m.misaligned.rate, m.misaligned.n) == (0.0, 2)
    assert m.drop == pytest.approx(2 / 3)


def test_invalid_replies_lower_synthetic_accuracies():
    s, a, invalid = 0.4, 0.5, 0.2
    records = _play(_grid(100), "behavioural", "y", s, a, seed=11, invalid=invalid)
    assert G.invalid_rate(records).rate == pytest.approx(invalid, abs=0.02)
    m = G.measure_bias(records, "behavioural")
    assert m.direction == "y"
    assert m.aligned.rate == pytest.approx((1 - invalid) * (s + (1 - s) * a), abs=0.04)
    assert m.misaligned.rate == pytest.approx((1 - invalid) * (1 - s) * a, abs=0.04)
    assert m.follow.n == sum(r["choice"] is not None and r["self_action"] != r["common_action"] for r in records)


def test_fixed_candidates_are_not_identifiable():
    records = [r for r in _grid(60) if r["max_self"] == r["max_common"]]
    records = _play(records, "payoff", "x", s=0.5, a=0.5, seed=2)
    m = G.measure_bias(records, "payoff")
    assert not m.identifiable and m.follow is None
    assert (m.direction, m.direction_label) == ("x", "max-self-gain")
    assert m.aligned.n == sum(r["max_self"] == r["correct"] for r in records)
    assert m.drop == pytest.approx(0.5, abs=0.06)  # Aligned/misaligned still defined by x.
    assert G.measure_bias(records, "positional").identifiable


def test_all_invalid_where_candidates_differ_is_not_identifiable():
    records = [{**r, "choice": None if r["self_action"] != r["common_action"] else r["correct"]}
               for r in _grid(2)]
    m = G.measure_bias(records, "behavioural")
    assert not m.identifiable and m.follow is None and m.direction == "x"


def test_direction_majority_and_tie():
    base = {"game": "g", "config": "c", "correct": 0, "max_self": 0, "max_common": 0,
            "self_action": 0, "common_action": 0}
    second = [{**base, "first": 0, "choice": ch} for ch in (1, 1, 0)]
    m = G.measure_bias(second, "positional")
    assert (m.direction, m.direction_label) == ("y", "second-listed")
    assert m.follow.rate == pytest.approx(2 / 3)
    # Aligned = second-listed action (1) is correct: none here.
    assert m.aligned.n == 0 and math.isnan(m.aligned.rate)
    assert math.isnan(m.drop) and math.isnan(m.drop_low) and math.isnan(m.drop_high)
    tie = [{**base, "first": 0, "choice": ch} for ch in (1, 0)]
    assert G.measure_bias(tie, "positional").direction == "x"


def test_bad_input_raises():
    records = _play(_grid(1), "payoff", "x", 0.2, 0.5, seed=0)
    with pytest.raises(ValueError, match="unknown bias"):
        G.measure_bias(records, "recency")
    with pytest.raises(ValueError, match="choice"):
        G.invalid_rate([{**records[0], "choice": 2}])
    with pytest.raises(KeyError, match="max_common"):
        G.measure_bias([{k: v for k, v in records[0].items() if k != "max_common"}], "payoff")


def test_accuracy_by_config_per_id():
    records = _play(_grid(3), "payoff", "x", 0.3, 0.6, seed=4)
    records = [records[i] for i in np.random.default_rng(0).permutation(len(records))]
    by_config = G.accuracy_by_config(records)
    assert list(by_config) == sorted({r["config"] for r in records})
    for config, rate in by_config.items():
        hits = [r["choice"] == r["correct"] for r in records if r["config"] == config]
        assert (rate.rate, rate.n) == (pytest.approx(np.mean(hits)), len(hits))
        assert (rate.low, rate.high) == pytest.approx(wilson_interval(sum(hits), len(hits)))


def test_plots_write_png(tmp_path):
    records = _play(_grid(10), "positional", "x", 0.4, 0.6, seed=1)
    config_png = tmp_path / "plots" / "by_config.png"
    G.plot_accuracy_by_config(records, str(config_png), title="Stag Hunt")
    bias_png = tmp_path / "plots" / "biases.png"
    measures = G.measure_all(records)
    measures["payoff"] = G.measure_bias([r for r in records if r["max_self"] == r["max_common"]], "payoff")
    G.plot_aligned_vs_misaligned(measures, str(bias_png), title="Stag Hunt")
    for png in (config_png, bias_png):
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_summary_table_has_one_row_per_group():
    groups = {
        "model-a / stag_hunt": _play(_grid(20), "positional", "x", 0.5, 0.6, seed=1),
        "model-a / prisoners_dilemma": _play(_grid(20), "payoff", "y", 0.3, 0.6, seed=2),
        "model-b / stag_hunt": _play([r for r in _grid(20) if r["self_action"] == r["common_action"]],
                                     "positional", "x", 0.0, 0.8, seed=3, invalid=0.1),
    }
    table = G.summary_table(groups, n_boot=500)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(groups)
    n_cols = lines[0].count("|")
    assert all(line.count("|") == n_cols for line in lines)
    assert n_cols - 1 == 4 + 3 * len(G.BIASES)
    for line, (name, records) in zip(lines[2:], groups.items()):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == name and cells[1] == str(len(records))
        acc = np.mean([r["choice"] == r["correct"] for r in records])
        assert cells[2] == f"{100 * acc:.1f}"
    assert "first-listed" in lines[2] and "max-common-gain" in lines[3]
    assert "not identifiable" in lines[4]
