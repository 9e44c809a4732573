"""Substellar initial mass functions: models of dN/dM, detection completeness and an unbinned likelihood.

Masses are in Jupiter masses (M_J) and handled as ln M throughout. A model's `log_shape` is the unnormalised
log dN/dlnM = log(M dN/dM); the likelihood normalises it on a fixed ln-mass grid (`make_grid`) that also sets the
truncation range [m_min, m_max]. Everything here is a pure JAX function: jit it with `model` and `completeness`
static (both are hashable frozen dataclasses) or closed over, and vmap it over `theta` or over a batch of `Data`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

LN10 = math.log(10.0)
# Completeness is floored at this value inside the log: an object where c = 0 (e.g. below a step's m50) gets a
# finite but very low log-likelihood (log 1e-30 ~ -69) instead of -inf, so samplers never see -inf from c alone.
COMPLETENESS_FLOOR = 1e-30
LOG_COMPLETENESS_FLOOR = math.log(COMPLETENESS_FLOOR)
DEFAULT_M_MIN = 0.5
DEFAULT_M_MAX = 100.0


# Models.


def _power_law(theta, log_m):
    (alpha,) = theta
    return (1.0 - alpha) * log_m


def _broken_power_law(theta, log_m):
    alpha_low, alpha_high, log10_m_break = theta
    x = log_m - log10_m_break * LN10  # ln(M / M_break)
    alpha = jnp.where(x < 0.0, alpha_low, alpha_high)
    return log_m - alpha * x  # log(M dN/dM), dN/dM = (M / M_break)^-alpha, continuous at the break


def _lognormal(theta, log_m):
    log10_m_c, sigma = theta
    # dN/dlnM = dN/dlog10M / ln10: the same shape up to a constant.
    return -0.5 * jnp.square((log_m / LN10 - log10_m_c) / sigma)


_LOG_SHAPES = {"power_law": _power_law, "broken_power_law": _broken_power_law, "lognormal": _lognormal}


@dataclasses.dataclass(frozen=True)
class Model:
    """A parametric dN/dM with a box prior: `bounds[i]` is the uniform prior range of `params[i]`."""

    name: str  # "power_law", "broken_power_law", "lognormal"
    params: tuple[str, ...]  # parameter names in vector order
    bounds: tuple[tuple[float, float], ...]  # prior box per parameter (uniform in the parameter as given)

    def __post_init__(self):
        if self.name not in _LOG_SHAPES:
            raise ValueError(f"unknown IMF model {self.name!r}; known: {sorted(_LOG_SHAPES)}")
        if len(self.params) != len(self.bounds) or any(lo >= hi for lo, hi in self.bounds):
            raise ValueError(f"model {self.name}: need one (lo, hi) bound with lo < hi per parameter")

    @property
    def dim(self) -> int:
        return len(self.params)

    def log_shape(self, theta, log_m) -> jnp.ndarray:
        """Unnormalised log dN/dlnM at ln-masses `log_m` (any shape) for the parameter vector `theta` (dim,)."""
        theta = jnp.asarray(theta)
        if theta.shape != (self.dim,):
            raise ValueError(f"model {self.name}: theta has shape {theta.shape}, expected ({self.dim},)")
        return _LOG_SHAPES[self.name](tuple(theta[i] for i in range(self.dim)), jnp.asarray(log_m))

    def sample_prior_transform(self, u) -> np.ndarray:
        """Unit cube (..., dim) -> theta (..., dim), uniform in the box (for nested sampling)."""
        lo, hi = np.array(self.bounds, dtype=np.float64).T
        return lo + np.asarray(u, dtype=np.float64) * (hi - lo)


def make_models(m_min: float = DEFAULT_M_MIN, m_max: float = DEFAULT_M_MAX) -> dict[str, Model]:
    """The three models, with the break's prior kept 0.1 dex inside [m_min, m_max]."""
    slope = (-4.0, 6.0)
    return {
        "power_law": Model("power_law", ("alpha",), (slope,)),
        "broken_power_law": Model(
            "broken_power_law", ("alpha_low", "alpha_high", "log10_m_break"),
            (slope, slope, (math.log10(m_min) + 0.1, math.log10(m_max) - 0.1))),
        "lognormal": Model("lognormal", ("log10_m_c", "sigma"), ((-1.0, 2.5), (0.05, 2.0))),
    }


MODELS: dict[str, Model] = make_models()


# Completeness.


