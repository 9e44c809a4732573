"""tools/speedrun_bench_gpu's dry run on CPU (the proxy scale instead of the full one): references of one
step, then the oracle recovers the whole speedup on steps and tokens and the no-op none."""

import json

import pytest

from tests.conftest import run_binary


@pytest.mark.slow
def test_dry_run_on_cpu_scores_the_oracle_and_the_noop(tmp_path):
    from libs.train import corpus  # pylint: disable=import-outside-toplevel

    paths = corpus.build_stdlib_corpus(tokenizer="bytes")
    out = tmp_path / "result.json"
    proc = run_binary("tools.speedrun_bench_gpu", "--scale_file=configs/speedrun/cpu_scale.gin", "--seq_len=128",
                      "--val_batch_size=16", "--val_tokens=2048", "--total_steps=20",
                      f"--train_data={paths.train_pattern}", f"--val_data={paths.val_pattern}",
                      f"--out={out}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checks = json.loads(out.read_text())["checks"]
    assert checks["oracle"]["fsr"]["steps"]["fsr"] == pytest.approx(1.0)
    assert checks["noop"]["fsr"]["steps"]["fsr"] == 0.0
