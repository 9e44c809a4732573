"""MaestroMotif annotation: the reference prompts and regex, LLM annotation over real HTTP (retry once,
malformed -> none, resume without new requests), the rule-based stand-in, and agreement statistics."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from libs.agents.maestromotif import annotate as ann
from libs.llm.gateway import Gateway, LLMConfig
from libs.llm.testing import Fault, LocalOpenAIServer
from libs.train.errors import ConfigError, UserError
from libs.train.rundir import read_jsonl

pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")  # litellm's pydantic models
VERDICT = 'Description 2 shows descent. Therefore: ("best_description": {})'


@pytest.mark.parametrize("reply, label", [
    ('NetHack is a roguelike... Finally, ("best_description": 1)', 0),
    ('{"best_description": 2}', 1),
    ('("best_description": None)', 2),
    ("best_description: none", 2),
    ("**Best Description**: 2", 1),
    ("best\\_description is 1", 0),
    ("The best description is 2.", 1),
    ('First ("best_description": 2), then ("best_description": 1)', 1),  # the first match counts
    ("I prefer the second one.", None),
    ('("best_description": 3)', None),
    ("", None),
])
def test_parse_preference(reply, label):
    assert ann.parse_preference(reply) == label


def test_annotation_messages_use_the_reference_prompt():
    messages = ann.annotation_messages("descender", "You see here a dagger. | Dlvl: none",
                                       "You climb down the stairs. | Dlvl: down")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("You are a helpful and honest judge of specific types of NetHack")
    user = messages[1]["content"]
    assert ann.GOALS["descender"] in user and "refuse to anger or displease your god" in user
    assert '{"description_1":\nYou see here a dagger. | Dlvl: none\n}' in user
    assert '{"description_2":\nYou climb down the stairs. | Dlvl: down\n}' in user
    assert set(ann.SKILLS) == set(ann.GOALS)
    with pytest.raises(ConfigError, match="unknown MaestroMotif skill 'dancer'"):
        ann.annotation_messages("dancer", "a", "b")


def _responder(body: dict) -> str:
    """A scripted model: prefers a description with 'WIN'; 'ONCE' answers only the retry, 'NEVER' never."""
    messages = body["messages"]
    prompt, last = messages[1]["content"], messages[-1]["content"]
    if "NEVER" in prompt:
        return "Both are interesting in their own way."
    if "ONCE" in prompt and last != ann.RETRY_PROMPT:
        return "Let me think about NetHack first."
    second = prompt.split('"description_2"', 1)[1]
    return VERDICT.format(2 if "WIN" in second else 1)


def _gateway(server: LocalOpenAIServer, **overrides) -> Gateway:
    os.environ.setdefault("TEST_LLM_KEY", "sk-test-motif-123")
    return Gateway(LLMConfig(model="openai/scripted", api_base=server.base_url, api_key_env="TEST_LLM_KEY",
                             max_retries=0, timeout_s=30.0, backoff_initial_s=0.0, **overrides))


PAIRS = [("You see here 5 gold pieces. | Gold: up", "It's a wall. | Dlvl: none"),
         ("The door opens. | Dlvl: none", "WIN You climb down. | Dlvl: down"),
         ("ONCE You hit the newt! | Dlvl: none", "WIN There is a staircase down here."),
         ("NEVER Nothing happens.", "You feel hungry. | Hunger: more")]


def test_annotate_over_http_retries_once_and_resumes(tmp_path):
    out = str(tmp_path / "labels.jsonl")
    with LocalOpenAIServer(responder=_responder) as server:
        gateway = _gateway(server)
        labels = asyncio.run(ann.annotate(gateway, "descender", PAIRS, out, progress=False))
        assert labels == [0, 1, 1, 2]
        assert server.num_requests == 6  # 4 pairs + one retry each for ONCE and NEVER
        retry = [r["json"]["messages"] for r in server.requests if len(r["json"]["messages"]) == 4]
        assert len(retry) == 2 and all(m[2]["role"] == "assistant" and m[3]["content"] == ann.RETRY_PROMPT
                                       for m in retry)
        records = sorted(read_jsonl(out), key=lambda r: r["index"])
        assert [r["retried"] for r in records] == [False, False, True, True]
        assert records[3].get("unparsed") and records[3]["label"] == 2 and records[2]["label"] == 1
        assert all(r["skill"] == "descender" and '"best_description"' in r["reply"] for r in records[:3])
        # A rerun with the same out_path asks nothing.
        again = asyncio.run(ann.annotate(gateway, "descender", PAIRS, out, progress=False))
        assert again == labels and server.num_requests == 6
        gateway.close()
    with pytest.raises(UserError, match="skill 'descender', not 'ascender'"):
        asyncio.run(ann.annotate(gateway, "ascender", PAIRS, out, progress=False))
    with pytest.raises(UserError, match="does not match these pairs"):
        asyncio.run(ann.annotate(gateway, "descender", PAIRS[::-1], out, progress=False))


def test_annotate_stops_between_chunks_and_a_rerun_finishes(tmp_path):
    out = str(tmp_path / "labels.jsonl")
    with LocalOpenAIServer(responder=_responder) as server:
        gateway = _gateway(server)
        calls = iter([False, True])
        first = asyncio.run(ann.annotate(gateway, "descender", PAIRS, out, should_stop=lambda: next(calls),
                                         progress=False, chunk_size=2))
        assert first == [0, 1] and server.num_requests == 2
        rest = asyncio.run(ann.annotate(gateway, "descender", PAIRS, out, progress=False, chunk_size=2))
        assert rest == [0, 1, 1, 2] and server.num_requests == 6
        gateway.close()


def test_a_rejected_request_is_recorded_as_none(tmp_path):
    out = str(tmp_path / "labels.jsonl")
    with LocalOpenAIServer(responder=_responder, script=[Fault.http(400, message="prompt too long")]) as server:
        gateway = _gateway(server, max_in_flight=1)
        labels = asyncio.run(ann.annotate(gateway, "descender", PAIRS[:2], out, progress=False))
        gateway.close()
    assert labels == [2, 1]
    records = {r["index"]: r for r in read_jsonl(out)}
    assert records[0]["error"].startswith("rejected") and "error" not in records[1]


def test_rule_based_standin_per_skill():
    none, down, up = [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]
    gold = [0, 1, 0, 0, 0]
    pref = ann.rule_based_preference
    assert pref("descender", "You climb down.", down, "It's a wall.", none) == 0
    assert pref("descender", "It's a wall.", none, "You climb up.", up) == 0  # staying beats going up
    assert pref("descender", "There is a staircase down here.", none, "It's a wall.", none) == 0
    assert pref("descender", "You begin praying to Huan Ti.", none, "It's a wall.", none) == 1
    assert pref("ascender", "It's a wall.", down, "You climb up.", up) == 1
    assert pref("discoverer", "You climb down.", down, "You kill the newt!", none) == 1
    assert pref("discoverer", "5 gold pieces.", gold, "It's a wall.", none) == 0
    assert pref("discoverer", "You drop a scroll.", none, "You find a scroll.", none) == 1
    assert pref("merchant", "You see here a ring (for sale, 100 zorkmids).", none, "The door opens.", none) == 0
    assert pref("merchant", "Asidonhopo offers 5 gold pieces for your dagger.", none,
                "You stole 20 zorkmids worth of merchandise.", none) == 0
    assert pref("worshipper", "The door opens.", none, "There is a black flash as the dagger hits the altar.",
                none) == 1
    assert pref("worshipper", "You feel that Huan Ti is displeased.", none, "The door opens.", none) == 1
    # Both undesirable: none. Messages may be NLE byte arrays.
    msg = np.zeros(256, np.uint8)
    msg[:11] = np.frombuffer(b"You die....", np.uint8)
    assert pref("merchant", msg, [0, 0, -1, 0, 0], "You feel that Anhur is displeased.", none) == 2
    assert pref("discoverer", "It's a wall.", none, "It's a wall.", none) == 2


def test_agreement_and_kappa():
    a, b = [0, 1, 2, 0, 1, 0], [0, 1, 2, 1, 2, 0]
    stats = ann.agreement(a, b)
    assert stats["n"] == 6 and stats["agreement"] == pytest.approx(4 / 6)
    assert stats["n_decided"] == 4 and stats["agreement_decided"] == pytest.approx(3 / 4)
    # p_a = (3, 2, 1)/6, p_b = (2, 2, 2)/6: chance agreement 1/3.
    assert stats["cohen_kappa"] == pytest.approx((4 / 6 - 1 / 3) / (1 - 1 / 3))
    assert stats["counts_a"] == [3, 2, 1] and stats["confusion"][0] == [2, 1, 0]
    assert ann.agreement([1, 1], [1, 1])["cohen_kappa"] == 1.0
    assert ann.agreement([0, 1, 0, 1], [1, 0, 1, 0])["cohen_kappa"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="equally long"):
        ann.agreement([0, 1], [0])


def test_a_spent_budget_ends_annotation_cleanly(tmp_path):
    out = str(tmp_path / "labels.jsonl")
    with LocalOpenAIServer(responder=_responder) as server:
        gateway = _gateway(server, max_in_flight=1, budget_tokens=1)  # the first reply spends it
        labels = asyncio.run(ann.annotate(gateway, "descender", PAIRS, out, progress=False))
        gateway.close()
    assert labels == [0] and server.num_requests == 1 and len(read_jsonl(out)) == 1
