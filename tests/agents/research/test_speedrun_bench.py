"""The speedrunning benchmark run: FSR arithmetic on known costs (flags where the proxy ladder does not
improve, failed runs), one-line errors for bad settings, and (slow) the harness checks end to end: the
oracle recovers the whole speedup on steps and tokens, the no-op none, references are shared and a rerun
changes nothing."""

import json

import pytest

from libs.agents.research import speedrun_bench
from libs.envs.speedrun_bench.proxy import Proxy
from tests.conftest import run_binary


def _curve_run(record, steps, seconds):
    return {"record": record, "seed": 0, "curve": [[0, 5.0, 0.0, 0], [steps, 2.99, seconds, steps * 2048]],
            "proxy": speedrun_bench._reference_settings(Proxy())}  # pylint: disable=protected-access


_RUNS = [_curve_run("gpt2_124m", 200, 40.0), _curve_run("record_02", 150, 30.0), _curve_run("record_03", 150, 35.0)]


def _result(step, costs):
    return {"task": f"speedrun.{step[0]}__{step[1]}.hint_1", "step": list(step), "hint": "1", "costs": costs,
            "failure": None if costs else "invalid: missed the target"}


def test_fsr_of_known_costs_with_flags_and_failures(tmp_path):
    results = [_result(("gpt2_124m", "record_02"), {"train_time_s": 35.0, "steps": 160, "tokens": 327680}),
               _result(("record_02", "record_03"), {"train_time_s": 28.0, "steps": 140, "tokens": 286720}),
               _result(("gpt2_124m", "record_02"), None)]
    proxy = Proxy(measure="steps", target_rule="fixed", target=3.0)
    proxies = {("gpt2_124m", "record_02"): proxy, ("record_02", "record_03"): proxy}
    summary = speedrun_bench._score(str(tmp_path), _RUNS, proxies, results, proxy, "scripted", "x")  # pylint: disable=protected-access
    first, second, failed = summary["tasks"]
    assert first["fsr_train_time_s"] == pytest.approx(0.5) and first["fsr_steps"] == pytest.approx(0.8)
    assert first["fsr_tokens"] == pytest.approx(0.8) and first["flag_steps"] is None
    # record_03 is no cheaper than record_02 at this proxy: flagged on every cost, never scored.
    assert all(second[f"fsr_{m}"] is None and second[f"flag_{m}"] for m in ("train_time_s", "steps", "tokens"))
    assert failed["fsr_steps"] == 0.0 and failed["flag_steps"].startswith("failed run")
    text = (tmp_path / "summary_x.md").read_text()
    assert "| record_02 -> record_03 | 3.0 |" in text and "train_time_s: no speedup" in text and (tmp_path / "fsr_x.png").stat().st_size > 0
    assert json.loads((tmp_path / "results_x.json").read_text())["scaffold"] == "scripted"


@pytest.mark.parametrize("binding, message", [
    ("speedrun_bench.agent = 'human'", "speedrun_bench.agent='human'"),
    ("speedrun_bench.steps = ['record_03__record_05']", "unknown step"),
])
def test_bad_settings_are_one_line_errors(binding, message, tmp_path):
    proc = run_binary("experiments.speedrun_bench", "--gin_file=configs/speedrun_bench/tiny.gin",
                      f"--gin_bindings={binding}", f"--workdir={tmp_path}")
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]


def test_proxy_rejects_an_unknown_measure_and_a_bad_target():
    from libs.train.errors import ConfigError  # pylint: disable=import-outside-toplevel

    with pytest.raises(ConfigError, match="speedrun_proxy.measure"):
        Proxy(measure="joules")
    with pytest.raises(ConfigError, match="speedrun_proxy.target"):
        Proxy(target=0.0)


@pytest.mark.slow
def test_harness_checks_end_to_end_share_references_and_rerun_changes_nothing(tmp_path):
    base = ["--gin_file=configs/speedrun_bench/tiny.gin", f"--workdir={tmp_path}"]
    oracle = run_binary("experiments.speedrun_bench", *base, timeout=900)
    assert oracle.returncode == 0, oracle.stderr[-3000:]
    noop = run_binary("experiments.speedrun_bench", *base, "--gin_bindings=speedrun_bench.agent = 'noop'",
                      timeout=900)
    assert noop.returncode == 0, noop.stderr[-3000:]
    refs = [json.loads(line) for line in (tmp_path / "references.jsonl").read_text().splitlines()]
    assert len(refs) == 2  # gpt2_124m and record_02, one seed, trained once for both agents
    o = json.loads((tmp_path / "results_oracle.json").read_text())["tasks"][0]
    n = json.loads((tmp_path / "results_noop.json").read_text())["tasks"][0]
    assert o["fsr_steps"] == pytest.approx(1.0) and o["fsr_tokens"] == pytest.approx(1.0)  # bit-identical training
    assert n["fsr_steps"] == 0.0 and n["fsr_tokens"] == 0.0
    again = run_binary("experiments.speedrun_bench", *base, "--gin_bindings=speedrun_bench.agent = 'noop'")
    assert again.returncode == 0 and "already finished" in again.stdout


