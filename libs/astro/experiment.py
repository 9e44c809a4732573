"""The IMF experiment: fit each mass-function model to one catalog, compare them by evidence, draw the pictures.

    catalog (a CSV, or simulated from a truth model with a completeness function)
      -> for each model: NUTS posterior (blackjax; R-hat, ESS, divergences) and log evidence (dynesty)
      -> fits/<model>.{json,npz}, comparison, mass_function.png, corner_<model>.png, results.{md,json}

Each model's fit is saved as soon as it is done, so a rerun in the same workdir fits only the missing ones; a stop
request (SIGTERM / Ctrl-C) is honoured between fits.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Annotated, Any

import gin
import jax
import numpy as np
from absl import logging

from libs.astro import catalog as catalogs
from libs.astro import imf, inference, plots
from libs.train import rundir
from libs.train.errors import ConfigError
from libs.train.launch import POSITIVE

PAPER_SIZE = 48  # likely substellar members of NGC 2024 (De Furio et al. 2024)


@gin.configurable("imf_completeness")
def make_completeness(kind: str = "logistic", m50: float = 1.0, width: float = 0.3,
                      table: str | None = None) -> imf.Completeness:
    """The detection completeness: "none", "step" (at m50), "logistic" (m50, width in ln M) or "table" (a CSV of
    mass,completeness)."""
    if kind == "table":
        if not table:
            raise ConfigError("imf_completeness.kind = 'table' needs imf_completeness.table = 'path.csv'")
        return imf.load_completeness_table(table)
    if kind not in ("none", "step", "logistic"):
        raise ConfigError(f"imf_completeness.kind={kind!r}: expected none, step, logistic or table")
    return imf.Completeness(kind=kind, m50=m50, width=width)


@gin.configurable("imf", denylist=["workdir"])
def run(
    workdir: str,
    catalog: str | None = None,
    default_fractional_error: float = 0.1,
    truth_model: str = "broken_power_law",
    truth: Sequence[float] = (-1.0, 1.5, math.log10(12.0)),
    n_objects: Annotated[int, POSITIVE] = PAPER_SIZE,
    fractional_error: float = 0.1,
    seed: int = 0,
    models: Sequence[str] = ("power_law", "broken_power_law", "lognormal"),
    m_min: float = 0.5,
    m_max: float = 100.0,
    grid_size: Annotated[int, POSITIVE] = 400,
    num_chains: Annotated[int, POSITIVE] = 4,
    num_warmup: Annotated[int, POSITIVE] = 500,
    num_samples: Annotated[int, POSITIVE] = 1000,
    nlive: Annotated[int, POSITIVE] = 200,
) -> dict[str, Any]:
    """Fits `models` to a catalog and compares them.

    Args:
      workdir: the run directory.
      catalog: a CSV of masses (mass[,mass_err], Jupiter masses) or per-object posterior samples (id,mass_sample);
        None: simulate `n_objects` detected objects from `truth_model` at `truth` (its parameters in
        `libs.astro.imf.MODELS` order; the default is a turnover at 12 M_J) with `fractional_error` mass errors.
      default_fractional_error: for catalog rows without mass_err.
      models: the models to fit and compare. m_min, m_max: the truncation range; grid_size: its ln-mass grid.
      num_chains, num_warmup, num_samples: NUTS; nlive: dynesty's live points.
    """
    model_set = imf.make_models(m_min, m_max)
    unknown = [m for m in (*models, truth_model) if m not in model_set]
    if unknown:
        raise ConfigError(f"unknown IMF models {unknown}: expected {sorted(model_set)}")
    completeness = make_completeness()
    grid = imf.make_grid(m_min, m_max, grid_size)
    os.makedirs(os.path.join(workdir, "fits"), exist_ok=True)
    data, truth_info = _load_data(workdir, catalog, default_fractional_error, model_set, truth_model, truth, n_objects,
                                  fractional_error, seed, completeness, m_min, m_max)
    settings = inference.NutsSettings(num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples)
    fits: dict[str, dict] = {}
    for index, name in enumerate(models):
        if rundir.stop_requested():
            return {"status": "interrupted", "fitted": sorted(fits)}
        fits[name] = _fit(workdir, model_set[name], data, completeness, grid, settings, nlive, seed + index)
    comparison = inference.compare([inference.Evidence(n, f["log_z"], f["log_z_err"], f["evidence_seconds"])
                                    for n, f in fits.items()])
    samples = {n: np.load(os.path.join(workdir, "fits", f"{n}.npz"))["samples"].reshape(-1, model_set[n].dim)
               for n in models}
    observed = np.asarray(data.log_m_obs)[np.asarray(data.weight) > 0]
    plots.plot_mass_function(os.path.join(workdir, "mass_function.png"), observed, samples, model_set, completeness,
                             grid, truth=truth_info and (truth_info["model"], truth_info["theta"]))
    for name in models:
        truths = truth_info["theta"] if truth_info and truth_info["model"] == name else None
        plots.plot_corner(os.path.join(workdir, f"corner_{name}.png"), samples[name], model_set[name].params,
                          truths=truths, title=name.replace("_", " "))
    result = {"objects": int(np.sum(np.asarray(data.weight))), "truth": truth_info, "fits": fits,
              "comparison": comparison, "preferred": comparison[0]["model"]}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(results_markdown(result))
    logging.info("preferred model: %s (ln B over the next: %.2f); results in %s", comparison[0]["model"],
                 comparison[1]["ln_bayes_factor"] if len(comparison) > 1 else float("nan"),
                 os.path.join(workdir, "results.md"))
    return {"status": "complete", "preferred": comparison[0]["model"],
            "converged": all(f["converged"] for f in fits.values())}


def _load_data(workdir, catalog, default_error, model_set, truth_model, truth, n_objects, error, seed, completeness,
               m_min, m_max):
    if catalog:
        data, bad = catalogs.read_catalog(catalog, default_fractional_error=default_error)
        for line in bad:
            logging.warning("%s: skipped %s", catalog, line)
        logging.info("catalog %s: %d objects (%d rows skipped)", catalog, int(np.sum(np.asarray(data.weight))),
                     len(bad))
        return data, None
    model = model_set[truth_model]
    if len(truth) != model.dim or not all(lo <= t <= hi for t, (lo, hi) in zip(truth, model.bounds)):
        raise ConfigError(f"imf.truth={list(truth)}: {truth_model} takes {model.params} inside {model.bounds}")
    data = catalogs.simulate(jax.random.PRNGKey(seed), model, np.asarray(truth, np.float32), n_objects,
                             completeness, fractional_error=error, m_min=m_min, m_max=m_max)
    catalogs.write_catalog(os.path.join(workdir, "catalog.csv"), data)
    logging.info("simulated %d detected objects from %s %s -> %s", n_objects, truth_model, list(truth),
                 os.path.join(workdir, "catalog.csv"))
    return data, {"model": truth_model, "theta": [float(t) for t in truth]}


def _fit(workdir, model, data, completeness, grid, settings, nlive, seed) -> dict:
    path = os.path.join(workdir, "fits", f"{model.name}.json")
    if os.path.exists(path):
        with open(path) as f:
            fit = json.load(f)
        logging.info("%s: already fitted (%s)", model.name, path)
        return fit
    logging.info("%s: NUTS, %d chains x (%d warmup + %d draws)", model.name, settings.num_chains,
                 settings.num_warmup, settings.num_samples)
    posterior = inference.sample_posterior(jax.random.PRNGKey(seed), model, data, completeness, grid, settings)
    logging.info("%s: NUTS done in %.1f s (R-hat max %.3f, ESS min %.0f, %d divergences); evidence (dynesty, "
                 "nlive %d)", model.name, posterior.seconds, float(np.max(posterior.rhat)), float(np.min(posterior.ess)),
                 posterior.divergences, nlive)
    ev = inference.evidence(model, data, completeness, grid, nlive=nlive, seed=seed)
    logging.info("%s: log Z = %.2f +- %.2f (%.1f s)", model.name, ev.log_z, ev.log_z_err, ev.seconds)
    np.savez_compressed(os.path.join(workdir, "fits", f"{model.name}.npz"), samples=posterior.samples)
    fit = {"model": model.name, "params": list(model.params), "summary": posterior.summary(),
           "divergences": posterior.divergences, "converged": posterior.converged,
           "nuts_seconds": posterior.seconds, "log_z": ev.log_z, "log_z_err": ev.log_z_err,
           "evidence_seconds": ev.seconds}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(fit, f, indent=1)
    os.replace(tmp, path)
    return fit


def results_markdown(result: dict) -> str:
    lines = ["# IMF fit", "", f"{result['objects']} objects."]
    if result["truth"]:
        lines.append(f"Simulated from {result['truth']['model']} at {result['truth']['theta']}.")
    lines += ["", "| model | log Z | ln B (best over this) | evidence | converged | parameters (median [16%, 84%]) |",
              "|---|---:|---:|---|---|---|"]
    for row in result["comparison"]:
        fit = result["fits"][row["model"]]
        params = "; ".join(f"{p} {s['p50']:.2f} [{s['p16']:.2f}, {s['p84']:.2f}]" for p, s in fit["summary"].items())
        lines.append(f"| {row['model']} | {row['log_z']:.2f} ± {row['log_z_err']:.2f} | {row['ln_bayes_factor']:.2f} "
                     f"| {row['strength']} | {'yes' if fit['converged'] else 'NO'} | {params} |")
    lines += ["", "NUTS diagnostics (R-hat, bulk ESS) per parameter:", ""]
    for name, fit in result["fits"].items():
        diag = ", ".join(f"{p}: R-hat {s['rhat']:.3f}, ESS {s['ess']:.0f}" for p, s in fit["summary"].items())
        lines.append(f"- {name}: {diag}; {fit['divergences']} divergences; NUTS {fit['nuts_seconds']:.1f} s, "
                     f"evidence {fit['evidence_seconds']:.1f} s")
    return "\n".join(lines) + "\n"
