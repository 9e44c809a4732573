"""Fast end-to-end tests of tools.bench_speedrun and tools.record_ladder."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gin
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = ["--gin_file=configs/speedrun/gpt2_124m.gin", "--gin_file=configs/speedrun/cpu_scale.gin",
        "--gin_bindings=GPTConfig.num_layers=2", "--gin_bindings=GPTConfig.dtype='float32'"]


def _run(args, timeout=120, env=None):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_bench_speedrun_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run(["tools.bench_speedrun", *TINY, "--batch=4", "--steps=2", "--warmup=1", f"--json_out={out}"])
    assert "ms/step" in proc.stdout and "MFU" in proc.stdout
    r = json.loads(out.read_text())
    assert r["ms_per_step"] > 0 and r["tokens_per_s"] > 0 and r["compile_s"] > 0
    assert r["tokens_per_step"] == 4 * r["device_count"] * 128
    assert r["params"] > 0 and r["flops_per_token"] > 0

    from libs.train import launch, trainer  # pylint: disable=import-outside-toplevel

    try:
        launch.parse_config([a.split("=", 1)[1] for a in TINY[:2]], [a.split("=", 1)[1] for a in TINY[2:]])
        exp = trainer.build(300, 128, global_batch_size=4 * r["device_count"], microbatches=1)
    finally:
        gin.clear_config()
    assert r["flops_per_token"] == pytest.approx(exp.flops_per_token, rel=1e-6)
    assert r["params"] == exp.n_params


def test_bench_speedrun_rejects_bad_binding(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.bench_speedrun", *TINY, "--gin_bindings=train.nope=1"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "error:" in proc.stderr


def test_ladder_runs_the_last_short_record_again_as_the_packed_baseline():
    from tools import records  # pylint: disable=import-outside-toplevel  (no flags: in-process is safe)

    short, packed = records.SCALE_FILE, records.PACKED_SCALE_FILE
    assert records.ladder_entries(["record_10", "record_11", "record_12", "record_13"]) == [
        ("record_10", short), ("record_11", short), ("record_11", packed), ("record_12", packed), ("record_13", packed)]
    assert records.ladder_entries(["record_12", "record_13"]) == [("record_12", packed), ("record_13", packed)]
    runs = [{"record": r, "scale": sc, "status": "complete", "val_loss": v, "train_time_s": 1.0, "wall_s": 2.0}
            for r, sc, v in (("record_10", "short", 2.3), ("record_11", "short", 2.2), ("record_11", "packed", 2.5),
                             ("record_12", "packed", 2.4))]
    rows = records.aggregate(runs, [(r["record"], r["scale"]) for r in runs], tie=0.03)
    assert [r["delta"] for r in rows][2] is None  # a new scale starts a new segment: no delta across scales
    assert rows[1]["delta"] == pytest.approx(-0.1) and rows[3]["delta"] == pytest.approx(-0.1)
    assert records.label(rows[2]) == "record_11 (packed)" and records.label(rows[3]) == "record_12"


@pytest.mark.slow
def test_record_ladder_across_both_proxy_scales(tmp_path):
    out = tmp_path / "docs" / "ladder.md"
    proc = _run(["tools.record_ladder", f"--out={out}", f"--workdir_root={tmp_path / 'runs'}",
                 "--records=record_11,record_12", "--steps=5", "--packed_steps=3"], timeout=600,
                # One CPU device, as the ladder runs: the packed proxy's two rows do not split over eight.
                env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})
    assert "[1/3] record_11 (short)" in proc.stdout and "[3/3] record_12 (packed)" in proc.stdout
    text = out.read_text()
    rows = {(m.group(1), m.group(2)): float(m.group(3))
            for m in re.finditer(r"^\| (\w+) \| (\w+) \|[^|]*\| (\d+\.\d+) \|", text, re.M)}
    assert set(rows) == {("record_11", "short"), ("record_11", "packed"), ("record_12", "packed")}
    assert all(0 < v < 10 for v in rows.values())
    assert "Where the proxy agrees" in text and "ladder.png" in text and "cpu_scale_packed.gin" in text
    assert (tmp_path / "docs" / "ladder.png").stat().st_size > 0
    raw = json.loads((tmp_path / "docs" / "ladder.json").read_text())
    assert [(r["record"], r["scale"], r["val_step"]) for r in raw["runs"]] == [
        ("record_11", "short", 5), ("record_11", "packed", 3), ("record_12", "packed", 3)]
    assert all(r["train_time_s"] >= 0 for r in raw["runs"])


def test_lfs_standin_grades_two_levels(tmp_path):
    out = tmp_path / "docs" / "grades.md"
    _run(["tools.lfs_standin_grades", f"--out={out}", f"--workdir={tmp_path / 'runs'}", "--num_games=2",
          "--levels=exact,weak"], timeout=300)
    text = out.read_text()
    assert "stand-in, not a model" in text and "| exact | 0.0 | 100.0% | 100.0% |" in text
    rows = re.findall(r"^\| (countdown\d|sudoku\dx\d) \| (\w+) \| (\d+) \((\d+)k\) \| (\d+) \((\d+)k\) \|$", text, re.M)
    assert len(rows) == 20 and {r[1] for r in rows} == {"lfs", "bestfs", "tot_bfs", "mcts"}
    assert (tmp_path / "docs" / "grades.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["exact", "weak"]


def test_bench_speedrun_times_a_llama_and_refuses_the_gpt_anchor(tmp_path):
    out = tmp_path / "bench.json"
    llama = ["--gin_file=configs/speedrun/llama3_tiny.gin", "--batch=2", "--steps=1", "--warmup=0"]
    proc = _run(["tools.bench_speedrun", *llama, f"--json_out={out}"])
    assert "LlamaConfig" in proc.stdout and json.loads(out.read_text())["family"] == "LlamaConfig"
    refused = subprocess.run([sys.executable, "-m", "tools.bench_speedrun", *llama, "--anchor=/nonexistent.py"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "has no anchor" in refused.stderr


def test_bench_speedrun_several_configs_one_table(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    bad = tmp_path / "broken.gin"
    bad.write_text("GPTConfig.num_layers = 'two'\n")
    proc = subprocess.run([sys.executable, "-m", "tools.bench_speedrun",
                           f"--configs=configs/speedrun/smoke.gin,{bad}", "--gin_bindings=train.seq_len=32",
                           "--batch=2", "--steps=2", "--warmup=0", f"--append_to={doc}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # one config failed
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n") and "## Configs side by side: cpu" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    assert rows[0].startswith("| `configs/speedrun/smoke.gin` | 0.4")
    tokens_per_step = int(rows[0].split("|")[3].replace(",", ""))
    assert tokens_per_step % (2 * 32) == 0  # 2 rows of 32 tokens per (fake) device
    assert "failed:" in rows[1] and "GPTConfig.num_layers" in rows[1]


def test_bench_speedrun_configs_refuses_a_missing_file():
    proc = subprocess.run([sys.executable, "-m", "tools.bench_speedrun", "--configs=configs/speedrun/nope.gin"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "nope.gin" in proc.stderr
