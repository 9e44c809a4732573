"""A scripted "model" for the research agent's tests, served over real HTTP by libs.llm.testing.

It answers each operator's prompt (recognised by the templates' wording) with a fixed repertoire for the
prisoner's-dilemma task: drafts cycle through a working program, a program that crashes, two replies without
code (so one re-ask fails too) and a working program wrapped in <think> tags and a ```py fence; debugs fix; improves change a
hyperparameter (every third one has a syntax error, so it is re-asked and may end buggy); crossovers
work; analyses return a JSON review (is_bug when the output shows an error), every fourth one malformed.
Test-only: nothing outside tests pretends to be a model.
"""

from __future__ import annotations

import json
import os
import threading

from libs.envs import research_tasks

_STARTER = research_tasks.load_task("prisoners_dilemma").starter_sources()["strategy.py"]


def _program(forgiveness: float = 0.3, probe: float = 0.0, broken: bool = False) -> str:
    code = _STARTER.replace("FORGIVENESS = 0.3", f"FORGIVENESS = {forgiveness}").replace("PROBE = 0.0",
                                                                                        f"PROBE = {probe}")
    if broken:
        code = code.replace("import random\n", "import random\nraise RuntimeError('scripted crash')\n")
    return code


def _reply(plan: str, code: str, fence: str = "python") -> str:
    return f"{plan}\n\n```{fence}\n{code}```\n"


class ResearchResponder:
    """Callable responder (thread-safe); `counts` tallies the prompts seen per operator."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = {op: 0 for op in ("draft", "improve", "debug", "crossover", "analyze")}

    @staticmethod
    def _operator(prompt: str) -> str:
        if '"is_bug"' in prompt:
            return "analyze"
        if "Combine" in prompt:
            return "crossover"
        if "failed" in prompt.split("\n", 1)[0]:
            return "debug"
        if "Improve the solution" in prompt or "Below is a solution" in prompt:
            return "improve"
        return "draft"

    def __call__(self, body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        op = self._operator(prompt)
        with self._lock:
            self.counts[op] += 1
            n = self.counts[op]
        if op == "analyze":
            if n % 4 == 0:
                return "The program looks fine to me."  # no JSON: the review is unreadable
            failed = "Traceback" in prompt or "rejected" in prompt or "exited with code" in prompt
            return json.dumps({"is_bug": failed, "summary": "crashed" if failed else "ran and scored",
                               "metric": None if failed else 2.5, "lower_is_better": False})
        if op == "draft":
            kind = n % 5
            if kind == 1:
                return _reply("Tit for tat with less forgiveness.", _program(0.1))
            if kind == 2:
                return _reply("A strategy that crashes.", _program(0.2, broken=True))
            if kind in (3, 4):  # twice in a row: a re-ask fails too
                return "I would play tit for tat, but I will not write the code."
            return "<think>tit for tat, forgive rarely</think>" + _reply("Never forgive.", _program(0.0), "py")
        if op == "debug":
            return _reply("Remove the crash.", _program(0.2))
        if op == "improve":
            if n % 3 == 0:
                return _reply("A broken edit.", "def row_strategy(history):\n    return (\n")
            return _reply(f"Probe a little: {n}.", _program(0.1, probe=round(0.01 * (n % 7), 2)))
        return _reply("Take forgiveness from one and probing from the other.", _program(0.1, probe=0.05))


def llm_bindings(server, *extra: str) -> list[str]:
    """Gin bindings that point the agent's gateway at `server` (key in TEST_LLM_KEY)."""
    os.environ.setdefault("TEST_LLM_KEY", "sk-test-research-123")
    return ["LLMConfig.model = 'openai/scripted'", f"LLMConfig.api_base = '{server.base_url}'",
            "LLMConfig.api_key_env = 'TEST_LLM_KEY'", "LLMConfig.max_retries = 1", "LLMConfig.timeout_s = 30.0",
            "LLMConfig.backoff_initial_s = 0.0", "LLMConfig.temperature = 0.0", *extra]
