"""libs/agents/maestromotif/skill_code.py: static checks, the sandboxed unit cases, the versioned store and
generation over real HTTP (a scripted OpenAI-compatible server)."""

from __future__ import annotations

import asyncio
import os

import pytest

from libs.agents.maestromotif import default_skills
from libs.agents.maestromotif import skill_code as sc
from libs.agents.maestromotif.skills import default_program_source
from libs.llm.gateway import Gateway, LLMConfig
from libs.llm.testing import LocalOpenAIServer
from libs.sandbox import Sandbox
from libs.sandbox import process as sandbox_process
from libs.train.errors import UserError

needs_bwrap = pytest.mark.skipif(sandbox_process.bwrap_problem() is not None, reason="bubblewrap is missing")

DEFAULTS = default_program_source()
# A program that never ends the descender: it passes the static check and fails a case.
NEVER_ENDS = DEFAULTS.replace('return ctx["depth"] > start_ctx["depth"]', "return False")
OPENS_FILES = DEFAULTS.replace("import random", "import os\nimport random").replace(
    '    first = "skill" not in memory', '    open("/etc/passwd").read()\n    first = "skill" not in memory')
SYNTAX_ERROR = DEFAULTS.replace("def termination(skill, ctx, start_ctx, steps):",
                                "def termination(skill, ctx, start_ctx, steps)")
SYNTAX_LINE = DEFAULTS.splitlines().index("def termination(skill, ctx, start_ctx, steps):") + 1
LOOPS = DEFAULTS.replace('    if skill == "discoverer":\n        return steps',
                         '    while skill == "discoverer":\n        pass\n    if skill == "discoverer":\n'
                         '        return steps')
# A small program of its own (not the defaults) that a model might write.
TINY = '''
def initiation(skill, ctx):
    if skill == "merchant":
        return ctx["shopkeeper_in_view"] and ctx["num_items"] > 0
    if skill == "worshipper":
        return ctx["altar_in_view"] and ctx["num_items"] > 0
    return True


def termination(skill, ctx, start_ctx, steps):
    if skill != "merchant" and initiation("merchant", ctx) or initiation("worshipper", ctx):
        return True
    if skill == "descender":
        return ctx["depth"] > start_ctx["depth"]
    if skill == "ascender":
        return ctx["depth"] < start_ctx["depth"]
    return steps >= 300


def select_skill(ctx, memory):
    print("selecting at depth", ctx["depth"])
    for skill in ("merchant", "worshipper"):
        if initiation(skill, ctx):
            return skill
    last = memory.get("last", "descender")
    going_down = memory.get("down", True)
    if ctx["depth"] >= 3:
        going_down = False
    elif ctx["depth"] <= 1:
        going_down = True
    memory["down"] = going_down
    memory["last"] = "discoverer" if last != "discoverer" else ("descender" if going_down else "ascender")
    return memory["last"]
'''


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


def test_static_problems_name_each_reason():
    assert sc.static_problems(DEFAULTS) == [] and sc.static_problems(TINY) == []
    assert sc.static_problems(SYNTAX_ERROR) == [f"syntax error at line {SYNTAX_LINE}: expected ':'"]
    problems = sc.static_problems(OPENS_FILES)
    assert any("import os is not allowed" in p for p in problems) and any(": open is not allowed" in p
                                                                          for p in problems)
    sneaky = ("import subprocess\nfrom os import path\nfrom . import x\n"
              "def initiation(skill, ctx):\n    return ().__class__.__bases__ is eval\n"
              "def termination(skill, ctx):\n    return __builtins__\n")
    problems = sc.static_problems(sneaky)
    for expected in ("no top-level function select_skill", "termination must take 4 positional arguments",
                     "import subprocess is not allowed", "from os import is not allowed",
                     "from . import is not allowed", "dunder attribute .__class__", "dunder attribute .__bases__",
                     ": eval is not allowed", ": __builtins__ is not allowed"):
        assert any(expected in p for p in problems), (expected, problems)
    assert sc.static_problems("") == ["the program is empty"]


@pytest.mark.parametrize("task", [None, *default_skills.TASKS])
def test_the_defaults_pass_their_cases_in_process(task):
    result = sc.run_cases_in_process(default_program_source(task), sc.cases_for(task))
    assert result.ok, result.failures


@needs_bwrap
@pytest.mark.parametrize("task", [None, "delphi", "level_up_sell"])
def test_the_defaults_pass_their_cases_in_the_sandbox(sandbox, task):
    result = sc.check_program(default_program_source(task), sandbox, sc.cases_for(task))
    assert result.ok and result.reason == f"passed {len(sc.cases_for(task))} cases", result.failures


def test_the_cases_can_fail():
    wrong = sc.run_cases_in_process(NEVER_ENDS, sc.cases_for())
    assert wrong.failures == ["descender ends when depth grows: expected True, got False"]
    lazy = sc.run_cases_in_process(TINY.replace('("descender" if going_down else "ascender")', '"discoverer"'),
                                   sc.cases_for())
    assert any("never went below depth 1" in f for f in lazy.failures)
    # A task's cases differ from the training policy's: the training defaults are no Delphi policy.
    assert not sc.run_cases_in_process(DEFAULTS, sc.cases_for("delphi")).ok
    with pytest.raises(UserError, match="skill task 'moria'"):
        sc.cases_for("moria")


