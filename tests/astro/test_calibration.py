"""A short calibration: batched fits, importance-sampled evidence against dynesty, coverage and preference.

Slow (about a minute of NUTS and nested sampling on 2 cores): `make test-slow`; the full calibration is
`tools/imf_calibration` (docs/imf.md)."""

import math

import jax
import numpy as np
import pytest

from libs.astro import calibration, imf, inference

pytestmark = pytest.mark.slow
SETTINGS = inference.NutsSettings(num_chains=2, num_warmup=150, num_samples=250)


@pytest.fixture(scope="module")
def short_run():
    models = {name: imf.MODELS[name] for name in ("power_law", "broken_power_law")}
    grid = imf.make_grid(n=120)
    completeness = imf.Completeness(kind="logistic", m50=1.0, width=0.3)
    truth = [-1.5, 2.0, math.log10(12.0)]  # a strong turnover: the broken law should win at 150 objects
    result = calibration.calibrate(jax.random.PRNGKey(0), 4, 150, models, "broken_power_law", truth, completeness,
                                   grid, SETTINGS, n_draws=1500)
    return result, models, completeness, grid


def test_short_calibration_reports_coverage_and_preference(short_run):
    result, _, _, _ = short_run
    assert set(result["coverage"]) == {"alpha_low", "alpha_high", "log10_m_break"}
    for rate, low, high in result["coverage"].values():
        assert 0 <= low <= rate <= high <= 1
    assert result["prefer_broken"][0] >= 0.75  # 4 catalogs of a strong turnover
    assert result["median_ln_bayes_factor"] > 2
    assert result["prefer_over"]["power_law"]["rate"] == result["prefer_broken"]  # the only other model here
    assert all(e > 50 for e in result["importance_ess_median"].values())


def test_importance_sampled_evidence_agrees_with_dynesty(short_run):
    result, models, completeness, grid = short_run
    rows = calibration.compare_with_nested_sampling(result, models, completeness, grid, catalogs=1, nlive=150)
    for row in rows:
        assert abs(row["difference"]) < 3 * row["dynesty_err"] + 0.3, row


def test_simulated_batch_has_the_requested_shape():
    data = calibration.simulate_catalogs(jax.random.PRNGKey(1), 3, imf.MODELS["power_law"], [1.0], 20,
                                         imf.Completeness(kind="none"), 0.1, 0.5, 100.0)
    assert data.log_m_obs.shape == (3, 20) and np.all(np.asarray(data.weight) == 1)
