"""Calibration over simulated catalogs: interval coverage and how often the evidence prefers the broken law.

Catalogs are simulated from a truth model (vmapped over keys), every model is fitted to all of them in one batched
NUTS call per model (vmapped over catalogs and chains), and each fit's evidence is estimated by importance sampling
from its own posterior: a multivariate Student-t fitted to the NUTS draws in the sampler's unconstrained space
proposes `n_draws` points, and log Z = logsumexp(log p(z) - log q(z)) - log n, vmapped over catalogs. This is
exact in expectation for any proposal that covers the posterior; `compare_with_nested_sampling` checks it against
dynesty on a few catalogs (the binary's own evidence), and the effective sample size of the weights is reported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from libs.astro import catalog, imf, inference
from libs.evals.stats import wilson_interval

STUDENT_DF = 4.0
SCALE_INFLATION = 1.3


def simulate_catalogs(key, n_catalogs: int, model: imf.Model, theta, n_objects: int,
                      completeness: imf.Completeness, fractional_error: float, m_min: float, m_max: float) -> imf.Data:
    """A batch (leading axis) of simulated catalogs."""
    keys = jax.random.split(key, n_catalogs)
    theta = jnp.asarray(theta, jnp.float32)
    return jax.vmap(lambda k: catalog.simulate(k, model, theta, n_objects, completeness, fractional_error, m_min,
                                               m_max))(keys)


def _to_z(model: imf.Model, theta: np.ndarray) -> np.ndarray:
    low, high = (np.asarray(b, np.float64) for b in zip(*model.bounds))
    u = np.clip((theta - low) / (high - low), 1e-6, 1 - 1e-6)
    return np.log(u) - np.log1p(-u)


def _student_t_log_density(z, mean, chol, df):
    dim = mean.shape[-1]
    solved = jax.scipy.linalg.solve_triangular(chol, (z - mean).T, lower=True).T
    maha = jnp.sum(solved ** 2, -1)
    log_det = jnp.sum(jnp.log(jnp.diag(chol)))
    return (jax.scipy.special.gammaln((df + dim) / 2) - jax.scipy.special.gammaln(df / 2)
            - 0.5 * dim * jnp.log(df * jnp.pi) - log_det - 0.5 * (df + dim) * jnp.log1p(maha / df))


def _importance(key, model, mean, chol, data, completeness, grid, n_draws):
    dim = mean.shape[-1]
    k1, k2 = jax.random.split(key)
    normal = jax.random.normal(k1, (n_draws, dim))
    scale = jnp.sqrt(STUDENT_DF / jax.random.gamma(k2, STUDENT_DF / 2, (n_draws, 1)) / 2)
    z = mean + scale * normal @ chol.T
    log_p = jax.vmap(lambda x: inference.log_density_unconstrained(model, x, data, completeness, grid))(z)
    log_w = jnp.where(jnp.isfinite(log_p), log_p - _student_t_log_density(z, mean, chol, STUDENT_DF), -jnp.inf)
    log_z = jax.scipy.special.logsumexp(log_w) - jnp.log(n_draws)
    weights = jnp.exp(log_w - jnp.max(log_w))
    ess = jnp.sum(weights) ** 2 / jnp.sum(weights ** 2)
    return log_z, ess


_importance_batched = jax.jit(jax.vmap(_importance, in_axes=(0, None, 0, 0, 0, None, None, None)),
                              static_argnums=(1, 5, 7))


def importance_log_evidence(key, model: imf.Model, posteriors: Sequence[inference.Posterior], data_batch: imf.Data,
                            completeness: imf.Completeness, grid, n_draws: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """(log Z, importance-weight ESS) per catalog, proposals fitted to each catalog's NUTS draws."""
    means, chols = [], []
    for post in posteriors:
        z = _to_z(model, post.samples.reshape(-1, model.dim).astype(np.float64))
        cov = np.atleast_2d(np.cov(z, rowvar=False)) * SCALE_INFLATION ** 2 + 1e-6 * np.eye(model.dim)
        means.append(z.mean(0))
        chols.append(np.linalg.cholesky(cov))
    keys = jax.random.split(key, len(posteriors))
    log_z, ess = _importance_batched(keys, model, jnp.asarray(np.stack(means), jnp.float32),
                                     jnp.asarray(np.stack(chols), jnp.float32), data_batch, completeness, grid,
                                     n_draws)
    return np.asarray(log_z, np.float64), np.asarray(ess, np.float64)


