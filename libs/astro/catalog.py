"""Mass catalogs: reading and writing CSV files, and simulating detected catalogs from an IMF model."""

from __future__ import annotations

import csv
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from libs.astro.imf import Completeness, Data, Model, make_grid
from libs.train.errors import UserError

MASS_COLUMNS = ("mass", "mass_err", "id")  # "mass" required; "mass_err" and "id" optional
SAMPLE_COLUMNS = ("id", "mass_sample")
EXPECTED_LAYOUTS = "'mass', 'mass,mass_err' (optionally with 'id'), or 'id,mass_sample'"


def _parse_positive(text: str, what: str) -> float:
    """A finite float > 0, or ValueError with the reason."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"non-numeric {what} {text.strip()!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {text.strip()}")
    return value


def _read_rows(path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank, non-comment rows; unreadable files raise UserError."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            return [(reader.line_num, row) for row in reader
                    if "".join(row).strip() and not row[0].lstrip().startswith("#")]
    except OSError as e:
        raise UserError(f"catalog {path}: cannot read it ({e.strerror or e})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"catalog {path}: not a text CSV file ({e})") from None


def read_catalog(path, default_fractional_error: float = 0.0) -> tuple[Data, list[str]]:
    """Reads a CSV catalog with a header; returns the Data and the skipped rows as 'line N: reason'.

    Layouts: mass[,mass_err][,id] (M_J; mass_err absolute, converted to sigma in ln M as mass_err / mass; without
    the column or with an empty cell, sigma = default_fractional_error), or id,mass_sample (one row per posterior
    sample, objects in order of first appearance, padded with weight-0 samples; see Data). Rows with a non-numeric
    value, mass <= 0, a negative error or the wrong number of fields are skipped and reported. Blank lines and
    lines starting with '#' are ignored. No usable rows, or an unknown header, raise UserError naming the file.
    """
    if default_fractional_error < 0:
        raise ValueError(f"default_fractional_error must be >= 0, got {default_fractional_error}")
    rows = _read_rows(path)
    if not rows:
        raise UserError(f"catalog {path}: the file is empty; expected a header {EXPECTED_LAYOUTS}")
    header_line, header = rows[0]
    columns = [h.strip().lower() for h in header]
    if len(set(columns)) != len(columns) or not (
            ("mass" in columns and set(columns) <= set(MASS_COLUMNS)) or set(columns) == set(SAMPLE_COLUMNS)):
        raise UserError(f"catalog {path}, line {header_line}: unknown columns {','.join(header)!r}; "
                        f"expected {EXPECTED_LAYOUTS}")
    index = {name: i for i, name in enumerate(columns)}
    skipped: list[tuple[int, str]] = []
    body = []
    for line, row in rows[1:]:
        if len(row) != len(columns):
            skipped.append((line, f"expected {len(columns)} fields, got {len(row)}"))
        else:
            body.append((line, row))

    if "mass_sample" in index:
        data = _read_samples(body, index, skipped)
    else:
        data = _read_masses(body, index, skipped, default_fractional_error)
    reports = [f"line {line}: {reason}" for line, reason in sorted(skipped)]
    if data is None:
        raise UserError(f"catalog {path}: no usable rows" + (f" ({len(reports)} skipped, first: {reports[0]})"
                                                              if reports else ""))
    return data, reports


def _read_masses(body, index, skipped, default_fractional_error) -> Data | None:
    log_m, sigma = [], []
    for line, row in body:
        try:
            mass = _parse_positive(row[index["mass"]], "mass")
            err_text = row[index["mass_err"]].strip() if "mass_err" in index else ""
            if err_text:
                try:
                    err = float(err_text)
                except ValueError:
                    raise ValueError(f"non-numeric mass_err {err_text!r}") from None
                if not math.isfinite(err) or err < 0:
                    raise ValueError(f"mass_err must be a finite number >= 0, got {err_text}")
                frac = err / mass
            else:
                frac = default_fractional_error
        except ValueError as e:
            skipped.append((line, str(e)))
            continue
        log_m.append(math.log(mass))
        sigma.append(frac)
    if not log_m:
        return None
    return Data.from_masses(np.array(log_m), np.array(sigma))


def _read_samples(body, index, skipped) -> Data | None:
    samples: dict[str, list[float]] = {}
    for line, row in body:
        name = row[index["id"]].strip()
        try:
            if not name:
                raise ValueError("empty id")
            value = math.log(_parse_positive(row[index["mass_sample"]], "mass_sample"))
        except ValueError as e:
            skipped.append((line, str(e)))
            continue
        samples.setdefault(name, []).append(value)
    if not samples:
        return None
    n, s = len(samples), max(len(v) for v in samples.values())
    log_m = np.zeros((n, s))
    weight = np.zeros((n, s))
    for i, values in enumerate(samples.values()):
        log_m[i, :len(values)] = values
        weight[i, :len(values)] = 1.0
    return Data.from_samples(log_m, weight)


def write_catalog(path, data: Data) -> None:
    """Writes the real (weight > 0) objects as CSV: mass,mass_err (M_J), or id,mass_sample for sample catalogs."""
    keep = np.asarray(data.weight) > 0
    sample_weight = np.asarray(data.sample_weight)[keep]
    uses_samples = sample_weight.sum(axis=1) > 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if uses_samples.any():
            if not uses_samples.all():
                raise ValueError("cannot write a catalog that mixes measured masses and posterior samples")
            writer.writerow(SAMPLE_COLUMNS)
            for i, (row, w) in enumerate(zip(np.asarray(data.samples_log_m)[keep], sample_weight)):
                for value in row[w > 0]:
                    writer.writerow([f"obj{i:04d}", repr(float(np.exp(value)))])
        else:
            writer.writerow(("mass", "mass_err"))
            mass = np.exp(np.asarray(data.log_m_obs, np.float64)[keep])
            err = mass * np.asarray(data.sigma_log_m, np.float64)[keep]
            for m, e in zip(mass, err):
                writer.writerow([repr(float(m)), repr(float(e))])


def simulate(key, model: Model, theta, n_objects: int, completeness: Completeness, fractional_error=0.1,
             m_min: float = 0.5, m_max: float = 100.0, grid_size: int = 4000) -> Data:
    """A catalog of exactly n_objects detected objects (pure JAX; vmap over keys or theta).

    True masses are drawn by inverse CDF of c(M) f(M | theta) on a fine ln-mass grid over [m_min, m_max]; observed
    masses are true * exp(N(0, fractional_error)) and sigma_log_m = fractional_error (0 gives exact masses). The
    true masses use the first half of jax.random.split(key), the noise the second, so for one key the true masses
    do not depend on fractional_error.
    """
    grid = make_grid(m_min, m_max, grid_size)
    log_cf = model.log_shape(theta, grid) + completeness.log_c(grid)
    pdf = jnp.exp(log_cf - jnp.max(log_cf))
    cdf = jnp.concatenate([jnp.zeros(1), jnp.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * jnp.diff(grid))])
    cdf = cdf / cdf[-1]
    key_true, key_noise = jax.random.split(key)
    log_true = jnp.interp(jax.random.uniform(key_true, (n_objects,)), cdf, grid)
    log_obs = log_true + fractional_error * jax.random.normal(key_noise, (n_objects,))
    sigma = jnp.full((n_objects,), fractional_error, jnp.float32)
    return Data.from_masses(log_obs, sigma)