@needs_bwrap
def test_the_store_keeps_the_previous_version_and_journals_each_rejection(sandbox, tmp_path):
    store = sc.SkillCodeStore(tmp_path / "skills", sandbox=sandbox)
    assert store.current().version == 0 and store.current().source == DEFAULTS
    rejected = {"wrong": NEVER_ENDS, "unsafe": OPENS_FILES, "syntax": SYNTAX_ERROR, "endless": LOOPS}
    results = {origin: store.propose(source, origin) for origin, source in rejected.items()}
    assert results["wrong"].reason == "1 of 20 cases failed; first: descender ends when depth grows: expected " \
                                      "True, got False"
    assert results["unsafe"].reason.startswith("static check: line") and "import os is not allowed" in \
        results["unsafe"].reason
    assert results["syntax"].reason == f"static check: syntax error at line {SYNTAX_LINE}: expected ':'"
    assert "discoverer goes on after one step: took over 1 s (an endless loop?)" in results["endless"].failures
    assert not any(r.ok for r in results.values()) and store.versions() == [0]
    accepted = store.propose(TINY, "hand")
    assert accepted.ok and accepted.version == 1 and store.current() == sc.StoredProgram(1, TINY)
    journal = store.journal()
    assert [j["origin"] for j in journal] == ["defaults", "wrong", "unsafe", "syntax", "endless", "hand"]
    assert [j["ok"] for j in journal] == [True, False, False, False, False, True]
    assert journal[2]["source"] == OPENS_FILES and journal[-1]["version"] == 1
    assert sc.SkillCodeStore(tmp_path / "skills").current().version == 1  # reopened: resumes


def _gateway(server: LocalOpenAIServer) -> Gateway:
    os.environ.setdefault("TEST_LLM_KEY", "sk-test-skills-123")
    return Gateway(LLMConfig(model="openai/scripted", api_base=server.base_url, api_key_env="TEST_LLM_KEY",
                             max_retries=0, timeout_s=30.0, backoff_initial_s=0.0))


def _reply(code: str) -> str:
    return f"Q: what must select_skill return? A: one of the five skills.\n\n```python\n{code.strip()}\n```\n"


@needs_bwrap
def test_generate_over_http_accepts_a_good_program(sandbox, tmp_path):
    store = sc.SkillCodeStore(tmp_path / "delphi", task="delphi", sandbox=sandbox)
    good = default_program_source("delphi").replace("ORACLE_DEPTH = 9", "ORACLE_DEPTH = 10")
    with LocalOpenAIServer(script=[_reply(good)]) as server:
        result = asyncio.run(sc.generate(_gateway(server), store, sandbox, task="delphi"))
        prompt = server.requests[0]["json"]["messages"][1]["content"]
    assert result.ok and result.version == 1 and store.current().source.strip() == good.strip()
    assert "finding the Oracle level" in prompt and "shopkeeper_in_view (bool)" in prompt
    assert "def termination(skill: str, ctx: dict, start_ctx: dict, steps: int) -> bool" in prompt
    assert "TASK = 'delphi'" in prompt  # the current program is shown
    assert len(server.requests) == 1


@needs_bwrap
def test_generate_retries_a_rejected_program_with_the_reason(sandbox, tmp_path):
    store = sc.SkillCodeStore(tmp_path / "training", sandbox=sandbox)
    with LocalOpenAIServer(script=[_reply(NEVER_ENDS), _reply(TINY)]) as server:
        result = asyncio.run(sc.generate(_gateway(server), store, sandbox))
        retry = server.requests[1]["json"]["messages"]
    assert result.ok and result.version == 1 and store.current().source.strip() == TINY.strip()
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert "descender ends when depth grows: expected True, got False" in retry[-1]["content"]
    assert [j["ok"] for j in store.journal()] == [True, False, True]
    assert [j["origin"] for j in store.journal()] == ["defaults", "llm scripted attempt 1",
                                                     "llm scripted attempt 2"]


@needs_bwrap
def test_generate_gives_up_after_its_attempts_and_keeps_the_defaults(sandbox, tmp_path):
    store = sc.SkillCodeStore(tmp_path / "training", sandbox=sandbox)
    with LocalOpenAIServer(script=["I would rather not write code.", _reply(SYNTAX_ERROR)]) as server:
        result = asyncio.run(sc.generate(_gateway(server), store, sandbox))
    assert not result.ok and store.current().version == 0
    assert [j["reason"] for j in store.journal()[1:]] == [
        "the reply holds no Python program that parses",
        f"static check: syntax error at line {SYNTAX_LINE}: expected ':'"]
    with pytest.raises(UserError, match="differs from the store's task"):
        asyncio.run(sc.generate(_gateway(server), store, sandbox, task="delphi"))