def _rate(hits: Sequence[bool]) -> tuple[float, float, float]:
    n = len(hits)
    low, high = wilson_interval(float(sum(hits)), n)
    return (sum(hits) / n if n else float("nan")), low, high


def preference(log_z: dict[str, Sequence[float]], model: str) -> dict[str, dict[str, Any]]:
    """For each other model: the share of catalogs (Wilson interval) whose evidence favours `model` over it, and
    the median ln Bayes factor."""
    mine = np.asarray(log_z[model], np.float64)
    out = {}
    for other, values in log_z.items():
        if other != model:
            ln_b = mine - np.asarray(values, np.float64)
            out[other] = {"rate": _rate([bool(b > 0) for b in ln_b]), "median_ln_b": float(np.median(ln_b))}
    return out


def calibrate(key, n_catalogs: int, n_objects: int, models: dict[str, imf.Model], truth_model: str, truth,
              completeness: imf.Completeness, grid, settings: inference.NutsSettings, fractional_error: float = 0.1,
              m_min: float = 0.5, m_max: float = 100.0, level: float = 0.68, n_draws: int = 4000,
              pad_to: int = 0) -> dict[str, Any]:
    """Coverage of the truth model's `level` intervals and the share of catalogs whose evidence prefers it.

    pad_to > n_objects pads every catalog with weight-0 rows to that size (the same result), so that runs over
    several sizes share one compiled sampler per model: worth it on a GPU, where compiling costs more than the
    padded rows."""
    sim_key, fit_key, is_key = jax.random.split(key, 3)
    start = time.perf_counter()
    data = simulate_catalogs(sim_key, n_catalogs, models[truth_model], truth, n_objects, completeness,
                             fractional_error, m_min, m_max)
    if pad_to > n_objects:
        data = jax.vmap(lambda d: imf.pad_data(d, pad_to))(data)
    log_z, ess, converged, seconds = {}, {}, {}, {}
    coverage = {}
    for index, (name, model) in enumerate(models.items()):
        t0 = time.perf_counter()
        posteriors = inference.sample_posteriors_batched(jax.random.fold_in(fit_key, index), model, data,
                                                         completeness, grid, settings)
        log_z[name], ess[name] = importance_log_evidence(jax.random.fold_in(is_key, index), model, posteriors, data,
                                                         completeness, grid, n_draws)
        converged[name] = float(np.mean([p.converged for p in posteriors]))
        seconds[name] = (time.perf_counter() - t0) / n_catalogs
        logging.info("N=%d %s: %d catalogs fitted, %.2f s per catalog, %.0f%% converged, median IS ESS %.0f",
                     n_objects, name, n_catalogs, seconds[name], 100 * converged[name], np.median(ess[name]))
        if name == truth_model:
            for i, param in enumerate(model.params):
                hits = []
                for post in posteriors:
                    low, high = post.interval(param, level)
                    hits.append(low <= truth[i] <= high)
                coverage[param] = _rate(hits)
    others = [n for n in models if n != truth_model]
    ln_b = [float(log_z[truth_model][c] - max(log_z[o][c] for o in others)) for c in range(n_catalogs)]
    return {"n_objects": n_objects, "n_catalogs": n_catalogs, "coverage": coverage,
            "prefer_broken": _rate([b > 0 for b in ln_b]), "prefer_over": preference(log_z, truth_model),
            "median_ln_bayes_factor": float(np.median(ln_b)), "converged": converged, "seconds_per_fit": seconds,
            "importance_ess_median": {n: float(np.median(e)) for n, e in ess.items()},
            "log_z": {n: v.tolist() for n, v in log_z.items()}, "seconds": time.perf_counter() - start,
            "data": data}


def compare_with_nested_sampling(result: dict, models: dict[str, imf.Model], completeness, grid, catalogs: int = 3,
                                 nlive: int = 200) -> list[dict]:
    """dynesty's log Z next to the importance-sampled one for the first `catalogs` catalogs of a calibrate() run."""
    rows = []
    for c in range(min(catalogs, result["n_catalogs"])):
        data = jax.tree_util.tree_map(lambda x, c=c: x[c], result["data"])
        for name, model in models.items():
            ev = inference.evidence(model, data, completeness, grid, nlive=nlive, seed=c)
            rows.append({"catalog": c, "model": name, "importance": result["log_z"][name][c],
                         "dynesty": ev.log_z, "dynesty_err": ev.log_z_err,
                         "difference": result["log_z"][name][c] - ev.log_z})
    return rows

