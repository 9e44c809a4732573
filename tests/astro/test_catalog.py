"""Tests for reading, writing and simulating mass catalogs."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from libs.astro import catalog
from libs.astro import imf
from libs.train.errors import UserError

# model, n_objects and completeness are static; theta and fractional_error are traced (one compile for both).
simulate = jax.jit(catalog.simulate, static_argnums=(1, 3, 4), static_argnames=("grid_size",))
TURNOVER = jnp.array([-0.5, 1.5, math.log10(12.0)])  # broken power law peaking at 12 M_J
LOGISTIC = imf.Completeness("logistic", m50=5.0, width=0.3)
log_p_obs = jax.jit(imf.log_p_obs, static_argnums=(0, 3))


def write(tmp_path, text, name="catalog.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_mass_catalog_with_and_without_errors(tmp_path):
    data, skipped = catalog.read_catalog(write(tmp_path, "mass,mass_err\n2.0,0.2\n12.5,2.5\n60,0\n"))
    assert skipped == []
    np.testing.assert_allclose(np.asarray(data.log_m_obs), np.log([2.0, 12.5, 60.0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(data.sigma_log_m), [0.1, 0.2, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(data.weight), [1, 1, 1])
    assert not np.any(np.asarray(data.sample_weight))

    data, _ = catalog.read_catalog(write(tmp_path, "Mass\n3.0\n# comment\n\n7.0\n"), default_fractional_error=0.15)
    np.testing.assert_allclose(np.asarray(data.log_m_obs), np.log([3.0, 7.0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(data.sigma_log_m), [0.15, 0.15], rtol=1e-6)
    data, _ = catalog.read_catalog(write(tmp_path, "id,mass,mass_err\na,4.0,\nb,8.0,0.4\n"), 0.3)
    np.testing.assert_allclose(np.asarray(data.sigma_log_m), [0.3, 0.05], rtol=1e-6)


def test_read_posterior_sample_catalog(tmp_path):
    text = "id,mass_sample\nA,10\nB,3\nA,12\nC,40\nA,11\nC,44\n"
    data, skipped = catalog.read_catalog(write(tmp_path, text))
    assert skipped == [] and data.samples_log_m.shape == (3, 3)
    np.testing.assert_array_equal(np.asarray(data.sample_weight), [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_allclose(np.exp(np.asarray(data.samples_log_m))[0], [10, 12, 11], rtol=1e-5)
    np.testing.assert_allclose(np.exp(np.asarray(data.samples_log_m))[2, :2], [40, 44], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(data.log_m_obs)[1], math.log(3.0), rtol=1e-6)
    # The likelihood averages over the real samples only.
    model, none, grid = imf.MODELS["power_law"], imf.Completeness("none"), imf.make_grid()
    log_p = np.asarray(log_p_obs(model, jnp.array([1.0]), data, none, grid))
    log_z = math.log(np.trapezoid(np.ones(400), np.asarray(grid)))  # alpha = 1: dN/dlnM is flat
    np.testing.assert_allclose(log_p, [-log_z] * 3, rtol=1e-5)


def test_bad_rows_are_skipped_and_reported_by_line(tmp_path):
    text = ("mass,mass_err\n"
            "2.0,0.2\n"       # 2 ok
            "abc,0.1\n"       # 3 non-numeric mass
            "-1.0,0.1\n"      # 4 mass <= 0
            "\n"              # 5 blank: ignored
            "0,0.1\n"         # 6 mass <= 0
            "5.0,-0.5\n"      # 7 negative error
            "6.0,x\n"         # 8 non-numeric error
            "7.0\n"           # 9 wrong field count
            "nan,0.1\n"       # 10 not finite
            "9.0,0.9\n")      # 11 ok
    data, skipped = catalog.read_catalog(write(tmp_path, text))
    assert [s.split(":")[0] for s in skipped] == [f"line {n}" for n in (3, 4, 6, 7, 8, 9, 10)]
    assert "non-numeric" in skipped[0] and "> 0" in skipped[1] and "mass_err" in skipped[3]
    assert "fields" in skipped[5]
    np.testing.assert_allclose(np.exp(np.asarray(data.log_m_obs)), [2.0, 9.0], rtol=1e-5)

    _, skipped = catalog.read_catalog(write(tmp_path, "id,mass_sample\nA,1\n,2\nA,zero\nB,-3\nB,4\n"))
    assert skipped == ["line 3: empty id", "line 4: non-numeric mass_sample 'zero'",
                       "line 5: mass_sample must be a finite number > 0, got -3"]


def test_unusable_files_raise_user_error_naming_them(tmp_path):
    cases = {
        "": "empty",
        "   \n\n": "empty",
        "mass,mass_err\n": "no usable rows",
        "mass,mass_err\n-1,0\nfoo,1\n": "no usable rows",
        "name,weight\nx,3\n": "expected 'mass'",
        "mass,mass\n1,2\n": "unknown columns",
        "id,mass_sample,mass\nA,1,2\n": "unknown columns",
        "<html><body>not a catalog</body></html>\n": "unknown columns",
    }
    for i, (text, reason) in enumerate(cases.items()):
        path = write(tmp_path, text, f"bad{i}.csv")
        with pytest.raises(UserError, match=reason) as info:
            catalog.read_catalog(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(UserError, match="binary.csv"):
        catalog.read_catalog(binary)
    with pytest.raises(UserError, match="missing.csv"):
        catalog.read_catalog(tmp_path / "missing.csv")


def test_write_then_read_round_trips(tmp_path):
    data = imf.pad_data(imf.Data.from_masses(np.log([0.7, 12.0, 55.0]), [0.1, 0.0, 0.25]), 5)
    catalog.write_catalog(tmp_path / "out" / "masses.csv", data)
    back, skipped = catalog.read_catalog(tmp_path / "out" / "masses.csv")
    assert skipped == [] and back.log_m_obs.shape == (3,)  # padding is not written
    np.testing.assert_allclose(np.asarray(back.log_m_obs), np.asarray(data.log_m_obs)[:3], atol=1e-6)
    np.testing.assert_allclose(np.asarray(back.sigma_log_m), np.asarray(data.sigma_log_m)[:3], atol=1e-6)

    samples = imf.Data.from_samples(np.log([[1.0, 2.0], [3.0, 4.0]]), [[1, 1], [1, 0]])
    catalog.write_catalog(tmp_path / "samples.csv", samples)
    back, _ = catalog.read_catalog(tmp_path / "samples.csv")
    np.testing.assert_allclose(np.asarray(back.samples_log_m), np.log([[1.0, 2.0], [3.0, 1.0]]), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(back.sample_weight), [[1, 1], [1, 0]])


def _p_obs_cdf(theta, completeness):
    """CDF in ln M of c(M) f(M) on [0.5, 100], from the formulas in float64 on a fine grid (independent of imf)."""
    alpha_low, alpha_high, log10_mb = theta
    x = np.linspace(math.log(0.5), math.log(100.0), 200_001)
    slope = np.where(x < log10_mb * math.log(10), alpha_low, alpha_high)
    log_f = x - slope * (x - log10_mb * math.log(10))
    c = 1.0 / (1.0 + np.exp(-(x - math.log(completeness.m50)) / completeness.width))
    pdf = np.exp(log_f) * c
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(x))])
    return lambda v: np.interp(v, x, cdf / cdf[-1])


def test_simulated_masses_follow_the_observed_mass_function():
    n = 2000
    data = simulate(jax.random.key(0), imf.MODELS["broken_power_law"], TURNOVER, n, LOGISTIC, 0.0)
    log_m = np.asarray(data.log_m_obs, np.float64)
    assert log_m.shape == (n,) and np.all(np.asarray(data.sigma_log_m) == 0)
    assert log_m.min() >= math.log(0.5) - 1e-6 and log_m.max() <= math.log(100.0) + 1e-6
    theta = [float(t) for t in TURNOVER]
    assert stats.kstest(log_m, _p_obs_cdf(theta, LOGISTIC)).pvalue > 0.01
    # The test has power: the same sample is far from the model without detection, or with another break.
    assert stats.kstest(log_m, _p_obs_cdf(theta, imf.Completeness("logistic", m50=0.01))).pvalue < 1e-4
    assert stats.kstest(log_m, _p_obs_cdf([-0.5, 1.5, 1.3], LOGISTIC)).pvalue < 1e-4


def test_simulated_noise_and_vmap_over_keys():
    model, key = imf.MODELS["broken_power_law"], jax.random.key(1)
    exact = simulate(key, model, TURNOVER, 2000, LOGISTIC, 0.0)  # the same compiled shape as the KS test
    noisy = simulate(key, model, TURNOVER, 2000, LOGISTIC, 0.1)
    residual = np.asarray(noisy.log_m_obs) - np.asarray(exact.log_m_obs)  # same true masses for one key
    assert abs(residual.mean()) < 0.01 and residual.std() == pytest.approx(0.1, rel=0.05)
    np.testing.assert_allclose(np.asarray(noisy.sigma_log_m), 0.1)
    np.testing.assert_array_equal(np.asarray(noisy.weight), 1.0)

    keys = jax.random.split(jax.random.key(2), 3)
    batch = jax.jit(jax.vmap(lambda k: catalog.simulate(k, model, TURNOVER, 2000, LOGISTIC, 0.1)))(keys)
    assert batch.log_m_obs.shape == (3, 2000)
    np.testing.assert_allclose(np.asarray(batch.log_m_obs[1]),
                               np.asarray(simulate(keys[1], model, TURNOVER, 2000, LOGISTIC, 0.1).log_m_obs),
                               rtol=1e-5)
    assert not np.allclose(np.asarray(batch.log_m_obs[0]), np.asarray(batch.log_m_obs[1]))