@dataclasses.dataclass(frozen=True)
class Completeness:
    """Detection probability c(M) in [0, 1]; see `log_c` and COMPLETENESS_FLOOR."""

    kind: str  # "none", "step", "logistic", "table"
    m50: float = 1.0  # step: c = 1 for M >= m50 else 0; logistic: c = 1 / (1 + exp(-(ln M - ln m50) / width))
    width: float = 0.2  # logistic width in ln M
    table_m: tuple[float, ...] = ()  # table: increasing masses and completeness values, linear interpolation
    table_c: tuple[float, ...] = ()  # in ln M, clamped at the ends

    def __post_init__(self):
        if self.kind not in ("none", "step", "logistic", "table"):
            raise ValueError(f"unknown completeness kind {self.kind!r}; known: none, step, logistic, table")
        if self.m50 <= 0 or self.width <= 0:
            raise ValueError("completeness needs m50 > 0 and width > 0")
        # Tuples of floats keep the dataclass hashable (a static argument to jit).
        object.__setattr__(self, "table_m", tuple(float(v) for v in self.table_m))
        object.__setattr__(self, "table_c", tuple(float(v) for v in self.table_c))
        if self.kind == "table":
            m, c = np.asarray(self.table_m, float), np.asarray(self.table_c, float)
            if len(m) < 2 or len(m) != len(c):
                raise ValueError("a completeness table needs at least two (mass, completeness) pairs")
            if np.any(m <= 0) or np.any(np.diff(m) <= 0) or np.any((c < 0) | (c > 1)):
                raise ValueError("a completeness table needs increasing masses > 0 and values in [0, 1]")

    def log_c(self, log_m) -> jnp.ndarray:
        """log c(M) at ln-masses `log_m`, never below log(COMPLETENESS_FLOOR)."""
        log_m = jnp.asarray(log_m)
        if self.kind == "none":
            return jnp.zeros_like(log_m)
        if self.kind == "step":
            return jnp.where(log_m >= math.log(self.m50), 0.0, LOG_COMPLETENESS_FLOOR)
        if self.kind == "logistic":
            log_c = jax.nn.log_sigmoid((log_m - math.log(self.m50)) / self.width)
        else:
            c = jnp.interp(log_m, jnp.log(jnp.asarray(self.table_m)), jnp.asarray(self.table_c))
            log_c = jnp.log(jnp.maximum(c, COMPLETENESS_FLOOR))
        return jnp.maximum(log_c, LOG_COMPLETENESS_FLOOR)


def load_completeness_table(path) -> Completeness:
    """Reads a CSV with header "mass,completeness" (masses in M_J, increasing; values in [0, 1]).

    Blank lines and lines starting with '#' are skipped; anything else wrong raises UserError naming file and line.
    """
    import csv

    from libs.train.errors import UserError

    def fail(line, reason):
        raise UserError(f"completeness table {path}" + (f", line {line}" if line else "") + f": {reason}")

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader
                    if "".join(row).strip() and not row[0].lstrip().startswith("#")]
    except OSError as e:
        fail(None, f"cannot read it ({e.strerror or e})")
    except (UnicodeDecodeError, csv.Error) as e:
        fail(None, f"not a text CSV file ({e})")
    if not rows:
        fail(None, "the file is empty; expected a header 'mass,completeness' and at least two rows")
    header_line, header = rows[0]
    if [h.strip().lower() for h in header] != ["mass", "completeness"]:
        fail(header_line, f"expected the header 'mass,completeness', got {','.join(header)!r}")
    masses, values = [], []
    for line, row in rows[1:]:
        if len(row) != 2:
            fail(line, f"expected 2 fields, got {len(row)}")
        try:
            m, c = float(row[0]), float(row[1])
        except ValueError:
            fail(line, f"non-numeric value in {','.join(row)!r}")
        if not (math.isfinite(m) and m > 0):
            fail(line, f"mass must be a finite number > 0, got {row[0].strip()}")
        if not 0.0 <= c <= 1.0:
            fail(line, f"completeness must be in [0, 1], got {row[1].strip()}")
        if masses and m <= masses[-1]:
            fail(line, f"masses must increase, got {m:g} after {masses[-1]:g}")
        masses.append(m)
        values.append(c)
    if len(masses) < 2:
        fail(None, f"needs at least two rows, got {len(masses)}")
    return Completeness("table", table_m=tuple(masses), table_c=tuple(values))


