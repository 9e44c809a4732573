"""Source2Synth end to end: both pipelines over real HTTP (scripted replies) on a SQLite database built here."""

import csv
import hashlib
import json
import os
import sqlite3
import threading

import gin
import pytest

from libs.source2synth import experiment, standin
from libs.source2synth.testing import scripted_responder
from libs.train import launch, rundir
from tests.conftest import run_binary

DOCS = {
    "apollo.md": "# Apollo 11\n\nApollo 11 was commanded by [[Neil Armstrong]] and landed on the Moon in 1969.\n",
    "armstrong.md": "# Neil Armstrong\n\nNeil Armstrong was born in [[Wapakoneta]] in 1930. He flew on [[Apollo 11]].\n",
    "wapakoneta.md": "# Wapakoneta\n\nWapakoneta is a city in Auglaize County, Ohio. It hosts the Armstrong Air and "
                     "Space Museum, opened in 1972.\n",
    "gemini.md": "# Gemini 8\n\nGemini 8 flew in 1966 with [[Neil Armstrong]] and David Scott aboard.\n",
}


FAULTS = ("sql_parse", "sql_unknown_column", "empty_result", "sql_not_select", "malformed_reply", None, None)
BAD_SQL = {"sql_parse": "SELEC name FRM planets", "sql_unknown_column": "SELECT colour FROM planets",
           "empty_result": "SELECT name FROM planets WHERE name = 'Pluto'", "sql_not_select": "DROP TABLE planets"}


