"""The proxy reference costs: medians over seeds, misses, and which ladder steps FSR can score."""

import pytest

from tools import speedrun_bench_refs as refs


def _run(record, seed, steps, seconds):
    reached = steps is not None
    return {"record": record, "seed": seed, "reached": reached, "steps": steps, "tokens": steps * 2048 if reached else None,
            "train_time_s": seconds}


def test_references_are_medians_and_a_miss_voids_the_record():
    runs = [_run("gpt2_124m", s, st, t) for s, st, t in ((0, 200, 40.0), (1, 220, 44.0), (2, 210, 90.0))]
    runs += [_run("record_02", s, st, t) for s, st, t in ((0, 150, 30.0), (1, 140, 29.0), (2, 160, 31.0))]
    runs += [_run("record_03", 0, 100, 20.0), _run("record_03", 1, None, None)]
    rows = refs.references(runs, ["gpt2_124m", "record_02", "record_03"])
    assert rows[0]["steps"] == 210 and rows[0]["train_time_s"] == 44.0 and rows[0]["train_time_s_spread"] == [40.0, 90.0]
    assert rows[0]["tokens"] == 210 * 2048 and rows[0]["change"].startswith("The llm.c GPT-2")
    assert rows[2]["missed"] == 1 and rows[2]["steps"] is None
    steps = refs.ladder_steps(rows)
    assert steps[0] == {"task": "gpt2_124m -> record_02", "train_time_s": "ok", "steps": "ok", "tokens": "ok"}
    assert steps[1]["steps"] == "a record missed the target"


def test_a_step_that_is_not_cheaper_is_flagged_per_measure():
    rows = [{"record": "a", "train_time_s": 40.0, "steps": 200, "tokens": 409600},
            {"record": "b", "train_time_s": 45.0, "steps": 150, "tokens": 307200}]
    step = refs.ladder_steps(rows)[0]
    assert step["steps"] == "ok" and step["train_time_s"] == "no speedup between the references"


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