# Data.


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Data:
    """A catalog as fixed-shape arrays (a pytree: batch catalogs by stacking, see `stack_data`).

    Each object is either a measured mass or a set of posterior samples:
    - measured: log_m_obs = ln of the measured mass, sigma_log_m = its uncertainty in ln M (0 = exact; anything
      below the grid spacing is evaluated at the point), sample_weight row all 0;
    - samples: samples_log_m[i] = ln-mass posterior samples under a prior flat in ln M, sample_weight[i] = 1 for
      each real sample and 0 for padding (objects may have different sample counts); log_m_obs holds the mean of
      the samples (informational) and sigma_log_m is ignored.
    A catalog without samples carries samples_log_m and sample_weight of shape (N, 1), all zeros.
    weight is 1 for real objects and 0 for padding objects (whose other fields are ignored).
    """

    log_m_obs: jnp.ndarray  # (N,)
    sigma_log_m: jnp.ndarray  # (N,)
    weight: jnp.ndarray  # (N,)
    samples_log_m: jnp.ndarray  # (N, S)
    sample_weight: jnp.ndarray  # (N, S)

    @property
    def n_objects(self) -> int:
        """Number of rows including padding (see `weight`)."""
        return self.log_m_obs.shape[-1]

    @classmethod
    def from_masses(cls, log_m_obs, sigma_log_m=None, weight=None) -> Data:
        """Measured ln-masses (N,), with optional uncertainties in ln M (scalar or (N,)) and weights."""
        log_m_obs = jnp.asarray(log_m_obs, jnp.float32)
        sigma = jnp.zeros_like(log_m_obs) if sigma_log_m is None else jnp.asarray(sigma_log_m, jnp.float32)
        weight = jnp.ones_like(log_m_obs) if weight is None else jnp.asarray(weight, jnp.float32)
        no_samples = jnp.zeros_like(log_m_obs)[..., None]
        return cls(log_m_obs, jnp.broadcast_to(sigma, log_m_obs.shape), weight, no_samples, no_samples)

    @classmethod
    def from_samples(cls, samples_log_m, sample_weight=None, weight=None) -> Data:
        """Per-object ln-mass posterior samples (N, S), with optional sample weights (0 = padding) and weights."""
        samples = jnp.asarray(samples_log_m, jnp.float32)
        sample_weight = jnp.ones_like(samples) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
        mean = jnp.sum(samples * sample_weight, -1) / jnp.maximum(jnp.sum(sample_weight, -1), 1e-30)
        weight = jnp.ones_like(mean) if weight is None else jnp.asarray(weight, jnp.float32)
        return cls(mean, jnp.zeros_like(mean), weight, samples, sample_weight)


def pad_data(data: Data, n_objects: int, n_samples: int | None = None) -> Data:
    """Pads a catalog with weight-0 objects (and weight-0 samples) to n_objects rows and n_samples columns."""
    n, s = data.samples_log_m.shape
    n_samples = s if n_samples is None else n_samples
    if n_objects < n or n_samples < s:
        raise ValueError(f"cannot pad a ({n}, {s}) catalog down to ({n_objects}, {n_samples})")
    rows, both = (0, n_objects - n), ((0, n_objects - n), (0, n_samples - s))
    return Data(jnp.pad(data.log_m_obs, rows), jnp.pad(data.sigma_log_m, rows), jnp.pad(data.weight, rows),
                jnp.pad(data.samples_log_m, both), jnp.pad(data.sample_weight, both))


def stack_data(catalogs: Sequence[Data]) -> Data:
    """A batch (leading axis) of catalogs of different sizes, padded to the largest (for vmap)."""
    n = max(d.samples_log_m.shape[0] for d in catalogs)
    s = max(d.samples_log_m.shape[1] for d in catalogs)
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[pad_data(d, n, s) for d in catalogs])


# Likelihood.


def make_grid(m_min: float = DEFAULT_M_MIN, m_max: float = DEFAULT_M_MAX, n: int = 400) -> jnp.ndarray:
    """Uniform ln-mass grid over [m_min, m_max]; it sets the truncation range and the integration nodes."""
    if not 0 < m_min < m_max or n < 2:
        raise ValueError(f"need 0 < m_min < m_max and n >= 2, got {m_min}, {m_max}, {n}")
    return jnp.linspace(math.log(m_min), math.log(m_max), n)


def _log_trapezoid_weights(grid):
    d = jnp.diff(grid)
    return jnp.log(0.5 * (jnp.concatenate([jnp.zeros(1), d]) + jnp.concatenate([d, jnp.zeros(1)])))


def _log_observed_shape(model, theta, completeness, log_m):
    return model.log_shape(theta, log_m) + completeness.log_c(log_m)


def _in_range(log_m, grid):
    tol = 1e-5 * (grid[-1] - grid[0])
    return (log_m >= grid[0] - tol) & (log_m <= grid[-1] + tol)


