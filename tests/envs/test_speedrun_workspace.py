"""Speedrunning-benchmark workspaces and tasks: each record's workspace lacks exactly the later records'
features, trains bit-identically to the project's own record config, and a task folder scores a submission
(costs to the target) or rejects it in one line (a bad config, a missed target)."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from libs.envs import research_tasks
from libs.envs.speedrun_bench import hints, tasks, workspace
from libs.models.gpt import GPTConfig
from libs.train import launch, metrics
from libs.train.errors import UserError

TINY = tasks.Proxy(target=4.5, eval_every=5, val_tokens=2048)


@pytest.mark.parametrize("record", hints.RECORDS)
def test_workspace_sources_are_python_without_folded_switches(record):
    files = workspace.sources(record)
    folds = workspace.folded_switches(record)
    for name in ("gpt.py", "optim.py", "losses.py", "train.py"):
        compile(files[name], name, "exec")
    for field in folds["GPTConfig"]:
        assert not re.search(rf"(\b{field}:|cfg\.{field}\b)", files["gpt.py"]), field
        assert f"GPTConfig.{field} " not in files["record.gin"]
    for owner in ("make_optimizer", "window_schedule"):
        for param in folds[owner]:
            assert not re.search(rf"\b{param}:", files["optim.py"]), param
            assert f"{owner}.{param} " not in files["record.gin"]
    for fixed in workspace.FIXED:
        assert f"\n{fixed} =" not in files["record.gin"]


def test_each_step_hides_the_next_change():
    src = {r: workspace.sources(r) for r in hints.RECORDS}
    assert "rotary" not in src["gpt2_124m"]["gpt.py"] and "rotary" in src["record_02"]["gpt.py"]
    assert "muon" not in src["record_02"]["optim.py"].lower() and "muon" in src["record_03"]["optim.py"]
    scale = "max(fan_in, fan_out) ** 0.5"  # record 4's Muon scale, folded into its workspace's helper
    assert scale not in src["record_03"]["optim.py"] and scale in src["record_04"]["optim.py"]
    for feature in ("qk_norm", "relu2", "zero_init_proj"):
        assert feature not in src["record_04"]["gpt.py"] and feature in src["record_05"]["gpt.py"]
    assert "tie_embeddings" not in src["record_05"]["gpt.py"] and "embed_norm" in src["record_08"]["gpt.py"]
    assert "value_lambda" not in src["record_08"]["gpt.py"] and "value_lambda" in src["record_09"]["gpt.py"]
    assert "residual_dtype" not in src["record_09"]["gpt.py"] and "residual_dtype" in src["record_10"]["gpt.py"]
    assert "unet_skips" not in src["record_10"]["gpt.py"] and "unet_skips" in src["record_11"]["gpt.py"]
    # The packed-document records: each later switch is folded out of the record before it.
    assert "doc_eot_id" not in src["record_11"]["gpt.py"] and "doc_eot_id" in src["record_12"]["gpt.py"]
    assert "growth_tokens" not in src["record_12"]["optim.py"] and "growth_tokens" in src["record_13"]["optim.py"]
    assert "ve_init_std" not in src["record_13"]["gpt.py"] and "ve_init_std" in src["record_14"]["gpt.py"]
    assert "ve_mix" not in src["record_14"]["gpt.py"] and "ve_mix" in src["record_15"]["gpt.py"]
    assert "window_block_clamp" not in src["record_15"]["gpt.py"] and "window_block_clamp" in src["record_16"]["gpt.py"]
    assert "attentionless_layers" not in src["record_16"]["gpt.py"] and "attentionless" in src["record_17"]["gpt.py"]
    assert "logit_softcap" not in src["record_17"]["gpt.py"] and "logit_softcap" in src["record_18"]["gpt.py"]
    assert "Fp8Head" not in src["record_18"]["gpt.py"] and "Fp8Head" in src["record_19"]["gpt.py"]
    assert '"ceil"' not in src["record_18"]["optim.py"] and '"ceil"' in src["record_19"]["optim.py"]
    assert "short_window_layers" not in src["record_19"]["gpt.py"] and "short_window" in src["record_20"]["gpt.py"]
    last = {f.name for f in dataclasses.fields(GPTConfig)}
    assert all(f"    {name}:" in src["record_21"]["gpt.py"] for name in last)  # the last record folds nothing


def _val_losses(path):
    return [(m["step"], m["loss"]) for m in metrics.read_metrics(path, "val")]


def _train_both(record, tmp_path):
    """Val losses of the record's workspace (runner) and of the project binary on the record's config."""
    ws, proxy_path, proxy = tmp_path / "ws", tmp_path / "proxy.json", TINY.for_record(record)
    workspace.build_workspace(record, str(ws))
    proxy_path.write_text(json.dumps(dataclasses.asdict(proxy)))
    # One CPU device, as the benchmark runs: the packed proxy's two rows do not split over eight fake devices.
    env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}
    a = subprocess.run([sys.executable, "-m", "libs.envs.speedrun_bench.runner", f"--workspace={ws}",
                        f"--workdir={ws / 'run'}", f"--proxy={proxy_path}"], capture_output=True, text=True, env=env, check=False)
    assert a.returncode == 0, a.stderr[-2000:]
    b = subprocess.run([sys.executable, "-m", "experiments.speedrun", f"--gin_file=configs/speedrun/{record}.gin",
                        f"--gin_file={proxy.scale_file}", *[f"--gin_bindings={x}" for x in proxy.bindings()],
                        f"--workdir={tmp_path / 'ref'}"], capture_output=True, text=True, env=env,
                       cwd=launch.REPO_ROOT, check=False)
    assert b.returncode == 0, b.stderr[-2000:]
    return _val_losses(ws / "run" / "metrics.jsonl"), _val_losses(tmp_path / "ref" / "metrics.jsonl")


def test_workspace_trains_like_the_record_config(tmp_path):
    mine, reference = _train_both("record_04", tmp_path)
    assert len(mine) >= 2 and mine == reference  # bit-identical: same steps, same losses


@pytest.mark.slow
@pytest.mark.parametrize("record", [r for r in hints.RECORDS if r != "record_04"])
def test_every_workspace_trains_like_its_record_config(record, tmp_path):
    mine, reference = _train_both(record, tmp_path)
    assert len(mine) >= 2 and mine == reference


def test_task_names_round_trip_and_reject_unknown():
    name = tasks.task_name(("record_03", "record_04"), "1+2")
    assert name == "speedrun.record_03__record_04.hint_1+2"
    assert tasks.parse_task_name(name) == (("record_03", "record_04"), "1+2")
    assert len(tasks.task_names("none")) == len(hints.LADDER_STEPS)
    for bad in ("speedrun.record_03__record_05.hint_1", "speedrun.record_03__record_04.hint_4", "record_03"):
        with pytest.raises(UserError, match="unknown speedrun task"):
            tasks.parse_task_name(bad)


def test_task_scores_a_workspace_and_rejects_bad_ones_in_one_line(tmp_path):
    task = tasks.load_task(tasks.task_name(("record_04", "record_05"), "2"), TINY, root=tmp_path / "tasks")
    assert task.metric == "train_time_s" and "## Hints" in task.description and "qk_norm" in task.description
    assert "qk_norm" not in task.starter_sources()["gpt.py"]
    data = research_tasks.prepare_data(task, tmp_path / "data")
    result = research_tasks.run_baseline(task, tmp_path / "baseline", data)
    assert result["steps"] % TINY.eval_every == 0 and result["val_loss"] <= TINY.target
    assert result["tokens"] == result["steps"] * 16 * 128 and result["train_time_s"] > 0

    sources = task.starter_sources()
    bad_config = {**sources, "record.gin": sources["record.gin"] + "GPTConfig.qk_norm = True\n"}
    research_tasks.prepare_workdir(task, tmp_path / "bad", bad_config)
    with pytest.raises(research_tasks.InvalidSubmission, match="qk_norm") as e:
        research_tasks.evaluate(task, tmp_path / "bad", data)
    assert "\n" not in str(e.value)

    short = {**sources, "record.gin": sources["record.gin"].replace("train.total_steps = 300", "train.total_steps = 3")}
    research_tasks.prepare_workdir(task, tmp_path / "short", short)
    with pytest.raises(research_tasks.InvalidSubmission, match="missed the target"):
        research_tasks.evaluate(task, tmp_path / "short", data)


def test_full_scale_workspace_keeps_the_records_real_config():
    gin_text = workspace.sources("record_08", scale_file="")["record.gin"]
    assert "GPTConfig.num_layers = 12" in gin_text and "GPTConfig.vocab_size = 50304" in gin_text
    assert "train.global_batch_size = 512" in gin_text and "full scale" in gin_text
    assert "train.train_data" not in gin_text and "train.seq_len" not in gin_text


def test_a_task_links_its_proxys_shards_and_keys_its_data_by_them(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for name in ("web_train_000001.bin", "web_val_000000.bin"):
        (shards / name).write_bytes(b"shard")
    proxy = dataclasses.replace(TINY, train_data=str(shards / "web_train_*.bin"), val_data=str(shards / "web_val_*.bin"))
    name = tasks.task_name(("record_08", "record_09"))
    task = tasks.load_task(name, proxy, root=tmp_path / "tasks")
    assert json.loads((task.path / "proxy.json").read_text())["train_data"] == "data/web_train_*.bin"
    data = research_tasks.prepare_data(task, tmp_path / "data")
    assert sorted(p.name for p in data.public_dir.iterdir()) == ["web_train_000001.bin", "web_val_000000.bin"]
    assert tasks.load_task(name, TINY, root=tmp_path / "tasks").data_version != task.data_version
