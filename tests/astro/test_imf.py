"""Tests for the IMF models, completeness, likelihood and the completeness-table reader."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from libs.astro import imf
from libs.train.errors import UserError

LN_MIN, LN_MAX = math.log(0.5), math.log(100.0)
GRID = imf.make_grid()
# Jitted once per (model, completeness, shapes): eager JAX compiles every primitive separately and is much slower.
log_likelihood = jax.jit(imf.log_likelihood, static_argnums=(0, 3))
log_p_obs = jax.jit(imf.log_p_obs, static_argnums=(0, 3))
mass_function = jax.jit(imf.mass_function, static_argnums=(0, 3))
log_prior = jax.jit(imf.log_prior, static_argnums=0)
log_posterior = jax.jit(imf.log_posterior, static_argnums=(0, 3))
log_shape = jax.jit(lambda model, theta, log_m: model.log_shape(theta, log_m), static_argnums=0)


def numpy_log_shape(name, theta, log_m):
    """log dN/dlnM straight from the definitions in the brief, in float64."""
    m = np.exp(np.asarray(log_m, np.float64))
    if name == "power_law":
        dn_dm = m ** -theta[0]
    elif name == "broken_power_law":
        alpha_low, alpha_high, log10_mb = theta
        mb = 10.0**log10_mb
        dn_dm = np.where(m < mb, (m / mb) ** -alpha_low, (m / mb) ** -alpha_high)
    else:
        log10_mc, sigma = theta
        return -((np.log10(m) - log10_mc) ** 2) / (2 * sigma**2)  # dN/dlog10M and dN/dlnM differ by a constant
    return np.log(m * dn_dm)


def numpy_step_log_c(log_m, m50):
    return np.where(np.exp(log_m) >= m50, 0.0, math.log(1e-30))


def test_mass_function_normalised_and_shaped_for_every_model():
    rng = np.random.default_rng(0)
    grid64 = np.asarray(GRID, np.float64)
    for name, model in imf.MODELS.items():
        for theta in model.sample_prior_transform(rng.uniform(size=(4, model.dim))):
            mf = np.asarray(mass_function(model, jnp.asarray(theta, jnp.float32), GRID), np.float64)
            assert np.trapezoid(mf, grid64) == pytest.approx(1.0, abs=1e-4), (name, theta)
            log_ref = numpy_log_shape(name, theta, grid64)
            ref = np.exp(log_ref - log_ref.max())
            ref /= np.trapezoid(ref, grid64)
            np.testing.assert_allclose(mf, ref, rtol=2e-3, atol=1e-6 * ref.max(), err_msg=f"{name} {theta}")
    # With a completeness: the observed distribution, also normalised.
    model = imf.MODELS["power_law"]
    mf = mass_function(model, jnp.array([1.2]), GRID, imf.Completeness("logistic", m50=3.0, width=0.3))
    assert float(jnp.trapezoid(mf, GRID)) == pytest.approx(1.0, abs=1e-4)
    assert float(mf[0]) < 0.05 * float(mass_function(model, jnp.array([1.2]), GRID)[0])


def test_broken_power_law_continuous_with_the_given_slopes():
    model = imf.MODELS["broken_power_law"]
    for alpha_low, alpha_high, log10_mb in [(-0.5, 1.5, math.log10(12.0)), (5.0, -3.0, 0.3), (-4.0, 6.0, 1.8)]:
        theta = jnp.array([alpha_low, alpha_high, log10_mb])
        ln_b = log10_mb * math.log(10.0)
        eps = 1e-3
        below, above = np.asarray(log_shape(model, theta, jnp.array([ln_b - eps, ln_b + eps])))
        assert abs(above - below) < 2e-2, (alpha_low, alpha_high)
        # log dN/dlnM = (1 - alpha) ln M + const on each side.
        lo, hi = np.asarray(log_shape(model, theta, ln_b + jnp.array([[-0.5, -0.3], [0.3, 0.5]])))
        assert (lo[1] - lo[0]) / 0.2 == pytest.approx(1 - alpha_low, abs=1e-3)
        assert (hi[1] - hi[0]) / 0.2 == pytest.approx(1 - alpha_high, abs=1e-3)
    # The NGC 2024 turnover: dN/dM peaks at the break when alpha_low < 0 < alpha_high.
    theta = jnp.array([-0.5, 1.5, math.log10(12.0)])
    dn_dm = mass_function(model, theta, GRID) / jnp.exp(GRID)
    assert float(jnp.exp(GRID[jnp.argmax(dn_dm)])) == pytest.approx(12.0, rel=0.02)


def test_log_likelihood_matches_numpy_step_completeness():
    masses = np.array([2.5, 5.0, 10.0, 30.0, 80.0])
    data = imf.Data.from_masses(np.log(masses))
    completeness = imf.Completeness("step", m50=2.0)
    grid64 = np.asarray(GRID, np.float64)
    for name, theta in [("power_law", [0.8]), ("broken_power_law", [-0.5, 1.5, math.log10(12.0)])]:
        model = imf.MODELS[name]
        cf_grid = np.exp(numpy_log_shape(name, theta, grid64) + numpy_step_log_c(grid64, 2.0))
        log_z = np.log(np.trapezoid(cf_grid, grid64))
        expected = np.sum(numpy_log_shape(name, theta, np.log(masses)) - log_z)  # c = 1 at all masses
        got = float(log_likelihood(model, jnp.array(theta, jnp.float32), data, completeness, GRID))
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-3), name


def test_step_completeness_floor_keeps_undetectable_objects_finite():
    model, theta = imf.MODELS["power_law"], jnp.array([0.8])
    completeness = imf.Completeness("step", m50=2.0)
    assert float(completeness.log_c(math.log(1.0))) == pytest.approx(math.log(imf.COMPLETENESS_FLOOR))
    assert float(completeness.log_c(math.log(2.0))) == 0.0
    logistic = imf.Completeness("logistic", m50=50.0, width=0.05)
    assert float(logistic.log_c(math.log(0.5))) == pytest.approx(math.log(imf.COMPLETENESS_FLOOR))

    detected = log_likelihood(model, theta, imf.Data.from_masses(np.log([5.0])), completeness, GRID)
    both = log_likelihood(model, theta, imf.Data.from_masses(np.log([5.0, 1.0])), completeness, GRID)
    assert np.isfinite(float(both))
    z = np.trapezoid(np.exp(numpy_log_shape("power_law", [0.8], GRID) + numpy_step_log_c(GRID, 2.0)), GRID)
    # The object below m50 costs log(1e-30 * f(1) / Z).
    expected = math.log(1e-30) + numpy_log_shape("power_law", [0.8], 0.0) - math.log(z)
    assert float(both - detected) == pytest.approx(expected, rel=1e-4)


def test_measurement_errors_match_quadrature():
    model, theta = imf.MODELS["power_law"], [1.3]
    completeness = imf.Completeness("logistic", m50=2.0, width=0.3)

    def cf(y):
        return math.exp(float(numpy_log_shape("power_law", theta, y))) / (1 + math.exp(-(y - math.log(2.0)) / 0.3))

    z = integrate.quad(cf, LN_MIN, LN_MAX)[0]
    masses, sigmas = np.array([3.0, 0.6, 120.0]), np.array([0.3, 0.2, 0.15])

    def smeared(x, s):
        kernel = lambda y: math.exp(-0.5 * ((x - y) / s) ** 2) / (s * math.sqrt(2 * math.pi))
        return integrate.quad(lambda y: kernel(y) * cf(y), LN_MIN, LN_MAX, points=[x])[0] / z

    expected = [math.log(smeared(x, s)) for x, s in zip(np.log(masses), sigmas)]
    got = log_p_obs(model, jnp.array(theta), imf.Data.from_masses(np.log(masses), sigmas), completeness, GRID)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-3)
    # A sigma below the grid spacing is evaluated at the point, like an exact mass.
    tiny = log_p_obs(model, jnp.array(theta), imf.Data.from_masses(np.log([3.0]), [1e-4]), completeness, GRID)
    exact = log_p_obs(model, jnp.array(theta), imf.Data.from_masses(np.log([3.0])), completeness, GRID)
    assert float(tiny[0]) == float(exact[0]) == pytest.approx(math.log(cf(math.log(3.0)) / z), rel=1e-3)
    # An exact mass off the grid has density 0.
    off = log_p_obs(model, jnp.array(theta), imf.Data.from_masses(np.log([150.0])), completeness, GRID)
    assert float(off[0]) == -np.inf


def test_posterior_samples_average_with_padding():
    model, theta = imf.MODELS["broken_power_law"], [-0.5, 1.5, math.log10(12.0)]
    completeness = imf.Completeness("step", m50=1.0)
    samples = [[3.0, 4.0, 5.0, 6.0], [20.0, 200.0], [0.8]]  # 200 is off the grid (density 0), 0.8 is undetectable
    log_s = np.zeros((3, 4))
    sw = np.zeros((3, 4))
    for i, row in enumerate(samples):
        log_s[i, :len(row)] = np.log(row)
        sw[i, :len(row)] = 1.0
    data = imf.Data.from_samples(log_s, sw)
    z = np.trapezoid(np.exp(numpy_log_shape("broken_power_law", theta, GRID) + numpy_step_log_c(GRID, 1.0)), GRID)

    def cf(m):
        inside = 0.5 <= m <= 100.0
        return inside * math.exp(float(numpy_log_shape("broken_power_law", theta, math.log(m)))
                                 + float(numpy_step_log_c(math.log(m), 1.0)))

    expected = [math.log(np.mean([cf(m) for m in row]) / z) for row in samples]
    got = log_p_obs(model, jnp.array(theta), data, completeness, GRID)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4)


def _mixed_catalogs():
    rng = np.random.default_rng(3)
    measured = imf.Data.from_masses(rng.uniform(0.0, 4.0, 5), [0.0, 0.1, 0.3, 0.0, 0.05])
    sample_weight = np.ones((4, 6))
    sample_weight[1, 3:] = sample_weight[3, 1:] = 0.0
    samples = imf.Data.from_samples(rng.uniform(-0.5, 4.0, (4, 6)), sample_weight)
    exact = imf.Data.from_masses(np.log([1.5, 2.0, 8.0, 9.0, 11.0, 13.0, 25.0, 40.0, 60.0]))
    return [measured, samples, exact]


def test_vmap_over_padded_catalogs_and_thetas_equals_single_values():
    model = imf.MODELS["broken_power_law"]
    completeness = imf.Completeness("logistic", m50=1.0, width=0.2)
    thetas = jnp.array([[-0.5, 1.5, math.log10(12.0)], [0.5, 2.0, 0.5]])
    catalogs = _mixed_catalogs()
    batch = imf.stack_data(catalogs)
    assert batch.log_m_obs.shape == (3, 9) and batch.samples_log_m.shape == (3, 9, 6)
    per_data = jax.vmap(lambda t, d: imf.log_likelihood(model, t, d, completeness, GRID), in_axes=(None, 0))
    batched = np.asarray(jax.jit(jax.vmap(per_data, in_axes=(0, None)))(thetas, batch))
    single = np.array([[float(log_likelihood(model, t, d, completeness, GRID)) for d in catalogs] for t in thetas])
    np.testing.assert_allclose(batched, single, rtol=1e-5)
    assert len(set(np.round(single.ravel(), 3))) == 6
    # The gradient stays finite with every kind of object and padding present.
    padded = imf.pad_data(catalogs[1], 7, 8)
    grad = jax.jit(jax.grad(lambda t: imf.log_likelihood(model, t, padded, completeness, GRID)))(thetas[0])
    assert np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0)


def test_prior_box_and_transform():
    model = imf.MODELS["broken_power_law"]
    assert model.bounds[2] == pytest.approx((math.log10(0.5) + 0.1, 1.9))
    volume = 10.0 * 10.0 * (1.9 - math.log10(0.5) - 0.1)
    assert float(log_prior(model, jnp.array([0.0, 1.0, 1.0]))) == pytest.approx(-math.log(volume), rel=1e-6)
    assert float(log_prior(model, jnp.array([0.0, 6.5, 1.0]))) == -np.inf
    assert float(log_prior(model, jnp.array([0.0, 1.0, -0.3]))) == -np.inf
    np.testing.assert_allclose(model.sample_prior_transform([0.0, 1.0, 0.5]),
                               [-4.0, 6.0, (math.log10(0.5) + 0.1 + 1.9) / 2])
    data = imf.Data.from_masses(np.log([3.0, 12.0]))
    none = imf.Completeness("none")
    assert float(log_posterior(model, jnp.array([9.0, 1.0, 1.0]), data, none, GRID)) == -np.inf
    inside = jnp.array([0.0, 1.0, 1.0])
    assert float(log_posterior(model, inside, data, none, GRID)) == pytest.approx(
        float(log_prior(model, inside) + log_likelihood(model, inside, data, none, GRID)))


def test_load_completeness_table(tmp_path):
    path = tmp_path / "completeness.csv"
    path.write_text("mass,completeness\n# from injection-recovery\n0.5,0.0\n2.0,0.5\n\n8.0,1.0\n")
    table = imf.load_completeness_table(path)
    assert table.kind == "table" and table.table_m == (0.5, 2.0, 8.0) and table.table_c == (0.0, 0.5, 1.0)
    c = np.exp(np.asarray(table.log_c(jnp.log(jnp.array([0.1, 1.0, 4.0, 50.0])))))
    np.testing.assert_allclose(c, [1e-30, 0.25, 0.75, 1.0], rtol=1e-4)  # linear in ln M, clamped, floored

    bad = {
        "mass,c\n1,0.5\n2,1\n": "line 1",
        "mass,completeness\n1,0.5\n2,abc\n": "line 3",
        "mass,completeness\n1,0.5\n0.8,1\n": "line 3",
        "mass,completeness\n1,1.5\n2,1\n": "line 2",
        "mass,completeness\n1,0.5,3\n2,1\n": "line 2",
        "mass,completeness\n1,0.5\n": "two rows",
        "": "empty",
    }
    for text, where in bad.items():
        path.write_text(text)
        with pytest.raises(UserError, match=where) as info:
            imf.load_completeness_table(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(UserError, match=str(path)):
        imf.load_completeness_table(path)
    with pytest.raises(UserError, match="missing.csv"):
        imf.load_completeness_table(tmp_path / "missing.csv")
