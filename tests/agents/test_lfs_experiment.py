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
    assert len(games) == 18 and all(g["scorer"].startswith("heuristic (offline stand-in") for g in games)
    assert all(g["solved"] for g in games)  # Easy enough for every policy.
    summary = open(os.path.join(workdir, "summary.md")).read()
    assert "heuristic (offline stand-in for an LLM)" in summary and "| sudoku4x4 | mcts | 3 |" in summary
    assert "AUP win rate" in summary and os.path.getsize(os.path.join(workdir, "profiles.png")) > 0

    again = run_binary("experiments.lfs", *SMALL, f"--workdir={workdir}")
    assert again.returncode == 0 and "0 games to play (18 already done)" in again.stderr
    assert len(report.read_games(os.path.join(workdir, "games.jsonl"))) == 18


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
                "run.max_nodes_per_game = 60", *bindings])
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
    assert sum(g["fallbacks"] for g in games) < sum(g["parse_retries"] for g in games)  # ...mostly repaired.
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
