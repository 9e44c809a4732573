"""NUTS posteriors and nested-sampling evidence for the IMF models (libs/astro/inference.py); tiny settings."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.astro import catalog, imf, inference

SETTINGS = inference.NutsSettings(num_chains=2, num_warmup=200, num_samples=300)
GRID = imf.make_grid(n=200)  # coarser than the default 400: the likelihood is ~2x cheaper
NO_COMPLETENESS = imf.Completeness("none")
POWER_LAW = imf.MODELS["power_law"]
BROKEN = imf.MODELS["broken_power_law"]


_simulate_jit = jax.jit(catalog.simulate, static_argnums=(1, 3, 4))
_log_likelihood_jit = jax.jit(imf.log_likelihood, static_argnums=(0, 3))


def _simulate(seed, model, theta, n_objects, fractional_error=1e-3):
    """A catalog; observed masses are clipped onto the grid (tiny errors are evaluated at the point, where a mass
    pushed a hair past m_min or m_max would otherwise have density 0)."""
    data = _simulate_jit(jax.random.key(seed), model, jnp.asarray(theta, jnp.float32), n_objects, NO_COMPLETENESS,
                         fractional_error)
    data = imf.Data(jnp.clip(data.log_m_obs, GRID[0], GRID[-1]), data.sigma_log_m, data.weight, data.samples_log_m,
                    data.sample_weight)
    assert np.isfinite(_log_likelihood_jit(model, jnp.asarray(theta, jnp.float32), data, NO_COMPLETENESS, GRID))
    return data


def _with_garbage_padding(data: imf.Data, n_pad: int) -> imf.Data:
    """Appends n_pad weight-0 rows at 90 M_J: they would pull alpha down by many std if they were counted."""
    padded = imf.pad_data(data, data.n_objects + n_pad)
    real = np.arange(padded.n_objects) < data.n_objects
    return imf.Data(jnp.where(real, padded.log_m_obs, math.log(90.0)), padded.sigma_log_m, padded.weight,
                    padded.samples_log_m, padded.sample_weight)


@pytest.fixture(scope="module")
def alpha_one_catalog():
    return _simulate(0, POWER_LAW, [1.0], 300)


@pytest.fixture(scope="module")
def alpha_one_fit(alpha_one_catalog):
    return inference.sample_posterior(jax.random.key(1), POWER_LAW, alpha_one_catalog, NO_COMPLETENESS, GRID,
                                      SETTINGS)


@pytest.mark.slow  # compiles and runs NUTS / nested sampling: ~10-20 s each on 2 cores
def test_power_law_posterior_recovers_alpha(alpha_one_fit):
    fit = alpha_one_fit
    stats = fit.summary()["alpha"]
    assert fit.samples.shape == (2, 300, 1) and fit.params == ("alpha",) and fit.model == "power_law"
    assert abs(stats["mean"] - 1.0) < 3 * stats["std"], stats
    assert 0.01 < stats["std"] < 0.1, stats  # informative: ~1/sqrt(300 * var(ln M)) ~ 0.04, not the prior's 2.9
    assert stats["p16"] < stats["p50"] < stats["p84"]
    assert stats["rhat"] < 1.05 and fit.divergences == 0, stats
    low, high = fit.interval("alpha", 0.68)
    assert low == pytest.approx(stats["p16"], abs=1e-6) and high == pytest.approx(stats["p84"], abs=1e-6)
    assert fit.seconds > 0


@pytest.mark.slow  # compiles and runs NUTS / nested sampling: ~10-20 s each on 2 cores
def test_sampler_stays_inside_the_prior_box(alpha_one_fit, alpha_one_catalog):
    (low, high), = POWER_LAW.bounds
    assert np.all((alpha_one_fit.samples > low) & (alpha_one_fit.samples < high))
    # Far out in z (theta rounded onto the box edge) the density stays finite, so NUTS can never step onto -inf.
    density = jax.jit(inference.log_density_unconstrained, static_argnums=(0, 3))
    for z in (-40.0, -17.0, 0.0, 17.0, 40.0):
        value = density(POWER_LAW, jnp.array([z]), alpha_one_catalog, NO_COMPLETENESS, GRID)
        assert np.isfinite(value), z
    # With every object weighted 0 the posterior is the uniform prior: checks the log-Jacobian of the transform.
    no_objects = imf.Data(alpha_one_catalog.log_m_obs, alpha_one_catalog.sigma_log_m,
                          jnp.zeros_like(alpha_one_catalog.weight), alpha_one_catalog.samples_log_m,
                          alpha_one_catalog.sample_weight)
    prior = inference.sample_posterior(jax.random.key(8), POWER_LAW, no_objects, NO_COMPLETENESS, GRID, SETTINGS)
    draws = prior.samples.reshape(-1)
    assert np.all((draws > low) & (draws < high))
    assert abs(draws.mean() - 1.0) < 0.6 and abs(draws.std() - 10 / math.sqrt(12)) < 0.4, prior.summary()
    assert np.histogram(draws, bins=5, range=(low, high))[0].min() > 0.1 * draws.size
    theta = inference.to_parameters(BROKEN, jnp.array([-40.0, 0.0, 40.0]))
    assert np.isfinite(imf.log_prior(BROKEN, jnp.clip(theta, *np.asarray(BROKEN.bounds, np.float32).T)))


@pytest.mark.slow  # compiles and runs NUTS / nested sampling: ~10-20 s each on 2 cores
def test_convergence_flag_and_warning(alpha_one_fit, caplog):
    tiny = inference.NutsSettings(num_chains=2, num_warmup=5, num_samples=10)
    data = _simulate(3, POWER_LAW, [1.0], 48)
    with caplog.at_level("WARNING"):
        fit = inference.sample_posterior(jax.random.key(4), POWER_LAW, data, NO_COMPLETENESS, GRID, tiny)
    assert not fit.converged
    assert any("power_law" in r.getMessage() and "alpha" in r.getMessage() for r in caplog.records), caplog.text
    # The same flag is True for a good run judged by thresholds it meets (and then nothing is logged).
    good = alpha_one_fit

    def judge(settings, divergent=None):
        divergent = np.zeros((2, 300), bool) if divergent is None else divergent
        return inference.diagnose(POWER_LAW, good.samples, divergent, good.rhat, good.ess, 1.0, settings)

    caplog.clear()
    loose = inference.NutsSettings(rhat_max=1.05, min_ess=50.0)
    with caplog.at_level("WARNING"):
        assert judge(loose).converged
    assert not caplog.records
    assert not judge(inference.NutsSettings(rhat_max=1.05, min_ess=1e6)).converged
    assert not judge(inference.NutsSettings(rhat_max=1.0, min_ess=50.0)).converged
    one_divergence = np.zeros((2, 300), bool)
    one_divergence[1, 7] = True
    assert not judge(loose, one_divergence).converged


@pytest.fixture(scope="module")
def small_catalog_fit():
    """200 objects from alpha = 0.4, fitted unpadded (the padding and batching tests compare against it)."""
    data = _simulate(5, POWER_LAW, [0.4], 200)
    return data, inference.sample_posterior(jax.random.key(6), POWER_LAW, data, NO_COMPLETENESS, GRID, SETTINGS)


@pytest.mark.slow  # compiles and runs NUTS / nested sampling: ~10-20 s each on 2 cores
def test_weight_zero_padding_does_not_change_the_posterior(small_catalog_fit):
    data, unpadded = small_catalog_fit
    padded = inference.sample_posterior(jax.random.key(6), POWER_LAW, _with_garbage_padding(data, 100),
                                        NO_COMPLETENESS, GRID, SETTINGS)
    a, b = unpadded.summary()["alpha"], padded.summary()["alpha"]
    assert abs(a["mean"] - b["mean"]) < 0.25 * a["std"], (a, b)
    assert b["std"] == pytest.approx(a["std"], rel=0.2)


@pytest.mark.slow  # compiles and runs NUTS / nested sampling: ~10-20 s each on 2 cores
def test_batched_posteriors_match_per_catalog_runs(alpha_one_catalog, alpha_one_fit, small_catalog_fit):
    small, small_fit = small_catalog_fit
    steep = _simulate(11, POWER_LAW, [1.7], 300)
    steep_fit = inference.sample_posterior(jax.random.key(12), POWER_LAW, steep, NO_COMPLETENESS, GRID, SETTINGS)
    # 300 objects each; the second catalog is the 200-object one padded with weight-0 rows at 90 M_J.
    batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), alpha_one_catalog,
                                   _with_garbage_padding(small, 100), steep)
    batched = inference.sample_posteriors_batched(jax.random.key(7), POWER_LAW, batch, NO_COMPLETENESS, GRID,
                                                  SETTINGS)
    assert len(batched) == 3 and all(isinstance(p, inference.Posterior) for p in batched)
    for i, (fit, single, alpha) in enumerate(zip(batched, [alpha_one_fit, small_fit, steep_fit], [1.0, 0.4, 1.7])):
        a, b = fit.summary()["alpha"], single.summary()["alpha"]
        assert fit.samples.shape == (2, 300, 1) and fit.model == "power_law"
        assert abs(a["mean"] - b["mean"]) < 3 * min(a["std"], b["std"]), (i, a, b)
        assert b["std"] == pytest.approx(a["std"], rel=0.3), (i, a, b)
        assert abs(a["mean"] - alpha) < 3 * a["std"], (i, a)  # each catalog got its own data, in order
        assert a["rhat"] < 1.05 and fit.divergences == 0, (i, a)


@pytest.mark.slow  # compiles and runs NUTS / nested sampling: ~10-20 s each on 2 cores
def test_evidence_prefers_the_broken_law_for_a_turnover():
    data = _simulate(30, BROKEN, [-1.5, 2.0, math.log10(12.0)], 200, fractional_error=0.1)
    power = inference.evidence(POWER_LAW, data, NO_COMPLETENESS, GRID, nlive=100)
    broken = inference.evidence(BROKEN, data, NO_COMPLETENESS, GRID, nlive=100)
    assert broken.log_z - power.log_z > 2.0, (power, broken)
    assert power.log_z_err > 0 and broken.log_z_err > 0 and broken.model == "broken_power_law"
    rows = inference.compare([power, broken])
    assert [r["model"] for r in rows] == ["broken_power_law", "power_law"]


@pytest.mark.slow  # compiles and runs NUTS / nested sampling: ~10-20 s each on 2 cores
def test_evidence_matches_quadrature_for_one_parameter():
    data = _simulate(31, POWER_LAW, [1.3], 25, fractional_error=0.1)
    result = inference.evidence(POWER_LAW, data, NO_COMPLETENESS, GRID, nlive=100, seed=1)
    (low, high), = POWER_LAW.bounds
    alphas = jnp.linspace(low, high, 1001)  # posterior std ~0.15 >> spacing 0.01
    log_like_on_grid = jax.jit(jax.vmap(lambda a: imf.log_likelihood(POWER_LAW, a[None], data, NO_COMPLETENESS, GRID)))
    log_like = np.asarray(log_like_on_grid(alphas), np.float64)
    step = (high - low) / 1000
    log_trapezoid = np.log(np.r_[0.5, np.ones(999), 0.5] * step)
    log_z = np.logaddexp.reduce(log_like + log_trapezoid) - math.log(high - low)
    assert abs(result.log_z - log_z) < 3 * result.log_z_err + 0.2, (result, log_z)


def test_compare_orders_and_labels():
    evidences = [inference.Evidence("d", -104.0, 0.1, 1.0), inference.Evidence("a", -100.0, 0.1, 1.0),
                 inference.Evidence("e", -110.0, 0.2, 1.0), inference.Evidence("b", -100.5, 0.1, 1.0),
                 inference.Evidence("c", -102.0, 0.1, 1.0)]
    rows = inference.compare(evidences)
    assert [r["model"] for r in rows] == ["a", "b", "c", "d", "e"]
    assert [r["strength"] for r in rows] == ["best", "inconclusive", "weak", "moderate", "strong"]
    assert [r["delta_log_z"] for r in rows] == pytest.approx([0.0, -0.5, -2.0, -4.0, -10.0])
    assert rows[2]["bayes_factor"] == pytest.approx(math.exp(2.0))
    assert rows[4]["delta_log_z_err"] == pytest.approx(math.hypot(0.1, 0.2))
    assert [inference.jeffreys_strength(x) for x in (0.99, 1.0, 2.49, 2.5, 4.99, 5.0)] == [
        "inconclusive", "weak", "weak", "moderate", "moderate", "strong"]
    assert inference.compare([]) == []
