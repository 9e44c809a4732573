"""IMF inference: NUTS posteriors (blackjax) and Bayesian evidence (dynesty) for the models in libs/astro/imf.py.

NUTS runs in an unconstrained space z with theta = lo + (hi - lo) * sigmoid(z) per parameter, plus the log-Jacobian,
so the sampler never leaves the prior box. Window adaptation and sampling run per chain, chains are vmapped (and for
sample_posteriors_batched also catalogs), and everything is one jitted call.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import blackjax
import blackjax.diagnostics
import dynesty
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from libs.astro import imf

# What a non-finite log-likelihood becomes for dynesty (it wants finite numbers).
VERY_NEGATIVE_LOG_LIKELIHOOD = -1e300


@dataclasses.dataclass(frozen=True)
class NutsSettings:
    num_chains: int = 4
    num_warmup: int = 500
    num_samples: int = 1000
    target_accept: float = 0.8
    rhat_max: float = 1.01  # warn above
    min_ess: float = 400.0  # warn below (bulk ESS over all chains)


@dataclasses.dataclass
class Posterior:
    model: str
    params: tuple[str, ...]
    samples: np.ndarray  # (chains, draws, dim) in parameter space
    rhat: np.ndarray  # (dim,) rank-normalised split R-hat
    ess: np.ndarray  # (dim,) bulk ESS over all chains
    divergences: int  # over the sampling phase of all chains
    seconds: float  # wall time of the call (compilation included); batched: the call's time / number of catalogs
    converged: bool  # rhat <= rhat_max and ess >= min_ess for every parameter, and no divergences

    def draws(self, name: str) -> np.ndarray:
        """All chains' draws of one parameter, flattened."""
        return self.samples[..., self.params.index(name)].reshape(-1)

    def summary(self) -> dict:
        """Per parameter: mean, std, 16/50/84 percentiles, rhat, ess."""
        out = {}
        for i, name in enumerate(self.params):
            values = self.draws(name)
            p16, p50, p84 = np.percentile(values, [16, 50, 84])
            out[name] = {"mean": float(values.mean()), "std": float(values.std()), "p16": float(p16),
                         "p50": float(p50), "p84": float(p84), "rhat": float(self.rhat[i]), "ess": float(self.ess[i])}
        return out

    def interval(self, name: str, level: float = 0.68) -> tuple[float, float]:
        """Central credible interval holding `level` of the posterior mass."""
        tail = 50.0 * (1.0 - level)
        low, high = np.percentile(self.draws(name), [tail, 100.0 - tail])
        return float(low), float(high)


# ---------------------------------------------------------------------------------------------------------------
# NUTS


def _box(model: imf.Model) -> tuple[jnp.ndarray, jnp.ndarray]:
    bounds = np.asarray(model.bounds, dtype=np.float32)
    return jnp.asarray(bounds[:, 0]), jnp.asarray(bounds[:, 1])


def to_parameters(model: imf.Model, z: jnp.ndarray) -> jnp.ndarray:
    """Unconstrained z -> theta inside the prior box (elementwise logistic map; works on any leading shape)."""
    low, high = _box(model)
    return low + (high - low) * jax.nn.sigmoid(z)


def log_density_unconstrained(model, z, data, completeness, grid) -> jnp.ndarray:
    """imf.log_posterior at theta(z) plus log |d theta / d z|: the density NUTS samples.

    theta is clipped to the float32 box first: for |z| > ~17 sigmoid(z) rounds to exactly 0 or 1 and
    lo + (hi - lo) * 1 may round one ulp past hi, where log_prior would be -inf. Everywhere else the clip is the
    identity.
    """
    low, high = _box(model)
    theta = jnp.clip(to_parameters(model, z), low, high)
    log_jacobian = jnp.sum(jnp.log(high - low) + jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z))
    return imf.log_posterior(model, theta, data, completeness, grid) + log_jacobian


def _initial_z(key, model: imf.Model, num_chains: int) -> jnp.ndarray:
    """Initial points drawn from the prior (uniform in the box, kept off the very edges), as z."""
    u = jax.random.uniform(key, (num_chains, len(model.params)), minval=0.01, maxval=0.99)
    return jnp.log(u) - jnp.log1p(-u)