@pytest.mark.slow
def test_a_step_into_a_packed_record_measures_both_records_at_the_packed_proxy(tmp_path):
    proc = run_binary("experiments.speedrun_bench", "--gin_file=configs/speedrun_bench/tiny.gin",
                      "--gin_bindings=speedrun_bench.steps = ['record_11__record_12']",
                      "--gin_bindings=speedrun_proxy.total_steps = 10", f"--workdir={tmp_path}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    refs = [json.loads(line) for line in (tmp_path / "references.jsonl").read_text().splitlines()]
    assert [r["record"] for r in refs] == ["record_11", "record_12"]
    assert all(r["proxy"]["scale_file"].endswith("cpu_scale_packed.gin") and r["proxy"]["seq_len"] == 1024
               for r in refs)
    summary = json.loads((tmp_path / "results_oracle.json").read_text())
    task, ref = summary["tasks"][0], summary["references"][0]
    assert task["proxy"]["seq_len"] == 1024
    assert task["costs"]["steps"] == ref["after"]["steps"]  # record 12's workspace trains as its reference did
    assert "cpu_scale_packed.gin" in (tmp_path / "summary_oracle.md").read_text()


class SpeedrunResponder:
    """Scripted "model" for the first ladder step (test-only): drafts are, in turn, record 2's real change
    (every file of its workspace, multi-file format), an edit that breaks the model at import, and a reply
    without code; improves and debugs resubmit the real change; reviews flag what crashed."""

    def __init__(self):
        from libs.agents.research import replies  # pylint: disable=import-outside-toplevel
        from libs.envs.speedrun_bench import tasks  # pylint: disable=import-outside-toplevel

        files = tasks.reference_workspace("record_02")
        self.oracle = replies.bundle(files, list(files))
        self.broken = replies.bundle({"gpt.py": files["gpt.py"] + "\nraise ImportError('scripted breakage')\n"},
                                     ["gpt.py"])
        self.drafts = 0

    def __call__(self, body):
        prompt = body["messages"][-1]["content"]
        if '"is_bug"' in prompt:
            failed = "scripted breakage" in prompt  # (the task description itself says "invalid")
            return json.dumps({"is_bug": failed, "summary": "broke" if failed else "trained",
                               "metric": None, "lower_is_better": True})
        if "Below is a solution" in prompt or "failed" in prompt.split("\n", 1)[0]:
            return f"Apply record 2's changes.\n\n```python\n{self.oracle}```\n"
        self.drafts += 1
        if self.drafts % 3 == 1:
            return f"Rotary embeddings, RMSNorm, tuned AdamW.\n\n```python\n{self.oracle}```\n"
        if self.drafts % 3 == 2:
            return f"Break it.\n\n```python\n{self.broken}```\n"
        return "I would switch to rotary embeddings, but no code today."


@pytest.mark.slow
def test_a_model_over_http_reproduces_the_step_in_the_sandbox(tmp_path):
    from libs.llm.testing import LocalOpenAIServer  # pylint: disable=import-outside-toplevel
    from tests.agents.research.scripted import llm_bindings  # pylint: disable=import-outside-toplevel

    responder = SpeedrunResponder()
    with LocalOpenAIServer(responder=responder) as server:
        bindings = ["speedrun_bench.agent = 'research_agent'", "speedrun_bench.scaffold = 'scripted aide'",
                    "research_agent.operators = 'aide'", "research_agent.steps = 4", "research_agent.reply_retries = 0",
                    "Greedy.num_drafts = 3", "Greedy.debug_prob = 0.0", *llm_bindings(server)]
        proc = run_binary("experiments.speedrun_bench", "--gin_file=configs/speedrun_bench/tiny.gin",
                          *[f"--gin_bindings={b}" for b in bindings], f"--workdir={tmp_path}", timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    task = "speedrun.gpt2_124m__record_02.hint_none"
    nodes = [json.loads(line) for line in (tmp_path / "agent/tasks" / task / "journal.jsonl").read_text().splitlines()]
    nodes = [n for n in nodes if n.get("event") == "node"][1:]
    assert len(nodes) == 4 and sum(bool(n.get("buggy")) for n in nodes) == 2  # the breakage and the empty reply
    assert any("scripted breakage" in n["state"]["output"] for n in nodes)
    result = json.loads((tmp_path / "results_research_agent.json").read_text())
    row = result["tasks"][0]
    assert result["scaffold"] == "scripted aide" and row["fsr_steps"] == pytest.approx(1.0)  # the real change
    assert "scripted aide" in (tmp_path / "summary_research_agent.md").read_text()
