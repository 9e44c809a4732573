"""The research agent end to end: every operator set x policy over real HTTP (a scripted model), the
rule-based stand-in offline, one-line errors, and a resume after a kill that repeats and loses no node."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from libs.agents.research import experiment
from libs.llm.testing import Fault, LocalOpenAIServer
from libs.search.tree import Journal
from libs.train import launch
from tests.agents.research.scripted import ResearchResponder, llm_bindings
from tests.conftest import REPO_ROOT, run_binary

POLICY_BINDINGS = {
    "greedy": ["research_agent.steps = 7", "research_agent.policy = 'greedy'", "Greedy.num_drafts = 4", "Greedy.debug_prob = 1.0", "Greedy.workers = 2"],
    "mcts": ["research_agent.steps = 7", "research_agent.policy = 'mcts'", "MCTS.num_children = 3", "MCTS.max_debug_depth = 1"],
    "evolutionary": ["research_agent.steps = 12", "research_agent.policy = 'evolutionary'", "Evolutionary.num_islands = 1", "Evolutionary.individuals_per_generation = 3",
                     "Evolutionary.crossover_prob = 1.0", "Evolutionary.max_debug_depth = 1"],
}


def _nodes(workdir, task="prisoners_dilemma"):
    events = Journal(os.path.join(workdir, "tasks", task, "journal.jsonl")).read()
    return [e for e in events if e["event"] == "node"][1:]  # without the root


def _run_in_process(bindings, workdir):
    launch.parse_config([], ["research_agent.tasks = ['prisoners_dilemma']", "research_agent.reply_retries = 1",
                             *bindings])
    try:
        return experiment.run(str(workdir))
    finally:
        import gin  # pylint: disable=import-outside-toplevel

        gin.clear_config()


@pytest.mark.parametrize("policy", sorted(POLICY_BINDINGS))
@pytest.mark.parametrize("operator_set", ["aide", "aira"])
def test_model_operator_sets_run_every_policy_over_http(operator_set, policy, tmp_path):
    responder = ResearchResponder()
    with LocalOpenAIServer(responder=responder) as server:
        summary = _run_in_process([f"research_agent.operators = '{operator_set}'", *POLICY_BINDINGS[policy],
                                   *llm_bindings(server)], tmp_path)
    nodes = _nodes(tmp_path)
    steps = int(POLICY_BINDINGS[policy][0].split("=")[1])
    assert steps <= len(nodes) <= steps + 2  # concurrent debugs may pass the budget by a node or two
    states = [n["state"] for n in nodes]
    assert any(n.get("buggy") for n in nodes) and any(not n.get("buggy") for n in nodes)
    assert all(s["metric"] is not None for s, n in zip(states, nodes) if not n.get("buggy"))
    assert {n["meta"]["op"] for n in nodes} >= {"draft"}
    if policy == "evolutionary":
        assert any(n["meta"]["op"] == "crossover" and len(n["parents"]) == 2 for n in nodes)
    if policy == "greedy":
        assert any(n["meta"]["op"] == "debug" for n in nodes)
    assert responder.counts["analyze"] >= 1 and server.num_requests >= len(nodes)
    assert summary["tasks"] == 1 and summary["status"] == "complete"
    result = json.loads((tmp_path / "results.json").read_text())["tasks"][0]
    assert result["proposer"] == f"openai/scripted ({operator_set} operators)" and result["baseline"] > 2
    assert (tmp_path / "tasks/prisoners_dilemma/tree.png").stat().st_size > 0
    html = (tmp_path / "tasks/prisoners_dilemma/tree.html").read_text()
    assert "row_strategy" in html and "sk-test" not in html
    for name in ("summary.md", "results.json", "tasks/prisoners_dilemma/journal.jsonl", "llm_ledger.jsonl"):
        assert "sk-test" not in (tmp_path / name).read_text()  # the key never reaches the run's files


def test_a_model_run_goes_through_several_tasks(tmp_path):
    with LocalOpenAIServer(responder=ResearchResponder()) as server:
        summary = _run_in_process(["research_agent.operators = 'aira'", "research_agent.steps = 2",
                                   "research_agent.tasks = ['prisoners_dilemma', 'battle_of_sexes']",
                                   *llm_bindings(server)], tmp_path)
    assert summary["tasks"] == 2 and summary["status"] == "complete"
    assert len(_nodes(tmp_path, "battle_of_sexes")) == 2


def test_replies_without_code_and_crashes_make_buggy_nodes_not_errors(tmp_path):
    with LocalOpenAIServer(responder=ResearchResponder()) as server:
        _run_in_process(["research_agent.operators = 'aide'", "research_agent.steps = 5", "Greedy.num_drafts = 5",
                         *llm_bindings(server)], tmp_path)
    failures = [n["state"]["failure"] for n in _nodes(tmp_path)]
    assert "no_code" in failures and "exit" in failures, failures
    crashed = next(n for n in _nodes(tmp_path) if n["state"]["failure"] == "exit")
    assert "scripted crash" in crashed["state"]["output"] and crashed["buggy"]


def test_a_request_the_server_rejects_is_a_buggy_node_and_the_search_goes_on(tmp_path):
    script = [Fault.http(400, message="the prompt has 3000 tokens; this server's context is 2048 tokens")]
    with LocalOpenAIServer(responder=ResearchResponder(), script=script) as server:
        _run_in_process(["research_agent.operators = 'aira'", "research_agent.steps = 2", *llm_bindings(server)],
                        tmp_path)
    first, second = _nodes(tmp_path)
    assert first.get("buggy") and "rejected the request" in first["state"]["output"] and "2048" in first["state"]["output"]
    assert not second.get("buggy")


def test_the_token_budget_stops_the_run_cleanly_across_launches(tmp_path):
    with LocalOpenAIServer(responder=ResearchResponder()) as server:
        args = ["--gin_file=configs/research_agent/llm.gin", "--gin_bindings=research_agent.tasks = ['prisoners_dilemma']",
                "--gin_bindings=LLMConfig.budget_tokens = 6000", "--gin_bindings=LLMConfig.budget_usd = 0.0",
                *[f"--gin_bindings={b}" for b in llm_bindings(server)], f"--workdir={tmp_path}"]
        for _ in range(2):
            proc = run_binary("experiments.research_agent", *args)
            assert proc.returncode == 0 and "LLM budget spent" in proc.stderr, proc.stderr[-3000:]
            assert json.loads((tmp_path / "status.json").read_text())["status"] == "budget"
    ledger = [json.loads(line) for line in (tmp_path / "llm_ledger.jsonl").read_text().splitlines()]
    spent = [r["prompt_tokens"] + r["completion_tokens"] for r in ledger if not r["cached"]]
    assert 6000 <= sum(spent) <= 6000 + 2 * max(spent)  # two launches, one budget (+ the calls in flight)


def test_rule_based_offline_run_labels_the_stand_in_and_reruns_change_nothing(tmp_path):
    args = ["--gin_file=configs/research_agent/offline.gin", "--gin_bindings=research_agent.steps = 6",
            "--gin_bindings=research_agent.tasks = ['prisoners_dilemma', 'battle_of_sexes']", f"--workdir={tmp_path}"]
    first = run_binary("experiments.research_agent", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = (tmp_path / "summary.md").read_text()
    assert "rule-based stand-in (no model)" in summary and "| battle_of_sexes | score ↑ |" in summary
    assert "Best AUP" in summary and (tmp_path / "profiles.png").stat().st_size > 0
    plans = [n["state"]["plan"] for n in _nodes(tmp_path)]
    assert len(plans) == 6 and all(p.startswith("[rule-based stand-in (no model)]") for p in plans)
    assert (tmp_path / "tasks/prisoners_dilemma/best/strategy.py").exists()
    before = (tmp_path / "tasks/prisoners_dilemma/journal.jsonl").read_text()
    again = run_binary("experiments.research_agent", *args)
    assert again.returncode == 0 and "already finished" in again.stdout, again.stderr[-2000:]
    assert (tmp_path / "tasks/prisoners_dilemma/journal.jsonl").read_text() == before


def test_more_steps_on_a_rerun_extend_the_search(tmp_path):
    base = ["--gin_file=configs/research_agent/offline.gin", f"--workdir={tmp_path}"]
    assert run_binary("experiments.research_agent", *base, "--gin_bindings=research_agent.steps = 4").returncode == 0
    first = _nodes(tmp_path)
    more = run_binary("experiments.research_agent", *base, "--gin_bindings=research_agent.steps = 8")
    assert more.returncode == 0 and "resuming with 4 of 8 nodes made" in more.stderr, more.stderr[-2000:]
    after = _nodes(tmp_path)
    assert len(after) == 8 and after[:4] == first


@pytest.mark.parametrize("binding, message", [
    ("research_agent.tasks = ['no_such_task']", "unknown task(s) ['no_such_task']"),
    ("research_agent.operators = 'gpt'", "research_agent.operators='gpt'"),
    ("research_agent.policy = 'beam'", "research_agent.policy='beam'"),
])
def test_bad_settings_are_one_line_errors(binding, message, tmp_path):
    proc = run_binary("experiments.research_agent", "--gin_file=configs/research_agent/offline.gin",
                      f"--gin_bindings={binding}", f"--workdir={tmp_path}")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("stop", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
                         ids=["sigterm", "sigkill"])
def test_a_stopped_run_resumes_without_repeating_or_losing_a_node(stop, tmp_path):
    with LocalOpenAIServer(responder=ResearchResponder(), delay_s=0.3) as server:
        args = ["--gin_file=configs/research_agent/offline.gin", "--gin_bindings=research_agent.operators = 'aira'",
                "--gin_bindings=research_agent.steps = 10", "--gin_bindings=Greedy.num_drafts = 3",
                *[f"--gin_bindings={b}" for b in llm_bindings(server)], f"--workdir={tmp_path}"]
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        proc = subprocess.Popen([sys.executable, "-m", "experiments.research_agent", *args], cwd=REPO_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 240
        while time.time() < deadline and len(_nodes_if_any(tmp_path)) < 4:
            time.sleep(0.1)
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=120)
        made = _nodes_if_any(tmp_path)
        assert 4 <= len(made) < 10, stderr[-3000:]
        if stop == signal.SIGTERM:
            assert proc.returncode == 143 and "Traceback" not in stderr, stderr[-3000:]
            assert json.loads((tmp_path / "status.json").read_text())["status"] == "interrupted"
        again = run_binary("experiments.research_agent", *args)
        assert again.returncode == 0, again.stderr[-3000:]
    after = _nodes(tmp_path)
    assert after[:len(made)] == made  # nothing lost or rewritten
    assert 10 <= len(after) <= 11  # the budget counts across launches (a step in flight may finish)
    assert len({n["id"] for n in after}) == len(after)


def _nodes_if_any(workdir):
    path = os.path.join(workdir, "tasks", "prisoners_dilemma", "journal.jsonl")
    return _nodes(workdir) if os.path.exists(path) else []