@dataclasses.dataclass(frozen=True)
class _Sampler:
    """The NutsSettings fields the compiled sampler depends on (changing the thresholds does not recompile)."""
    num_chains: int
    num_warmup: int
    num_samples: int
    target_accept: float

    @classmethod
    def of(cls, settings: NutsSettings) -> _Sampler:
        return cls(settings.num_chains, settings.num_warmup, settings.num_samples, settings.target_accept)


def _one_chain(key, z0, logdensity, sampler: _Sampler):
    """Window adaptation then sampling for one chain: (z draws (num_samples, dim), divergent flags)."""
    warmup_key, sample_key = jax.random.split(key)
    warmup = blackjax.window_adaptation(
        blackjax.nuts, logdensity, target_acceptance_rate=sampler.target_accept,
        adaptation_info_fn=blackjax.adaptation.base.get_filter_adapt_info_fn())
    (state, parameters), _ = warmup.run(warmup_key, z0, num_steps=sampler.num_warmup)
    kernel = blackjax.nuts(logdensity, **parameters)

    def step(state, key):
        state, info = kernel.step(key, state)
        return state, (state.position, info.is_divergent)

    _, (positions, divergent) = jax.lax.scan(step, state, jax.random.split(sample_key, sampler.num_samples))
    return positions, divergent


def rhat_and_ess(samples):
    """Rank-normalised split R-hat and bulk ESS per parameter of draws (chains, draws, dim) (blackjax.diagnostics
    rhat / ess_bulk, Vehtari et al. 2021: the conventions behind the 1.01 and 400 thresholds). Computed inside the
    jitted sampler: run eagerly, these compile op by op, seconds per new shape."""
    return (blackjax.diagnostics.rhat(samples, chain_axis=0, sample_axis=1),
            blackjax.diagnostics.ess_bulk(samples, chain_axis=0, sample_axis=1))


def _chains(key, data, grid, model, completeness, sampler: _Sampler):
    """All chains for one catalog: theta draws (chains, draws, dim), divergent flags (chains, draws), rhat, ess."""
    init_key, chain_key = jax.random.split(key)
    logdensity = functools.partial(log_density_unconstrained, model, data=data, completeness=completeness,
                                   grid=grid)
    z0 = _initial_z(init_key, model, sampler.num_chains)
    keys = jax.random.split(chain_key, sampler.num_chains)
    z, divergent = jax.vmap(lambda k, z: _one_chain(k, z, logdensity, sampler))(keys, z0)
    theta = to_parameters(model, z)
    return theta, divergent, *rhat_and_ess(theta)


_chains_jit = jax.jit(_chains, static_argnums=(3, 4, 5))
_chains_batched_jit = jax.jit(jax.vmap(_chains, in_axes=(0, 0, None, None, None, None)), static_argnums=(3, 4, 5))


def diagnose(model: imf.Model, samples, divergent, rhat, ess, seconds: float, settings: NutsSettings) -> Posterior:
    """A Posterior from draws (chains, draws, dim), divergent flags (chains, draws) and rhat_and_ess(draws); logs
    an absl warning naming the model and the failing parameters when not converged."""
    dim = len(model.params)
    rhat, ess = np.asarray(rhat, np.float64).reshape(dim), np.asarray(ess, np.float64).reshape(dim)
    divergences = int(np.sum(divergent))
    converged = bool(np.all(rhat <= settings.rhat_max) and np.all(ess >= settings.min_ess) and divergences == 0)
    if not converged:
        problems = [f"{name}: rhat={rhat[i]:.3f} ess={ess[i]:.0f}" for i, name in enumerate(model.params)
                    if not (rhat[i] <= settings.rhat_max and ess[i] >= settings.min_ess)]
        logging.warning("NUTS for model %s did not converge (rhat_max=%.3f, min_ess=%.0f): %s; %d divergences",
                        model.name, settings.rhat_max, settings.min_ess, "; ".join(problems) or "all parameters ok",
                        divergences)
    return Posterior(model=model.name, params=tuple(model.params), samples=np.asarray(samples), rhat=rhat, ess=ess,
                     divergences=divergences, seconds=seconds, converged=converged)


