"""tools/speedrun_bench_refs end to end: two records to a loose target, the table and JSON written."""

import pytest


@pytest.mark.slow
def test_the_tool_trains_two_records_to_a_loose_target(tmp_path):
    from tests.conftest import run_binary  # pylint: disable=import-outside-toplevel

    out = tmp_path / "refs.md"
    proc = run_binary("tools.speedrun_bench_refs", "--records=gpt2_124m,record_02", "--target=4.5", "--max_steps=30",
                      "--eval_every=5", "--val_tokens=4096", "--seeds=0", f"--out={out}",
                      f"--workdir_root={tmp_path / 'runs'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "| gpt2_124m -> record_02 |" in text and (tmp_path / "refs.json").exists()
