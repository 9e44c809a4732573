"""ModelScorer: the paper's attempts, corrective turn and fallbacks, with every call's tokens counted."""

import asyncio
import dataclasses

import pytest

from libs.agents import prompts
from libs.agents.model_queries import FALLBACKS, ModelScorer


@dataclasses.dataclass
class Reply:
    text: str
    prompt_tokens: int = 100
    completion_tokens: int = 10


class FakeModel:
    """Replies from a script; records each call's messages and overrides."""

    def __init__(self, *replies):
        self.replies, self.calls = list(replies), []

    async def complete(self, messages, **overrides):
        self.calls.append((messages, overrides))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return Reply(reply)


class CallFailed(RuntimeError):
    pass


PROMPT = prompts.countdown_prompt("child_values", "**State 0**", {0: "1 + 2 = 3", 2: "2 * 2 = 4"})


def ask(model, kind="child_values", keys=(0, 2)):
    scorer = ModelScorer(model, "fake", call_errors=(CallFailed,))
    return asyncio.run(scorer.ask(kind, "countdown", PROMPT, list(keys))), scorer


def test_a_good_answer_costs_one_call():
    answer, scorer = ask(FakeModel('\\boxed{{"operation_values": {"0": 0.9, "2": 0.1}}}'))
    assert answer == {0: 0.9, 2: 0.1}
    assert (scorer.stats.calls, scorer.stats.retries, scorer.stats.tokens) == (1, 0, 110)


def test_a_reply_without_a_box_gets_one_corrective_turn_in_the_same_conversation():
    model = FakeModel("Let me think.", '\\boxed{{"operation_values": {"0": 0.3}}}')
    answer, scorer = ask(model)
    assert answer == {0: 0.3}  # Key 2 left out: that child stays unvalued, as in the paper.
    messages, _ = model.calls[1]
    assert messages[-2] == {"role": "assistant", "content": "Let me think."}
    assert messages[-1]["content"] == prompts.TRY_AGAIN
    assert scorer.stats.tokens == 220  # Both calls counted (the paper's counter keeps only the second).


def test_an_unusable_boxed_answer_starts_a_fresh_attempt_past_the_cache():
    model = FakeModel('\\boxed{{"operation_values": {"0": 7}}}', '\\boxed{{"operation_values": {"0": 0.7}}}')
    answer, scorer = ask(model)
    assert answer == {0: 0.7} and len(model.calls) == 2
    assert model.calls[0][1] == {} and model.calls[1][1] == {"cache_tag": "attempt-1"}
    assert len(model.calls[1][0]) == 2  # A fresh conversation: system and user prompt only.


@pytest.mark.parametrize("kind", ["child_values", "value", "explore", "priors"])
def test_five_failed_attempts_give_the_papers_fallback(kind):
    model = FakeModel(*(["no box here", "still none"] * 4 + [CallFailed("HTTP 500 after retries")]))
    answer, scorer = ask(model, kind)
    assert answer == FALLBACKS[kind]
    assert scorer.stats.fallbacks == 1 and scorer.stats.calls == 8 and len(model.calls) == 9
    assert FALLBACKS == {"child_values": {}, "value": None, "explore": False, "priors": {}}


def test_structured_queries_send_the_answer_schema_and_parse_the_bare_object():
    model = FakeModel('{"operation_values": {"0": 0.9, "2": 0.1}}')
    scorer = ModelScorer(model, "fake", structured=True)
    answer = asyncio.run(scorer.ask("child_values", "countdown", PROMPT, [0, 2]))
    assert answer == {0: 0.9, 2: 0.1}
    schema = model.calls[0][1]["response_format"]["json_schema"]["schema"]
    values = schema["properties"]["operation_values"]
    assert values["required"] == ["0", "2"] and values["properties"]["0"] == {"type": "number", "minimum": 0,
                                                                                "maximum": 1}
    assert schema["additionalProperties"] is False


def test_a_structured_reply_that_does_not_parse_ends_the_attempt_without_a_corrective_turn():
    model = FakeModel('{"operation_values": {"0": 1.5, "2": 0.1}}', '{"operation_values": {"0": 0.5, "2": 0.1}}')
    scorer = ModelScorer(model, "fake", structured=True)
    answer = asyncio.run(scorer.ask("child_values", "countdown", PROMPT, [0, 2]))
    assert answer == {0: 0.5, 2: 0.1}
    assert len(model.calls) == 2 and model.calls[1][0] == model.calls[0][0]  # a fresh attempt, no "try again"
