"""The DreamCraft experiment end to end on the smoke config: files, exports, the comparison, reruns, the binary.

The smoke run (two trainings, ~25 s) is in the slow suite; the fast suite keeps the config error and
tests/dreamcraft/test_train.py (fitting, interruption, exact resume)."""

import json
import os
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest

from libs.dreamcraft import experiment
from libs.dreamcraft import guidance as gd
from libs.envs.voxels import export
from libs.train import launch
from libs.train.errors import UserError
from tests.conftest import REPO_ROOT, run_binary

SMOKE = "--gin_file=configs/dreamcraft/smoke.gin"
# In process, one of the eight fake devices: data parallelism is test_train's, and eight device threads on two
# busy cores can miss XLA's 40 s collective rendezvous.
ONE_DEVICE = ["make_mesh.data = 1"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dreamcraft_smoke")
    launch.parse_config(["configs/dreamcraft/smoke.gin"], ONE_DEVICE)
    try:
        result = experiment.run(str(workdir))
    finally:
        gin.clear_config()
    return workdir, result


@pytest.mark.slow
def test_smoke_run_writes_the_comparison_renders_and_exports(smoke_run):
    workdir, result = smoke_run
    assert result["status"] == "complete"
    for name in ("results.md", "results.json", "comparison.png", "reference/preview.png", "targets/cameras.json"):
        assert (workdir / name).exists(), name
    summary = json.loads((workdir / "results.json").read_text())["summary"]
    for method in ("quantized", "baseline"):
        run = workdir / "runs" / f"{method}_seed0"
        for name in ("metrics.jsonl", "turntable.gif", "preview.png", "renders/step_000075.png", "result.json"):
            assert (run / name).exists(), (method, name)
        assert summary[method]["seeds"] == 1 and summary[method]["hard_render_mse"] >= 0
        grid = np.load(run / "structure.npz")["grid"]
        ids = tuple(str(i) for i in np.load(run / "structure.npz")["block_ids"])
        for path in json.loads((run / "result.json").read_text())["exports"].values():
            back, back_ids = export.read_back(path)
            assert back.shape == grid.shape
            np.testing.assert_array_equal(np.asarray(back_ids)[back], np.asarray(ids)[grid])  # every block


@pytest.mark.slow
def test_a_finished_experiment_reruns_without_training(smoke_run):
    workdir, _ = smoke_run
    result_file = workdir / "runs" / "quantized_seed0" / "result.json"
    before = os.path.getmtime(result_file)
    launch.parse_config(["configs/dreamcraft/smoke.gin"], ONE_DEVICE)
    try:
        again = experiment.run(str(workdir))
    finally:
        gin.clear_config()
    assert again["status"] == "complete" and os.path.getmtime(result_file) == before
    assert again["quantized/hard_render_mse"] == pytest.approx(
        json.loads(result_file.read_text())["hard_render_mse"])


@pytest.mark.slow
def test_saved_targets_read_back_as_supplied_pngs(smoke_run):
    workdir, _ = smoke_run
    images, masks, cams = gd.load_target_pngs(str(workdir / "targets"), (8, 8, 8))
    expected = gd.target_cameras((8, 8, 8), views=4)
    np.testing.assert_allclose(np.asarray(cams.origins), np.asarray(expected.origins), atol=1e-2)
    assert images.shape == (4, 24, 24, 3) and 0 < masks.mean() < 1
    (workdir / "targets" / "cameras.json").rename(workdir / "cameras.moved")
    try:
        with pytest.raises(UserError, match="cameras.json"):
            gd.load_target_pngs(str(workdir / "targets"), (8, 8, 8))
    finally:
        (workdir / "cameras.moved").rename(workdir / "targets" / "cameras.json")


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    proc = run_binary("experiments.dreamcraft", SMOKE, "--gin_bindings=BlockDistribution.target = {'stone': 0.5}",
                      f"--workdir={tmp_path}")
    assert proc.returncode == 2 and "sum to 0.5" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if not line.startswith(("I", "W"))]) == 1, proc.stderr


@pytest.mark.slow
def test_text_guidance_with_the_stand_in_scorer_is_labelled(tmp_path):
    proc = run_binary("experiments.dreamcraft", "--gin_file=configs/dreamcraft/text_image.gin", SMOKE,
                      "--gin_bindings=dreamcraft.guidance = 'text_image'", "--gin_bindings=dreamcraft.methods = "
                      "['quantized']", f"--workdir={tmp_path}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "runs" / "quantized_seed0" / "result.json").read_text())
    assert "stand-in" in result["scorer"] and -1 <= result["clip_similarity"] <= 1
    assert "stand-in" in proc.stderr


@pytest.mark.slow
def test_sigterm_saves_and_a_relaunch_resumes(tmp_path):
    args = [sys.executable, "-m", "experiments.dreamcraft", SMOKE, f"--workdir={tmp_path}",
            "--gin_bindings=dreamcraft_train.steps = 3000", "--gin_bindings=dreamcraft.methods = ['quantized']"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / "quantized_seed0" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "interrupted"
    again = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumes at step" in again.stderr
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps[-1] == 3000 and steps == sorted(steps)
