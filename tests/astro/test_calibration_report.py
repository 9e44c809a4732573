"""The calibration's pairwise preference and its report (tools/imf_calibration), from given figures: fast."""

import os

import numpy as np

from libs.astro import calibration
from tools import imf_calibration


def _row(n_objects, broken, power, lognormal):
    log_z = {"power_law": power, "broken_power_law": broken, "lognormal": lognormal}
    cover = (0.7, 0.6, 0.8)
    return {"n_objects": n_objects, "n_catalogs": len(broken), "log_z": log_z,
            "coverage": {"alpha_low": cover, "alpha_high": cover, "log10_m_break": cover},
            "prefer_broken": (0.25, 0.05, 0.7), "median_ln_bayes_factor": -0.5,
            "converged": {"broken_power_law": 0.5},
            "seconds_per_fit": {"power_law": 0.1, "broken_power_law": 0.2, "lognormal": 0.3}}


def test_preference_counts_each_pair():
    log_z = {"broken_power_law": [0.0, 0.0, 0.0, 0.0], "power_law": [-5.0, -3.0, -1.0, 1.0],
             "lognormal": [1.0, 1.0, -1.0, 2.0]}
    pref = calibration.preference(log_z, "broken_power_law")
    assert set(pref) == {"power_law", "lognormal"}
    assert pref["power_law"]["rate"][0] == 0.75 and pref["power_law"]["median_ln_b"] == 2.0
    assert pref["lognormal"]["rate"][0] == 0.25 and pref["lognormal"]["median_ln_b"] == -1.0
    low, high = pref["lognormal"]["rate"][1:]
    assert 0 < low < 0.25 < high < 1


def test_report_is_sorted_by_size_and_derives_pairs_from_saved_log_z(tmp_path):
    rows = [_row(300, [0.0, 0.0], [-9.0, -8.0], [-1.0, 1.0]), _row(48, [0.0, 0.0, 0.0, 0.0], [-2.0] * 4, [1.0] * 4)]
    meta = {"stamp": "2026-01-01 00:00 UTC", "device": "test", "jax": "x", "minutes": 1.0, "command": "cmd"}
    base = os.path.join(tmp_path, "cal")
    imf_calibration.write_report(base, rows, [], meta)
    text = open(base + ".md").read()
    table = [line for line in text.splitlines() if line.startswith("| 48 ") or line.startswith("| 300 ")]
    assert [line.split("|")[1].strip() for line in table] == ["48", "300"]
    assert "100% [51, 100], ln B 2.0" in table[0] and "0% [0, 49], ln B -1.0" in table[0]  # over PL, over LN
    assert "50% [9, 91], ln B 0.0" in table[1]  # over the log-normal at 300: one catalog of two
    assert os.path.getsize(base + ".png") > 10_000 and np.isfinite(rows[0]["prefer_over"]["lognormal"]["median_ln_b"])