def sample_posterior(key, model: imf.Model, data: imf.Data, completeness: imf.Completeness, grid,
                     settings: NutsSettings = NutsSettings()) -> Posterior:
    """NUTS posterior of one catalog (see the module docstring); warns (absl) when not converged."""
    start = time.perf_counter()
    outputs = jax.block_until_ready(_chains_jit(key, data, grid, model, completeness, _Sampler.of(settings)))
    seconds = time.perf_counter() - start
    return diagnose(model, *map(np.asarray, outputs), seconds, settings)


def sample_posteriors_batched(key, model: imf.Model, data_batch: imf.Data, completeness: imf.Completeness, grid,
                              settings: NutsSettings = NutsSettings()) -> list[Posterior]:
    """NUTS posteriors of a batch of catalogs (Data with a leading batch axis, padded with weight 0), vmapped over
    catalogs and chains in one jitted call. Catalog b uses key jax.random.split(key, B)[b]."""
    batch_size = jax.tree_util.tree_leaves(data_batch)[0].shape[0]
    keys = jax.random.split(key, batch_size)
    start = time.perf_counter()
    outputs = jax.block_until_ready(_chains_batched_jit(keys, data_batch, grid, model, completeness,
                                                        _Sampler.of(settings)))
    seconds = (time.perf_counter() - start) / batch_size
    outputs = [np.asarray(x) for x in outputs]
    return [diagnose(model, *(x[b] for x in outputs), seconds, settings) for b in range(batch_size)]


# ---------------------------------------------------------------------------------------------------------------
# Evidence


@dataclasses.dataclass
class Evidence:
    model: str
    log_z: float
    log_z_err: float
    seconds: float


_log_likelihood_jit = jax.jit(imf.log_likelihood, static_argnums=(0, 3))


def numpy_log_likelihood(model: imf.Model, data: imf.Data, completeness: imf.Completeness, grid):
    """theta (np array) -> float log-likelihood (jitted; non-finite values become a very negative number)."""

    def log_like(theta) -> float:
        value = float(_log_likelihood_jit(model, np.asarray(theta, dtype=np.float32), data, completeness, grid))
        return value if math.isfinite(value) else VERY_NEGATIVE_LOG_LIKELIHOOD

    return log_like


def evidence(model: imf.Model, data: imf.Data, completeness: imf.Completeness, grid, nlive: int = 200,
             dlogz: float = 0.1, seed: int = 0) -> Evidence:
    """log Z by static nested sampling (dynesty) over the model's prior box."""
    start = time.perf_counter()
    sampler = dynesty.NestedSampler(numpy_log_likelihood(model, data, completeness, grid),
                                    model.sample_prior_transform, len(model.params), nlive=nlive,
                                    rstate=np.random.default_rng(seed))
    sampler.run_nested(dlogz=dlogz, print_progress=False)
    results = sampler.results
    return Evidence(model=model.name, log_z=float(results.logz[-1]), log_z_err=float(results.logzerr[-1]),
                    seconds=time.perf_counter() - start)


def jeffreys_strength(ln_bayes_factor: float) -> str:
    """Jeffreys-scale words for ln B: < 1 inconclusive, 1-2.5 weak, 2.5-5 moderate, >= 5 strong."""
    if ln_bayes_factor < 1.0:
        return "inconclusive"
    if ln_bayes_factor < 2.5:
        return "weak"
    if ln_bayes_factor < 5.0:
        return "moderate"
    return "strong"


def compare(evidences: list[Evidence]) -> list[dict]:
    """Models sorted by log Z (best first). Per row: model, log_z, log_z_err, delta_log_z = log Z - best log Z
    (<= 0), delta_log_z_err, ln_bayes_factor and bayes_factor of the best model OVER this one (>= 1), and
    strength: the Jeffreys words for that ln B ('best' for the best model itself)."""
    ranked = sorted(evidences, key=lambda e: e.log_z, reverse=True)
    if not ranked:
        return []
    best = ranked[0]
    rows = []
    for rank, ev in enumerate(ranked):
        ln_b = best.log_z - ev.log_z
        rows.append({"model": ev.model, "log_z": ev.log_z, "log_z_err": ev.log_z_err, "delta_log_z": -ln_b,
                     "delta_log_z_err": math.hypot(ev.log_z_err, best.log_z_err) if rank else 0.0,
                     "ln_bayes_factor": ln_b, "bayes_factor": math.exp(min(ln_b, 700.0)),
                     "strength": "best" if rank == 0 else jeffreys_strength(ln_b)})
    return rows
