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


def _llm_args(server, workdir, *bindings):
    return ["--gin_file=configs/lfs/base.gin", "--gin_file=configs/lfs/scorer_llm.gin",
            "--gin_bindings=run.tasks = ['countdown3', 'sudoku4x4']", "--gin_bindings=run.policies = ['lfs']",
            "--gin_bindings=run.num_games = 3", "--gin_bindings=LLMConfig.model = 'openai/scripted'",
            f"--gin_bindings=LLMConfig.api_base = '{server.base_url}'",
            "--gin_bindings=LLMConfig.api_key_env = 'TEST_LLM_KEY'", "--gin_bindings=LLMConfig.max_retries = 0",
            "--gin_bindings=run.max_tokens_per_game = 0", *(f"--gin_bindings={b}" for b in bindings),
            f"--workdir={workdir}"]


def test_a_game_whose_calls_keep_failing_is_unfinished_and_the_run_goes_on(tmp_path, monkeypatch):
    from libs.llm.testing import Fault, LocalOpenAIServer  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-SECRET-456")
    answer = search_responder()
    outage = {"on": True}

    def respond(body):  # Every Sudoku call fails with a 503 while the outage lasts.
        prompt = json.dumps(body.get("messages"))
        return Fault.http(503) if outage["on"] and "Sudoku" in prompt else answer(body)

    with LocalOpenAIServer(responder=respond) as server:
        workdir = tmp_path / "run"
        proc = run_binary("experiments.lfs", *_llm_args(server, workdir))
        assert proc.returncode == 0, proc.stderr[-3000:]
        records = report.read_games(str(workdir / "games.jsonl"))
        assert {r["task"] for r in records if r["finished"]} == {"countdown3"}
        assert {(r["task"], r["finished"]) for r in records if r["task"] == "sudoku4x4"} == {("sudoku4x4", False)}
        assert all("503" in r["reason"] for r in records if not r["finished"])
        assert "Unfinished games" in (workdir / "summary.md").read_text()
        assert json.loads((workdir / "status.json").read_text())["status"] == "incomplete"
        outage["on"] = False  # The rerun plays the unfinished games again.
        again = run_binary("experiments.lfs", *_llm_args(server, workdir))
        assert again.returncode == 0 and "3 games to play (3 already done)" in again.stderr, again.stderr[-2000:]
        assert json.loads((workdir / "status.json").read_text())["status"] == "finished"
        assert "Unfinished games" not in (workdir / "summary.md").read_text()


def test_sigterm_stops_an_llm_run_cleanly_and_the_rerun_finishes_without_repeats(tmp_path, monkeypatch):
    import signal  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    from libs.llm.testing import LocalOpenAIServer  # pylint: disable=import-outside-toplevel
    from tests.conftest import REPO_ROOT  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-SECRET-456")
    with LocalOpenAIServer(responder=search_responder(), delay_s=0.05) as server:
        workdir = tmp_path / "run"
        args = _llm_args(server, workdir, "run.games_in_parallel = 2")
        proc = subprocess.Popen([sys.executable, "-m", "experiments.lfs", *args], cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and server.num_requests < 30:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143 and "Traceback" not in stderr, stderr[-3000:]
        assert json.loads((workdir / "status.json").read_text())["status"] == "interrupted"
        done_before = len(report.read_games(str(workdir / "games.jsonl")))
        assert done_before < 6
        again = run_binary("experiments.lfs", *args)
        assert again.returncode == 0, again.stderr[-3000:]
        keys = [(r["task"], r["policy"], r["game"]) for r in report.read_games(str(workdir / "games.jsonl"))]
        assert len(keys) == len(set(keys)) == 6  # Every game once: none lost, none played twice.
        ledger = [json.loads(line) for line in open(workdir / "llm_ledger.jsonl")]
        assert len(ledger) >= server.num_requests - 2  # Every answered call is in the ledger (a kill loses <= 2).


def test_the_token_budget_counts_every_launch_of_a_workdir(tmp_path, monkeypatch):
    from libs.llm.testing import LocalOpenAIServer  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-SECRET-456")
    with LocalOpenAIServer(responder=search_responder()) as server:
        workdir = tmp_path / "run"
        args = _llm_args(server, workdir, "LLMConfig.budget_tokens = 8000", "run.games_in_parallel = 2")
        for _ in range(3):
            proc = run_binary("experiments.lfs", *args)
            assert proc.returncode == 0 and "budget spent" in proc.stderr, proc.stderr[-3000:]
            assert json.loads((workdir / "status.json").read_text())["status"] == "budget"
        ledger = [json.loads(line) for line in open(workdir / "llm_ledger.jsonl")]
        spent = [r["prompt_tokens"] + r["completion_tokens"] for r in ledger if not r["cached"]]
        assert 8000 <= sum(spent) <= 8000 + 2 * max(spent)  # Three launches, one budget (+ the calls in flight).
