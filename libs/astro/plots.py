"""Pictures of an IMF fit: the mass function with each model's band over the data, corner plots, calibration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import corner
import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from libs.astro import imf

COLOURS = {"power_law": "tab:blue", "broken_power_law": "tab:red", "lognormal": "tab:green"}
LN10 = math.log(10.0)


def _save(fig: Figure, path: str) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def expected_per_dex(model: imf.Model, thetas: np.ndarray, completeness: imf.Completeness, grid,
                     n_objects: int) -> np.ndarray:
    """Expected DETECTED objects per dex of mass on the grid, for each theta: (len(thetas), len(grid))."""
    observed = jax.vmap(lambda t: imf.mass_function(model, t, grid, completeness))(np.asarray(thetas))
    return np.asarray(observed) * n_objects * LN10


def plot_mass_function(path: str, log_m_obs: np.ndarray, fits: Mapping[str, np.ndarray],
                       models: Mapping[str, imf.Model], completeness: imf.Completeness, grid,
                       truth: tuple[str, Sequence[float]] | None = None, draws: int = 300, title: str = "") -> None:
    """The data's histogram (per dex, Poisson errors) and each model's median and 16-84% band of detected counts.

    `fits` maps a model name to posterior draws (n, dim)."""
    n = len(log_m_obs)
    log10_m = np.asarray(log_m_obs) / LN10
    edges = np.linspace(math.floor(log10_m.min() * 4) / 4, math.ceil(log10_m.max() * 4) / 4 + 1e-9, 1 + max(
        4, int(math.ceil((log10_m.max() - log10_m.min()) * 4))))
    counts, _ = np.histogram(log10_m, edges)
    width = np.diff(edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.errorbar(10 ** centres, counts / width, yerr=np.sqrt(np.maximum(counts, 1)) / width, fmt="o", color="k",
                label=f"data ({n} objects)", zorder=5)
    masses = np.exp(np.asarray(grid))
    rng = np.random.default_rng(0)
    for name, samples in fits.items():
        pick = samples[rng.choice(len(samples), size=min(draws, len(samples)), replace=False)]
        curves = expected_per_dex(models[name], pick, completeness, grid, n)
        low, mid, high = np.percentile(curves, [16, 50, 84], axis=0)
        colour = COLOURS.get(name, None)
        ax.plot(masses, mid, color=colour, label=name.replace("_", " "))
        ax.fill_between(masses, low, high, color=colour, alpha=0.25, linewidth=0)
    if truth is not None:
        name, theta = truth
        curve = expected_per_dex(models[name], np.asarray([theta]), completeness, grid, n)[0]
        ax.plot(masses, curve, "k--", linewidth=1, label="truth")
    ax.set_xscale("log")
    ax.set_xlabel("mass (Jupiter masses)")
    ax.set_ylabel("detected objects per dex")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "mass function: models' 16-84% bands over the data")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_corner(path: str, samples: np.ndarray, params: Sequence[str], truths: Sequence[float] | None = None,
                title: str = "") -> None:
    """A corner plot (the `corner` package) of posterior draws (n, dim)."""
    fig = Figure(figsize=(2.4 * len(params) + 1, 2.4 * len(params) + 1))
    corner.corner(np.asarray(samples), labels=list(params), truths=truths, fig=fig, quantiles=[0.16, 0.5, 0.84],
                  show_titles=True, title_fmt=".2f")
    if title:
        fig.suptitle(title, y=1.02)
    _save(fig, path)


def plot_calibration(path: str, rows: Sequence[dict], nominal: float = 0.68, band: tuple[float, float] = (0.60, 0.76)
                     ) -> None:
    """Coverage of the 68% intervals per parameter, and the share of catalogs whose evidence prefers the broken
    law (over every other model, and over each one), against the catalog size. `rows`: {n_objects, coverage:
    {param: (rate, low, high)}, prefer_broken: (rate, low, high), prefer_over: {model: {rate: (rate, low, high)}}}."""
    fig = Figure(figsize=(10, 4))
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sizes = [r["n_objects"] for r in rows]
    ax.axhspan(*band, color="0.85", label=f"target {band[0]:.0%}-{band[1]:.0%}")
    ax.axhline(nominal, color="0.5", linestyle=":")
    for k, name in enumerate(rows[0]["coverage"]):
        rate = np.array([r["coverage"][name][0] for r in rows])
        err = np.array([[r["coverage"][name][0] - r["coverage"][name][1], r["coverage"][name][2] -
                         r["coverage"][name][0]] for r in rows]).T
        ax.errorbar(np.array(sizes) * (1 + 0.04 * (k - 1)), rate, yerr=err, fmt="o-", label=name, capsize=3)
    for axis in (ax, bx):
        axis.set_xscale("log")
        axis.set_xticks(sizes, [str(s) for s in sizes])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlim(min(sizes) / 1.5, max(sizes) * 1.5)
    ax.set_ylim(0, 1)
    ax.set_xlabel("objects per catalog")
    ax.set_ylabel("coverage of the 68% interval")
    ax.legend(fontsize=8)
    lines = [("over every other model", "prefer_broken", "tab:red")]
    lines += [(f"over {other}", other, color) for other, color in
              zip(rows[0].get("prefer_over", {}), ("tab:purple", "tab:green", "tab:brown"))]
    for k, (label, name, color) in enumerate(lines):
        rates = [r["prefer_broken"] if name == "prefer_broken" else r["prefer_over"][name]["rate"] for r in rows]
        err = np.array([[rate[0] - rate[1], rate[2] - rate[0]] for rate in rates]).T
        bx.errorbar(np.array(sizes) * (1 + 0.04 * (k - 1)), [rate[0] for rate in rates], yerr=err, fmt="o-",
                    color=color, capsize=3, label=label)
    bx.legend(fontsize=8, loc="lower right")
    bx.set_ylim(0, 1.05)
    bx.set_xlabel("objects per catalog")
    bx.set_ylabel("share preferring the broken law")
    fig.suptitle("calibration over simulated catalogs (Wilson 95% intervals)")
    _save(fig, path)