def _bucket(text: str, n: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % n


def _unanswerable(question: str) -> bool:
    return _bucket(question, 3) == 0


class Script:
    """Scripted faults; each new statement gets the next fault of FAULTS (a cached prompt replays its reply)."""

    def __init__(self):
        self.faults: dict[str, str | None] = {}
        self.leaks: dict[str, bool] = {}
        self.lock = threading.Lock()

    def fault(self, statement: str) -> str | None:
        with self.lock:
            return self.faults.setdefault(statement, FAULTS[len(self.faults) % len(FAULTS)])

    def leak(self, question2: str) -> bool:
        """Every other new merge names the bridge entity."""
        with self.lock:
            return self.leaks.setdefault(question2, len(self.leaks) % 2 == 1)

    def __call__(self, step: str, inputs: dict, n: int) -> str | None:
        if step == "sql" and self.fault(inputs["statement"]) in BAD_SQL:
            return json.dumps({"sql": BAD_SQL[self.fault(inputs["statement"])]})
        if step == "table_question" and self.fault(inputs["statement"]) == "malformed_reply":
            return "Here is a nice question!"  # no JSON: malformed, on every attempt
        if step == "hop1" and _bucket(inputs["passage"] + inputs["bridge"], 4) == 0:
            return json.dumps({"question": "Who is it?", "answer": "Nobody"})
        if step == "merge" and self.leak(inputs["question2"]):
            return json.dumps({"question": f"What about {inputs['answer1']}?", "reasoning": "It names the bridge."})
        if step == "text_answer" and _unanswerable(inputs["question"]):
            return json.dumps({"answer": "I do not know"})
        return None


@pytest.fixture
def corpus(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    db = sqlite3.connect(tables / "astro.sqlite")
    db.execute("CREATE TABLE planets (name TEXT, moons INTEGER, radius_km REAL)")
    db.executemany("INSERT INTO planets VALUES (?, ?, ?)", [("Mercury", 0, 2439.7), ("Venus", 0, 6051.8),
                   ("Earth", 1, 6371.0), ("Mars", 2, 3389.5), ("Jupiter", 95, 69911.0)])
    db.commit()
    db.close()
    with open(tables / "missions.csv", "w", newline="") as f:
        csv.writer(f).writerows([["mission", "year", "crewed"], ["Apollo 11", 1969, "yes"],
                                 ["Voyager 2", 1977, "no"], ["Gemini 8", 1966, "yes"]])
    (tables / "broken.csv").write_text("a,b\n1,2,3\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    (docs / "latin1.md").write_bytes("# Caf\xe9\n\nNot UTF-8.\n".encode("latin-1"))
    return tmp_path


@pytest.fixture
def scripted(monkeypatch, clean_gin, corpus):
    from libs.llm.testing import LocalOpenAIServer  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-SECRET-789")
    script = Script()
    responder = scripted_responder(script)
    responder.script = script
    with LocalOpenAIServer(responder=responder) as server:
        def parse(*bindings):
            launch.parse_config(["configs/source2synth/llm.gin"], [
                f"source2synth.tables = ['{corpus / 'tables'}']", f"source2synth.documents = ['{corpus / 'docs'}']",
                "source2synth.num_examples = 20", "LLMConfig.model = 'openai/scripted'",
                f"LLMConfig.api_base = '{server.base_url}'", "LLMConfig.api_key_env = 'TEST_LLM_KEY'",
                "LLMConfig.backoff_initial_s = 0.01", "LLMConfig.budget_usd = 0.0", *bindings])
        yield parse, server, responder


def test_both_pipelines_over_http_record_why_each_seed_was_rejected(scripted, tmp_path):
    parse, server, responder = scripted
    parse()
    workdir = str(tmp_path / "run")
    result = experiment.run(workdir)
    assert result["status"] == "complete" and result["generator"] == "openai/scripted"
    stats = json.load(open(os.path.join(workdir, "stats.json")))["pipelines"]
    table, hops = stats["table"], stats["multihop"]
    generated = rundir.read_jsonl(os.path.join(workdir, "generated.jsonl"))
    for r in generated:  # each seed was rejected exactly where, and why, the scripted replies say
        if r["pipeline"] == "table":
            done = r["example"]["reasoning"] if r["kept"] else {k: v[k] for k, v in r["replies"].items()}
            expected = responder.script.faults[done["statement"]] or ""
            assert r["reason"] in (expected, "answer_in_question"), r
        elif not r["kept"] and r["stage"] == "hop1":
            assert r["reason"] == "bridge_mismatch" and r["replies"]["hop1"]["answer"] == "Nobody"
        elif not r["kept"] and r["stage"] == "merge":
            assert r["reason"] == "leaks_bridge" and responder.script.leaks[r["replies"]["hop2"]["question"]]
        elif r["kept"]:
            assert not responder.script.leaks[r["example"]["reasoning"]["hops"][1]["question"]]
    reasons = table["rejected_in_generation"]
    assert {"sql: sql_parse", "sql: sql_unknown_column", "sql: sql_not_select", "sql: empty_result",
            "table_question: malformed_reply"} <= set(reasons)
    assert {"hop1: bridge_mismatch", "merge: leaks_bridge"} <= set(hops["rejected_in_generation"])
    assert table["generated"] > 0 and hops["generated"] > 0
    assert hops["seeds"] == 20 and sum(hops["rejected_in_generation"].values()) + hops["generated"] == 20

    # Curation: the scripted curator fails exactly the questions it was told to; k = 3 tries each.
    curated = rundir.read_jsonl(os.path.join(workdir, "curated.jsonl"))
    judged = [c for c in curated if c["slice"] == 1 and c["reason"] != "duplicate"]
    assert judged
    for c in judged:
        doomed = c["id"].startswith("multihop") and _unanswerable(c["question"])
        assert c["kept"] is not doomed, c
        assert len(c["tries"]) == (3 if doomed else 1)
        assert c["imputed"] is True and c["curator"] == "openai/scripted"
    assert hops["unanswerable"] == sum(1 for c in judged if not c["kept"])

    # Outputs: provenance on every example; chat and eval files line up.
    examples = [json.loads(line) for line in open(os.path.join(workdir, "dataset", "examples.jsonl"))]
    assert len(examples) == table["kept"] + hops["kept"] > 0
    for e in examples:
        prov = e["provenance"]
        assert prov["generator"] == "openai/scripted" and all(len(h) == 16 for h in prov["prompts"].values())
        if e["pipeline"] == "table":
            assert set(prov["prompts"]) == {"statement", "sql", "table_question"}
            assert prov["source"].endswith(("astro.sqlite:planets", "missions.csv")) and prov["rows"]
            assert e["answer"] and e["reasoning"]["sql"].upper().startswith("SELECT")
        else:
            assert set(prov["prompts"]) == {"hop1", "hop2", "merge"}
            assert [p["document"].rsplit("/", 1)[-1] for p in prov["passages"]][0] in DOCS
            assert len(e["reasoning"]["hops"]) == 2 and e["reasoning"]["hops"][0]["answer"] not in e["question"]
    chat = [json.loads(line) for line in open(os.path.join(workdir, "dataset", "train.jsonl"))]
    assert [c["id"] for c in chat] == [e["id"] for e in examples]
    assert all([m["role"] for m in c["messages"]] == ["system", "user", "assistant"] for c in chat)
    for name in ("generated.jsonl", "curated.jsonl", "stats.md", "llm_cache.sqlite", "llm_usage.jsonl"):
        assert b"sk-test-SECRET-789" not in open(os.path.join(workdir, name), "rb").read()

    # A rerun in the same workdir regenerates nothing and changes no output.
    before, snapshot = server.num_requests, open(os.path.join(workdir, "dataset", "examples.jsonl")).read()
    records = open(os.path.join(workdir, "generated.jsonl")).read()
    gin.clear_config()
    parse()
    experiment.run(workdir)
    assert server.num_requests == before
    assert open(os.path.join(workdir, "dataset", "examples.jsonl")).read() == snapshot

    # More seeds: only the new ones reach the model.
    gin.clear_config()
    parse("source2synth.num_examples = 24")
    experiment.run(workdir)
    after = open(os.path.join(workdir, "generated.jsonl")).read()
    assert after.startswith(records) and len(after.splitlines()) == 48
    assert {json.loads(line)["index"] for line in after[len(records):].splitlines()} == {20, 21, 22, 23}


def test_slice0_is_set_aside_for_a_finetuned_curator(scripted, tmp_path):
    parse, server, _ = scripted
    parse("source2synth.slice0_fraction = 0.5", "source2synth.finetuned_curator = 'openai/llmsynth'",
          "source2synth.impute = False")
    workdir = str(tmp_path / "run")
    result = experiment.run(workdir)
    assert result["curator"] == "openai/llmsynth (fine-tuned on slice 0)"
    curated = rundir.read_jsonl(os.path.join(workdir, "curated.jsonl"))
    assert {c["slice"] for c in curated} == {0, 1}
    slice0 = [c for c in curated if c["slice"] == 0]
    assert all(c["reason"] == "slice0" and not c["tries"] for c in slice0)
    lines = open(os.path.join(workdir, "dataset", "slice0_train.jsonl")).read().splitlines()
    assert len(lines) == len(slice0)
    asked = {r["json"]["model"] for r in server.requests if r["json"]}
    assert asked == {"scripted", "llmsynth"}
    assert all(c.get("imputed") is False for c in curated if c["slice"] == 1 and c["reason"] != "duplicate")


def test_offline_standin_run_and_evaluation_harness(clean_gin, tmp_path):
    """The README's offline command, then the harness scoring the stand-in on the run's own eval set."""
    workdir = str(tmp_path / "offline")
    launch.parse_config(["configs/source2synth/offline.gin"], ["source2synth.num_examples = 12"])
    result = experiment.run(workdir)
    assert result["generator"] == standin.LABEL and result["kept"]["table"] > 0 and result["kept"]["multihop"] > 0
    assert standin.LABEL in open(os.path.join(workdir, "stats.md")).read()
    gin.clear_config()
    launch.parse_config(["configs/source2synth/evaluate.gin"], [f"source2synth_eval.dataset_dir = '{workdir}'",
                                                                 "source2synth_eval.model = 'standin'"])
    evaluation = experiment.run(str(tmp_path / "eval"))
    assert evaluation["status"] == "complete"
    # The stand-in curated this set: every kept question is one it can answer.
    assert evaluation["metrics"]["table"]["execution_accuracy"] == 1.0
    assert evaluation["metrics"]["multihop"]["soft_exact_match"] == 1.0
    summary = open(tmp_path / "eval" / "eval_summary.md").read()
    assert "execution accuracy" in summary and "[" in summary


def test_bad_inputs_end_in_one_line(tmp_path):
    proc = run_binary("experiments.source2synth", "--gin_file=configs/source2synth/offline.gin",
                      f"--gin_bindings=source2synth.tables = ['{tmp_path}/nothing_here']",
                      f"--workdir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "nothing_here" in proc.stderr.strip().splitlines()[-1]
    empty = tmp_path / "docs"
    empty.mkdir()
    (empty / "a.md").write_text("# A\n\nNo links at all.\n")
    proc = run_binary("experiments.source2synth", "--gin_file=configs/source2synth/multihop.gin",
                      f"--gin_bindings=source2synth.documents = ['{empty}']", f"--workdir={tmp_path / 'run2'}")
    assert proc.returncode == 2 and "no links between the 1 documents" in proc.stderr.strip().splitlines()[-1]


def test_sigterm_stops_cleanly_and_the_rerun_regenerates_nothing(corpus, tmp_path, monkeypatch):
    import signal  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    from libs.llm.testing import LocalOpenAIServer  # pylint: disable=import-outside-toplevel
    from tests.conftest import REPO_ROOT  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-SECRET-789")
    with LocalOpenAIServer(responder=scripted_responder(), delay_s=0.1) as server:
        workdir = tmp_path / "run"
        args = ["--gin_file=configs/source2synth/llm.gin", f"--workdir={workdir}",
                f"--gin_bindings=source2synth.tables = ['{corpus / 'tables'}']",
                f"--gin_bindings=source2synth.documents = ['{corpus / 'docs'}']",
                "--gin_bindings=source2synth.num_examples = 12", "--gin_bindings=source2synth.examples_in_parallel = 2",
                "--gin_bindings=LLMConfig.model = 'openai/scripted'",
                f"--gin_bindings=LLMConfig.api_base = '{server.base_url}'",
                "--gin_bindings=LLMConfig.api_key_env = 'TEST_LLM_KEY'"]
        proc = subprocess.Popen([sys.executable, "-m", "experiments.source2synth", *args], cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        generated = workdir / "generated.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and (not generated.exists() or len(generated.read_text().splitlines()) < 4):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143 and "Traceback" not in stderr, stderr[-3000:]
        assert json.loads((workdir / "status.json").read_text())["status"] == "interrupted"
        first = generated.read_text()
        assert 4 <= len(first.splitlines()) < 24
        again = run_binary("experiments.source2synth", *args)
        assert again.returncode == 0, again.stderr[-3000:]
        records = rundir.read_jsonl(str(generated))
        assert generated.read_text().startswith(first)  # nothing done before was redone
        assert len(records) == len({r["id"] for r in records}) == 24
        assert json.loads((workdir / "status.json").read_text())["status"] == "finished"
        stopped = run_binary("experiments.source2synth", *args)  # finished: reported, nothing changes
        assert stopped.returncode == 0 and "already finished" in stopped.stdout