def log_normaliser(model: Model, theta, completeness: Completeness, grid) -> jnp.ndarray:
    """log Z = log of the trapezoid integral of c(M) dN/dlnM over the grid."""
    return logsumexp(_log_observed_shape(model, theta, completeness, grid) + _log_trapezoid_weights(grid))


def log_p_obs(model: Model, theta, data: Data, completeness: Completeness, grid) -> jnp.ndarray:
    """(N,) log density in ln M of each object's data given detection; -inf for exact masses off the grid.

    Point (sigma below the grid spacing): c f / Z at the point. Errors: grid integral of N(ln m_obs | ln M, sigma)
    c f / Z. Samples: weighted mean over samples of c f / Z (samples off the grid count as density 0).
    """
    n, s = data.samples_log_m.shape[-2:]
    x, sigma, samples, sw = data.log_m_obs, data.sigma_log_m, data.samples_log_m, data.sample_weight
    # One evaluation of log(c f) at the grid nodes, the points and the samples.
    log_cf = _log_observed_shape(model, theta, completeness, jnp.concatenate([grid, x, samples.reshape(-1)]))
    k = grid.shape[0]
    log_cf_grid, log_cf_x, log_cf_s = log_cf[:k], log_cf[k:k + n], log_cf[k + n:].reshape(n, s)
    log_w = _log_trapezoid_weights(grid)
    log_z = logsumexp(log_cf_grid + log_w)

    point = jnp.where(_in_range(x, grid), log_cf_x, -jnp.inf)

    spacing = (grid[-1] - grid[0]) / (k - 1)
    exact = sigma < spacing
    safe_sigma = jnp.where(exact, 1.0, sigma)
    z = (x[:, None] - grid[None, :]) / safe_sigma[:, None]
    log_norm = jnp.log(safe_sigma) + 0.5 * math.log(2 * math.pi)
    smeared = logsumexp(-0.5 * z**2 + (log_cf_grid + log_w)[None, :], axis=1) - log_norm

    live = (sw > 0) & _in_range(samples, grid)
    any_live = jnp.any(live, axis=1)
    # Rows without a live sample get dummy finite terms (then -inf), so gradients stay finite.
    safe_sw = jnp.where(live, sw, 0.0) + jnp.where(any_live, 0.0, 1.0)[:, None]
    total = jnp.maximum(jnp.sum(sw, axis=1), 1e-30)
    sample_mean = logsumexp(jnp.where(live, log_cf_s, 0.0), axis=1, b=safe_sw) - jnp.log(total)
    sample_mean = jnp.where(any_live, sample_mean, -jnp.inf)

    use_samples = jnp.sum(sw, axis=1) > 0
    log_p = jnp.where(use_samples, sample_mean, jnp.where(exact, point, smeared))
    return log_p - log_z


def log_likelihood(model: Model, theta, data: Data, completeness: Completeness, grid) -> jnp.ndarray:
    """sum_i weight_i log p_obs(data_i | theta) (see log_p_obs); padding objects (weight 0) contribute 0."""
    log_p = log_p_obs(model, theta, data, completeness, grid)
    return jnp.sum(jnp.where(data.weight > 0, data.weight * log_p, 0.0))


def log_prior(model: Model, theta) -> jnp.ndarray:
    """-log(box volume) inside the prior box (bounds inclusive), -inf outside."""
    lo, hi = (jnp.asarray(b, jnp.float32) for b in zip(*model.bounds))
    theta = jnp.asarray(theta)
    inside = jnp.all((theta >= lo) & (theta <= hi))
    log_volume = sum(math.log(b_hi - b_lo) for b_lo, b_hi in model.bounds)
    return jnp.where(inside, -log_volume, -jnp.inf)


def log_posterior(model: Model, theta, data: Data, completeness: Completeness, grid) -> jnp.ndarray:
    """log_prior + log_likelihood; -inf outside the box (the likelihood is not trusted there)."""
    lp = log_prior(model, theta)
    return jnp.where(jnp.isfinite(lp), lp + log_likelihood(model, theta, data, completeness, grid), -jnp.inf)


def mass_function(model: Model, theta, grid, completeness: Completeness | None = None) -> jnp.ndarray:
    """dN/dlnM on the grid normalised to trapezoid integral 1; with `completeness`, the observed p_obs instead."""
    log_f = model.log_shape(theta, grid)
    if completeness is not None:
        log_f = log_f + completeness.log_c(grid)
    return jnp.exp(log_f - logsumexp(log_f + _log_trapezoid_weights(grid)))
