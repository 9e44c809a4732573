"""The LFS experiment end to end: offline binary with resume, and the LLM path over real HTTP."""

import json
import os

import gin
import pytest

from libs.agents import lfs_experiment, report
from libs.agents.testing import search_responder
from libs.train import launch
from tests.conftest import run_binary

SMALL = ["--gin_file=configs/lfs/offline.gin", "--gin_bindings=run.tasks = ['countdown3', 'sudoku4x4']",
         "--gin_bindings=run.policies = ['lfs', 'mcts', 'tot_bfs']", "--gin_bindings=run.num_games = 3"]


def test_offline_binary_writes_results_and_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    first = run_binary("experiments.lfs", *SMALL, f"--workdir={workdir}")
    assert first.returncode == 0, first.stderr[-3000:]
    games = report.read_games(os.path.join(workdir, "games.jsonl"))
    assert len(games) == 18 and all(g["scorer"].startswith("stand-in: heuristic with medium noise") for g in games)
    assert all(g["tokens"] > 0 and g["seconds"] >= 0 and g["departures"] == [] for g in games)
    summary = open(os.path.join(workdir, "summary.md")).read()
    assert "not a model" in summary and "| sudoku4x4 | mcts | 3 |" in summary
    assert "Departures from the paper: none." in summary and "the paper's formulas" in summary
    assert "AUP win rate" in summary and os.path.getsize(os.path.join(workdir, "profiles.png")) > 0

    before = {name: os.path.getmtime(os.path.join(workdir, name)) for name in ("games.jsonl", "summary.md")}
    again = run_binary("experiments.lfs", *SMALL, f"--workdir={workdir}")
    assert again.returncode == 0 and "already finished" in again.stdout and "games=18" in again.stdout
    assert before == {name: os.path.getmtime(os.path.join(workdir, name)) for name in before}  # Nothing changed.
    changed = run_binary("experiments.lfs", *SMALL, "--gin_bindings=run.games_in_parallel = 2", f"--workdir={workdir}")
    assert changed.returncode == 0 and "0 games to play (18 already done)" in changed.stderr
    assert len(report.read_games(os.path.join(workdir, "games.jsonl"))) == 18


def test_instance_files_are_played_and_bad_ones_named(tmp_path):
    good = tmp_path / "val_3.json"  # The paper's Countdown format: extra fields are ignored.
    good.write_text(json.dumps([{"nums": [7, 60, 27], "target": 80, "solution": []},
                                {"nums": [4, 6, 10], "target": 34}]))
    workdir = tmp_path / "run"
    proc = run_binary("experiments.lfs", "--gin_file=configs/lfs/offline.gin", f"--workdir={workdir}",
                      f"--gin_bindings=run.instances_file = '{good}'", "--gin_bindings=run.policies = ['lfs', 'mcts']")
    assert proc.returncode == 0, proc.stderr[-3000:]
    games = report.read_games(str(workdir / "games.jsonl"))
    assert {(g["task"], g["policy"], g["game"]) for g in games} == {
        ("val_3", p, i) for p in ("lfs", "mcts") for i in (0, 1)}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"game": "countdown", "numbers": [4, 6, 10], "target": 34}\n'
                   '{"game": "countdown", "numbers": [1, 1, 1], "target": 100}\n')
    proc = run_binary("experiments.lfs", "--gin_file=configs/lfs/offline.gin", f"--workdir={tmp_path / 'bad'}",
                      f"--gin_bindings=run.instances_file = '{bad}'")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "instance 1" in last and "unsolvable" in last, proc.stderr[-2000:]


def test_departures_from_the_paper_are_listed(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_binary("experiments.lfs", *SMALL, f"--workdir={workdir}", "--gin_bindings=run.win_on_generation = True",
                      "--gin_bindings=run.merge_equivalent_moves = True")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = open(os.path.join(workdir, "summary.md")).read()
    assert "Departures from the paper: win_on_generation, merge_equivalent_moves." in summary
    assert "departures from the paper: win_on_generation, merge_equivalent_moves" in proc.stderr


def test_unknown_policy_is_a_one_line_error(tmp_path):
    proc = run_binary("experiments.lfs", "--gin_file=configs/lfs/offline.gin",
                      "--gin_bindings=run.policies = ['lfs', 'beam']", f"--workdir={tmp_path}")
    assert proc.returncode == 2 and "unknown task or policy ['beam']" in proc.stderr.strip().splitlines()[-1]


@pytest.fixture
def llm_config(monkeypatch, clean_gin):
    from libs.llm.testing import LocalOpenAIServer  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-SECRET-456")
    with LocalOpenAIServer(responder=search_responder(garbage_every=7)) as server:
        def parse(*bindings):
            launch.parse_config(["configs/lfs/base.gin", "configs/lfs/scorer_llm.gin"], [
                "run.tasks = ['countdown3', 'sudoku4x4']", "run.policies = ['lfs', 'mcts']", "run.num_games = 2",
                "LLMConfig.model = 'openai/scripted'", f"LLMConfig.api_base = '{server.base_url}'",
                "LLMConfig.api_key_env = 'TEST_LLM_KEY'", "LLMConfig.backoff_initial_s = 0.01",
                "run.max_nodes_per_game = 60", "run.max_tokens_per_game = 0", *bindings])
        yield parse, server


def test_llm_scorer_runs_over_http_and_survives_malformed_replies(llm_config, tmp_path):
    parse, server = llm_config
    parse()
    summary = lfs_experiment.run(str(tmp_path))
    assert summary["status"] == "complete"
    games = report.read_games(str(tmp_path / "games.jsonl"))
    assert len(games) == 8 and all(g["scorer"] == "openai/scripted" for g in games)
    assert sum(g["model_calls"] for g in games) > 0 and all(g["tokens"] > 0 for g in games)
    assert sum(g["parse_retries"] for g in games) > 0  # Every 7th reply was garbage...
    assert sum(g["fallbacks"] for g in games) == 0  # ...and repaired by the corrective turn or a fresh attempt.
    usage = json.loads(open(tmp_path / "llm_usage.jsonl").readline())
    assert usage["calls"] == server.num_requests > 0  # Real HTTP calls; identical prompts came from the cache.
    assert usage["calls"] + usage["cached_calls"] == sum(g["model_calls"] for g in games)
    for name in ("games.jsonl", "llm_usage.jsonl", "summary.md", "llm_cache.sqlite"):
        assert b"sk-test-SECRET-456" not in open(tmp_path / name, "rb").read()

    # A rerun is free: every game is already done, nothing reaches the server.
    before = server.num_requests
    gin.clear_config()
    parse()
    lfs_experiment.run(str(tmp_path))
    assert server.num_requests == before


def test_llm_token_budget_stops_the_run_cleanly(llm_config, tmp_path):
    parse, _ = llm_config
    parse("LLMConfig.budget_tokens = 3000", "run.games_in_parallel = 2")
    summary = lfs_experiment.run(str(tmp_path))
    assert summary["status"] == "budget"
    assert len(report.read_games(str(tmp_path / "games.jsonl"))) < 8
    assert os.path.exists(tmp_path / "summary.md")
