r"""IMF calibration: 68% interval coverage and evidence preference over simulated broken-power-law catalogs.

    python -m tools.imf_calibration --sizes=48,100,300 --catalogs=100 --out=docs/imf_calibration.md

For each catalog size, `--catalogs` catalogs are simulated from a broken power law with its turnover at 12 M_J
(alpha_low -1, alpha_high 1.5; logistic completeness at 1 M_J; 10% mass errors). All three models are fitted in one
batched NUTS call each (vmapped over catalogs and chains), and each fit's evidence is importance-sampled from its
posterior (`libs.astro.calibration`). Reported: the share of catalogs whose 68% interval covers each true parameter
(target 60-76%), the share whose evidence prefers the broken law over both other models and over each alone, the
median ln Bayes factors, convergence, seconds per fit, and for the first catalogs the importance-sampled log Z next
to dynesty's. Writes the Markdown table, a plot (<out>.png) and the raw figures (<out>.json, rewritten after each
size). On a GPU add --pad_to_largest (one compilation per model for all sizes); `--render=<json>` writes the table
and plot again from saved figures.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time

import jax
from absl import app, flags, logging

from libs.astro import calibration, imf, inference, plots

_SIZES = flags.DEFINE_list("sizes", ["48", "100", "300"], "Objects per catalog.")
_CATALOGS = flags.DEFINE_integer("catalogs", 100, "Simulated catalogs per size.")
_CHAINS = flags.DEFINE_integer("chains", 2, "NUTS chains per fit.")
_WARMUP = flags.DEFINE_integer("warmup", 300, "NUTS warmup steps.")
_SAMPLES = flags.DEFINE_integer("samples", 1000, "NUTS draws per chain.")
_GRID = flags.DEFINE_integer("grid", 200, "ln-mass grid points of the likelihood.")
_DRAWS = flags.DEFINE_integer("draws", 3000, "Importance draws per evidence.")
_CHECKS = flags.DEFINE_integer("checks", 2, "Catalogs of the first size whose evidence is also run with dynesty.")
_SEED = flags.DEFINE_integer("seed", 100, "Catalogs of size N come from fold_in(PRNGKey(seed), N).")
_PAD = flags.DEFINE_bool("pad_to_largest", False, "Pad every catalog to the largest size, so each model compiles "
                         "once for all sizes (for a GPU; on a CPU the padded rows cost time).")
_RENDER = flags.DEFINE_string("render", "", "A JSON written by an earlier run: write its table and plot again "
                              "(to --out) without fitting.")
_OUT = flags.DEFINE_string("out", "docs/imf_calibration.md", "Markdown output (.png and .json next to it).")
TRUTH = (-1.0, 1.5, math.log10(12.0))


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    base = os.path.splitext(_OUT.value)[0]
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    if _RENDER.value:  # Tables and plot again from a finished run's figures, without fitting anything.
        with open(_RENDER.value) as f:
            saved = json.load(f)
        write_report(base, saved["rows"], saved.get("nested_sampling_checks", []), saved["meta"])
        return
    models = imf.make_models()
    completeness = imf.Completeness(kind="logistic", m50=1.0, width=0.3)
    grid = imf.make_grid(n=_GRID.value)
    settings = inference.NutsSettings(num_chains=_CHAINS.value, num_warmup=_WARMUP.value, num_samples=_SAMPLES.value)
    rows, checks = [], []
    start = time.perf_counter()
    sizes = [int(s) for s in _SIZES.value]
    meta = {"device": _device(), "jax": jax.__version__, "command": _command(sizes, settings)}
    for k, size in enumerate(sizes):
        key = jax.random.fold_in(jax.random.PRNGKey(_SEED.value), size)
        result = calibration.calibrate(key, _CATALOGS.value, size, models, "broken_power_law", TRUTH, completeness,
                                       grid, settings, n_draws=_DRAWS.value, pad_to=max(sizes) if _PAD.value else 0)
        if k == 0 and _CHECKS.value:
            checks = calibration.compare_with_nested_sampling(result, models, completeness, grid, _CHECKS.value)
        result.pop("data")
        rows.append(result)
        meta.update(stamp=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    minutes=(time.perf_counter() - start) / 60)
        with open(base + ".json", "w") as f:  # after each size, so an interrupted run keeps what it finished
            json.dump({"meta": meta, "rows": rows, "nested_sampling_checks": checks}, f, indent=1)
        logging.info("N=%d: coverage %s, prefers broken %.2f (%.0f s)", size,
                     {p: round(v[0], 2) for p, v in result["coverage"].items()}, result["prefer_broken"][0],
                     result["seconds"])
    write_report(base, rows, checks, meta)


def write_report(base: str, rows: list[dict], checks: list[dict], meta: dict) -> None:
    rows = sorted(rows, key=lambda r: r["n_objects"])
    for r in rows:  # figures saved before the pairwise shares were reported carry the log Z they come from
        r.setdefault("prefer_over", calibration.preference(r["log_z"], "broken_power_law"))
    plots.plot_calibration(base + ".png", rows)
    with open(base + ".md", "w") as f:
        f.write(markdown(rows, checks, meta, os.path.basename(base)))
    print(open(base + ".md").read())


def _device() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"{os.cpu_count()}-core CPU"
    return f"one {device.device_kind} ({os.cpu_count()} CPU cores)"


def _command(sizes, settings) -> str:
    return (f"python -m tools.imf_calibration --sizes={','.join(map(str, sizes))} --catalogs={_CATALOGS.value} "
            f"--chains={settings.num_chains} --warmup={settings.num_warmup} --samples={settings.num_samples} "
            f"--seed={_SEED.value} --checks={_CHECKS.value}{' --pad_to_largest' if _PAD.value else ''}")


def _pct(rate) -> str:
    return f"{100 * rate[0]:.0f}% [{100 * rate[1]:.0f}, {100 * rate[2]:.0f}]"


def markdown(rows, checks, meta, stem) -> str:
    params = list(rows[0]["coverage"])
    others = list(rows[0]["prefer_over"])
    lines = [
        "# IMF calibration over simulated catalogs", "",
        f"{meta['stamp']}; {meta['device']}, jax {meta['jax']}; {meta['minutes']:.1f} min in all. Command: "
        f"`{meta['command']}`.", "",
        "Truth: a broken power law with alpha_low = -1, alpha_high = 1.5, break at 12 M_J; logistic completeness at "
        "1 M_J; 10% mass errors. Coverage: the share of catalogs whose central 68% interval holds the true value "
        "(target 60-76%). Preference: the share whose importance-sampled evidence is largest for the broken law, "
        "among all three models and against each other model alone (median ln Bayes factor after the share). "
        "Wilson 95% intervals in brackets.", "",
        "| objects | catalogs | " + " | ".join(f"coverage {p}" for p in params)
        + " | prefers broken | " + " | ".join(f"broken over {o}" for o in others)
        + " | converged (broken) | s per fit (PL / BPL / LN) |",
        "|---:|---:|" + "---|" * len(params) + "---|" + "---|" * len(others) + "---:|---|"]
    for r in rows:
        secs = " / ".join(f"{r['seconds_per_fit'][m]:.2f}" for m in ("power_law", "broken_power_law", "lognormal"))
        pairs = " | ".join(f"{_pct(r['prefer_over'][o]['rate'])}, ln B {r['prefer_over'][o]['median_ln_b']:.1f}"
                           for o in others)
        lines.append(f"| {r['n_objects']} | {r['n_catalogs']} | "
                     + " | ".join(_pct(r["coverage"][p]) for p in params)
                     + f" | {_pct(r['prefer_broken'])}, ln B {r['median_ln_bayes_factor']:.1f} | {pairs} | "
                       f"{100 * r['converged']['broken_power_law']:.0f}% | {secs} |")
    if checks:
        lines += ["", "Importance-sampled log Z against dynesty (nlive 200) on the first catalogs:", "",
                  "| catalog | model | importance | dynesty | difference |", "|---:|---|---:|---:|---:|"]
        lines += [f"| {c['catalog']} | {c['model']} | {c['importance']:.2f} | {c['dynesty']:.2f} ± "
                  f"{c['dynesty_err']:.2f} | {c['difference']:+.2f} |" for c in checks]
    lines += ["", f"![calibration]({stem}.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
