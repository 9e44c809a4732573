"""The prompts of every Source2Synth step, the JSON each reply must hold, and the reply parser.

A step is one model call with a fixed contract: `STEPS[name]` says what it is asked (the system prompt) and which
string fields its JSON reply must hold. The user message carries the step's inputs as a JSON block, so any
model (and the labelled stand-ins, which read the same block) sees exactly the same information. Providers that
enforce JSON schemas get `response_format` with the step's schema (`reply_format`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from libs.agents.answers import balanced_object


class ReplyError(ValueError):
    """A reply without the step's JSON fields (rejected as malformed_reply)."""


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    task: str  # what the model is asked to do
    fields: tuple[str, ...]  # the string fields of the JSON reply


_JSON_ONLY = "Reply with one JSON object and nothing else."
# Longest value of each field under a JSON schema: a small model's constrained reply must close its strings
# before max_tokens cuts it off (an unclosed string is a malformed reply).
MAX_CHARS = {"statement": 200, "sql": 300, "question": 240, "answer": 80, "reasoning": 400}
# Shapes the schema enforces: a query starts with SELECT (or WITH), a question ends with its only question mark.
PATTERNS = {"sql": r"^\s*([Ss][Ee][Ll][Ee][Cc][Tt]|[Ww][Ii][Tt][Hh])\s[^;]*$", "question": r"^[^?]+\?$"}
STEPS = {s.name: s for s in (
    Step("statement", "You write one factual statement about a database table, grounded in the seed: the given "
                      "column and value of one row. The statement should be answerable by an SQL query over the "
                      "table (a lookup, a comparison, a count, an extreme or an average).", ("statement",)),
    Step("sql", "You translate a statement about a table into one SQLite SELECT query whose result checks or "
                "completes the statement. Use only the given table and columns; quote text values with single "
                "quotes.", ("sql",)),
    Step("table_question", "You turn an SQL query and its executed result into a natural question whose answer is "
                           "exactly the result. Do not mention SQL. The answer is the result as given.",
         ("question", "answer")),
    Step("hop1", "You write a question about the first entity, answerable from its passage, whose answer is "
                 "exactly the bridge entity.", ("question", "answer")),
    Step("hop2", "You write a question about the bridge entity, answerable from its passage, that names the "
                 "bridge entity and has a short answer (a name, a place, a number or a year) taken from the passage.",
         ("question", "answer")),
    Step("merge", "You merge two questions into one multi-hop question: replace the bridge entity in the second "
                  "question by a description taken from the first question, so that answering needs both hops. The "
                  "merged question must not name the bridge entity. Give the reasoning steps.",
         ("question", "reasoning")),
    Step("impute", "The question of a question-answer example was removed. Write a natural question whose answer "
                   "is the given answer, using the given context.", ("question",)),
    Step("table_answer", "You answer a question about a database table by writing one SQLite SELECT query over it; "
                         "also give the answer you expect.", ("sql", "answer")),
    Step("text_answer", "You answer a question using the given passages. Give a short answer (a name, a place, a "
                        "number or a year), not a sentence.", ("answer",)),
)}


def messages(step: str, inputs: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages of one step: its task, and its inputs as a JSON block."""
    spec = STEPS[step]
    reply = ", ".join(f'"{f}": "..."' for f in spec.fields)
    system = f"{spec.task}\n{_JSON_ONLY} Its fields: {{{reply}}}."
    user = (f"Step: {step}\nInputs:\n```json\n{json.dumps(inputs, ensure_ascii=False, indent=1, default=str)}\n```\n"
            f"Reply with the JSON object {{{reply}}}.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def prompt_hash(message_list: list[dict[str, str]]) -> str:
    """A short, stable hash of the messages (provenance: which prompt made which example)."""
    text = json.dumps(message_list, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_BLOCK = re.compile(r"Step: (\w+)\nInputs:\n```json\n(.*)\n```", re.DOTALL)


def read_prompt(message_list: list[dict]) -> tuple[str, dict[str, Any]] | None:
    """(step, inputs) of a prompt made by `messages`, or None (e.g. a foreign prompt); for stand-ins and servers."""
    for m in message_list:
        match = _BLOCK.search(str(m.get("content") or ""))
        if match and match.group(1) in STEPS:
            return match.group(1), json.loads(match.group(2))
    return None


def reply_format(step: str) -> dict[str, Any]:
    """OpenAI's `response_format` with the step's JSON schema (every field a non-empty string)."""
    fields = STEPS[step].fields
    properties = {f: {"type": "string", "minLength": 1, "maxLength": MAX_CHARS[f],
                      **({"pattern": PATTERNS[f]} if f in PATTERNS else {})} for f in fields}
    schema = {"type": "object", "properties": properties,
              "required": list(fields), "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": f"source2synth_{step}", "schema": schema, "strict": True}}


def parse_reply(step: str, text: str) -> dict[str, str]:
    """The step's fields from a reply: the last JSON object in it that holds them all (code fences allowed).
    Values are stripped strings; numbers are accepted and turned into text. Raises ReplyError."""
    fields = STEPS[step].fields
    text = text or ""
    for start in reversed([i for i, ch in enumerate(text) if ch == "{"]):
        obj = balanced_object(text, start)
        if obj is None:
            continue
        try:
            parsed = json.loads(obj)
        except ValueError:
            continue
        if not isinstance(parsed, dict) or not all(f in parsed for f in fields):
            continue
        values = {f: _text(parsed[f]) for f in fields}
        empty = [f for f, v in values.items() if not v]
        if empty:
            raise ReplyError(f"{step} reply has empty {', '.join(empty)}")
        return values
    raise ReplyError(f"{step} reply holds no JSON object with {', '.join(fields)}: {text.strip()[:80]!r}")


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, float, str)):
        return str(value).strip()
    if isinstance(value, list):  # e.g. reasoning given as a list of steps
        return " ".join(_text(v) for v in value).strip()
    return ""
