"""The IMF binary's library end to end on tiny settings: fits, evidence, plots, results, resume, catalogs."""

import json
import os

import gin
import pytest

from libs.astro import experiment
from libs.train import launch
from tests.conftest import run_binary

TINY = ["imf.num_chains = 2", "imf.num_warmup = 100", "imf.num_samples = 150", "imf.nlive = 40",
        "imf.grid_size = 100", "imf.n_objects = 60", "imf.models = ['power_law', 'broken_power_law']"]


@pytest.mark.slow  # NUTS + nested sampling compile and run: about a minute on 2 cores
def test_simulated_fit_writes_results_plots_and_resumes(clean_gin, tmp_path):
    launch.parse_config(["configs/imf/simulated.gin"], TINY)
    result = experiment.run(str(tmp_path))
    assert result["status"] == "complete" and result["preferred"] in ("power_law", "broken_power_law")
    saved = json.load(open(tmp_path / "results.json"))
    assert saved["objects"] == 60 and saved["truth"]["model"] == "broken_power_law"
    assert {row["model"] for row in saved["comparison"]} == {"power_law", "broken_power_law"}
    fit = saved["fits"]["broken_power_law"]
    assert set(fit["summary"]) == {"alpha_low", "alpha_high", "log10_m_break"} and fit["nuts_seconds"] > 0
    for name in ("mass_function.png", "corner_power_law.png", "corner_broken_power_law.png", "catalog.csv"):
        assert os.path.getsize(tmp_path / name) > 1000
    assert "R-hat" in open(tmp_path / "results.md").read()
    before = os.path.getmtime(tmp_path / "fits" / "broken_power_law.npz")
    gin.clear_config()
    launch.parse_config(["configs/imf/simulated.gin"], TINY)
    experiment.run(str(tmp_path))  # every fit is on disk: nothing is refitted
    assert os.path.getmtime(tmp_path / "fits" / "broken_power_law.npz") == before


@pytest.mark.slow
def test_a_catalog_file_with_bad_rows_is_fitted(clean_gin, tmp_path):
    rows = ["mass,mass_err", "3.0,0.3", "oops,1", "15.0,1.5", "-2,0.1"] + [f"{m},{0.1 * m}" for m in
                                                                         (5, 8, 10, 12, 14, 20, 25, 30, 40, 50)]
    path = tmp_path / "masses.csv"
    path.write_text("\n".join(rows) + "\n")
    launch.parse_config(["configs/imf/simulated.gin"], [*TINY, f"imf.catalog = '{path}'",
                                                        "imf.models = ['power_law']"])
    result = experiment.run(str(tmp_path / "run"))
    assert result["status"] == "complete"
    assert json.load(open(tmp_path / "run" / "results.json"))["objects"] == 12


def test_bad_configs_end_in_one_line(tmp_path):
    proc = run_binary("experiments.imf", "--gin_file=configs/imf/simulated.gin", f"--workdir={tmp_path / 'a'}",
                      "--gin_bindings=imf.models = ['power_law', 'pareto']")
    assert proc.returncode == 2 and "pareto" in proc.stderr.strip().splitlines()[-1]
    proc = run_binary("experiments.imf", "--gin_file=configs/imf/simulated.gin", f"--workdir={tmp_path / 'b'}",
                      "--gin_bindings=imf.truth = [1.0, 2.0]")
    assert proc.returncode == 2 and "imf.truth" in proc.stderr.strip().splitlines()[-1]
