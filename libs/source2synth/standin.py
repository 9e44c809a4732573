"""A rule-based STAND-IN for the generator and curator models: SQL and cloze templates, not a model.

It answers every step of `libs.source2synth.prompts` from the step's inputs alone, so the pipelines run offline,
fast and deterministically (CI, the README's offline run, the scripted replies of the tests' local server). Every
output it makes is labelled with `LABEL`.

- Tables: a statement from one of five templates (a lookup, the highest / lowest value, a count above a threshold
  or of a value, an average), chosen by a hash of the seed; the SQL and the question are parsed back from the
  statement's template. As a curator it parses the question back into SQL (and runs it when given the database).
- Documents: cloze questions: hop 1 blanks the bridge entity in a sentence of the first passage, hop 2 blanks a
  year, number or name in a sentence of the bridge's passage; the merge replaces the bridge by hop 1's cloze. As a
  curator it fills the last cloze of a question by matching it against the passages: a question whose sentence is
  not in the passages is unanswerable to it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from libs.source2synth import prompts

LABEL = "stand-in: rule-based SQL and cloze templates, not a model"
BLANK = "___"
IT = "[it]"
_QUOTED = re.compile(r"\u201c(.+?)\u201d")
_KEY_NAMES = ("name", "title", "mission", "label")


def human(column: str) -> str:
    return column.replace("_", " ")


def key_column(columns: list) -> str:
    """The column that names a row: one called name / title / mission, else the first TEXT column, else the first."""
    names = [c for c, _ in columns]
    for wanted in _KEY_NAMES:
        if wanted in names:
            return wanted
    return next((c for c, t in columns if str(t).upper() == "TEXT"), names[0])


def _choice(options: list, *parts: Any) -> Any:
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).digest()
    return options[int.from_bytes(digest[:4], "little") % len(options)]


def _sql_text(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- tables -------------------------------------------------------------------------------------------------------

_STATEMENTS = (  # (op, regex); the order matters: "average" before "lookup"
    ("average", re.compile(r"^The average (.+) in (\w+) is (.+)\.$")),
    ("extreme", re.compile(r"^(.+) has the (highest|lowest) (.+) in (\w+)\.$")),
    ("count_above", re.compile(r"^(\d+) rows of (\w+) have a (.+) greater than (.+)\.$")),
    ("count_equal", re.compile(r"^(\d+) rows of (\w+) have (.+) equal to (.+)\.$")),
    ("lookup", re.compile(r"^The (.+?) of (.+) is (.+)\.$")),
)
_QUESTIONS = (  # (op, regex, the argument order of the op's parsed tuple); two phrasings each (asked, imputed)
    ("average", re.compile(r"^What is the average (.+) of the (\w+)\?$"), (0, 1)),
    ("average", re.compile(r"^On average, what is the (.+) of the (\w+)\?$"), (0, 1)),
    ("extreme", re.compile(r"^In (\w+), which (.+) has the (highest|lowest) (.+)\?$"), (0, 2, 3)),
    ("extreme", re.compile(r"^Among the (\w+), which (.+) has the (highest|lowest) (.+)\?$"), (0, 2, 3)),
    ("count_above", re.compile(r"^How many (\w+) have a (.+) greater than (.+)\?$"), (0, 1, 2)),
    ("count_above", re.compile(r"^How many of the (\w+) have a (.+) greater than (.+)\?$"), (0, 1, 2)),
    ("count_equal", re.compile(r"^How many (\w+) have (.+) equal to (.+)\?$"), (0, 1, 2)),
    ("count_equal", re.compile(r"^How many of the (\w+) have (.+) equal to (.+)\?$"), (0, 1, 2)),
    ("lookup", re.compile(r"^What is the (.+?) of (.+)\?$"), (0, 1)),
    ("lookup", re.compile(r"^For (.+), what is the (.+?)\?$"), (1, 0)),
)


def statement(inputs: dict) -> str:
    table, columns, seed = inputs["table"], inputs["columns"], inputs["seed"]
    column, value, row = seed["column"], seed["value"], seed.get("row") or {}
    key = key_column(columns)
    rows = inputs.get("rows") or [row]
    numeric = _number(value)
    if column == key:  # ask about another column of the seed row
        column = _choice([c for c, _ in columns if c != key] or [key], table, key, value)
        value = row.get(column, value)
    ops = ["lookup", "extreme", "count_above", "average"] if numeric else ["lookup", "count_equal"]
    op = _choice(ops, table, column, value)
    if op == "lookup":
        return f"The {human(column)} of {row.get(key, value)} is {value}."
    if op == "extreme":
        direction = _choice(["highest", "lowest"], table, column)
        return f"{row.get(key, value)} has the {direction} {human(column)} in {table}."
    if op == "average":
        values = [r[column] for r in rows if _number(r.get(column))]
        return f"The average {human(column)} in {table} is {round(sum(values) / max(len(values), 1), 2)}."
    if op == "count_above":
        count = sum(1 for r in rows if _number(r.get(column)) and r[column] > value)
        return f"{count} rows of {table} have a {human(column)} greater than {value}."
    count = sum(1 for r in rows if r.get(column) == value)
    return f"{count} rows of {table} have {human(column)} equal to {value}."


def _parse_statement(text: str) -> tuple[str, tuple[str, ...]] | None:
    for op, pattern in _STATEMENTS:
        match = pattern.match(text.strip())
        if match:
            return op, match.groups()
    return None


def _column(columns: list, name: str) -> str | None:
    return next((c for c, _ in columns if human(c).lower() == name.strip().lower()), None)


def _query(op: str, table: str, columns: list, column_name: str, key_value: str | None = None,
           direction: str | None = None, threshold: str | None = None) -> str | None:
    column, key = _column(columns, column_name), key_column(columns)
    if column is None:
        return None
    if op == "lookup":
        return f'SELECT "{column}" FROM {table} WHERE "{key}" = {_sql_text(key_value)}'
    if op == "extreme":
        order = "DESC" if direction == "highest" else "ASC"
        return f'SELECT "{key}" FROM {table} WHERE "{column}" IS NOT NULL ORDER BY "{column}" {order} LIMIT 1'
    if op == "average":
        return f'SELECT AVG("{column}") FROM {table}'
    if op == "count_above":
        return f'SELECT COUNT(*) FROM {table} WHERE "{column}" > {threshold}'
    return f'SELECT COUNT(*) FROM {table} WHERE "{column}" = {_sql_text(threshold)}'


def sql(inputs: dict) -> str | None:
    parsed = _parse_statement(inputs["statement"])
    if parsed is None:
        return None
    op, args = parsed
    table, columns = inputs["table"], inputs["columns"]
    if op == "lookup":
        return _query(op, table, columns, args[0], key_value=args[1])
    if op == "extreme":
        return _query(op, args[3], columns, args[2], direction=args[1])
    if op == "average":
        return _query(op, args[1], columns, args[0])
    return _query(op, args[1], columns, args[2], threshold=args[3])


def table_question(inputs: dict, imputed: bool = False) -> str | None:
    parsed = _parse_statement(inputs["statement"])
    if parsed is None:
        return None
    op, args = parsed
    key = human(key_column(inputs["columns"])) if inputs.get("columns") else "entry"
    if op == "lookup":
        return f"For {args[1]}, what is the {args[0]}?" if imputed else f"What is the {args[0]} of {args[1]}?"
    if op == "extreme":
        lead = f"Among the {args[3]}," if imputed else f"In {args[3]},"
        return f"{lead} which {key} has the {args[1]} {args[2]}?"
    if op == "average":
        lead = "On average, what is the" if imputed else "What is the average"
        return f"{lead} {args[0]} of the {args[1]}?"
    lead = "How many of the" if imputed else "How many"
    if op == "count_above":
        return f"{lead} {args[1]} have a {args[2]} greater than {args[3]}?"
    return f"{lead} {args[1]} have {args[2]} equal to {args[3]}?"


def question_sql(question: str, table: str, columns: list) -> str | None:
    """The stand-in curator: the SQL of a question in one of the template phrasings, else None."""
    for op, pattern, order in _QUESTIONS:
        match = pattern.match(question.strip())
        if not match:
            continue
        args = [match.groups()[i] for i in order]
        if op == "lookup":
            return _query(op, table, columns, args[0], key_value=args[1])
        if op == "extreme":
            return _query(op, args[0], columns, args[2], direction=args[1])
        if op == "average":
            return _query(op, args[1], columns, args[0])
        return _query(op, args[0], columns, args[1], threshold=args[2])
    return None


# --- documents ----------------------------------------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"\u201c])")
_FACT = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})\b|\b\d[\d,.]*\b|\b[A-Z][a-z]+(?: [A-Z][a-z]+)*\b")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def _mention(text: str, entity: str) -> re.Match | None:
    return re.search(r"\b" + re.escape(entity) + r"\b", text, re.IGNORECASE)


def hop1(inputs: dict) -> dict | None:
    bridge = inputs["bridge"]
    for sentence in _sentences(inputs["passage"]):
        match = _mention(sentence, bridge)
        if match:
            cloze = sentence[:match.start()] + BLANK + sentence[match.end():]
            return {"question": f"In the passage about {inputs['entity']}, what completes \u201c{cloze}\u201d?",
                    "answer": bridge}
    return None


def hop2(inputs: dict) -> dict | None:
    entity = inputs["entity"]
    for sentence in _sentences(inputs["passage"]):
        masked = re.sub(r"\b" + re.escape(entity) + r"\b", IT, sentence, flags=re.IGNORECASE)
        # Prefer a year, then any number, then a name that is not the sentence's first word or the entity.
        spans = [m for m in _FACT.finditer(masked) if m.start() > 0 and m.group(0) not in entity and
                 IT not in m.group(0)]
        spans.sort(key=lambda m: (not re.fullmatch(r"1[0-9]{3}|20[0-9]{2}", m.group(0)),
                                  not m.group(0)[0].isdigit()))
        if spans:
            span = spans[0]
            cloze = masked[:span.start()] + BLANK + masked[span.end():]
            return {"question": f"In the passage about {entity}, what completes \u201c{cloze}\u201d?",
                    "answer": span.group(0).rstrip(".,")}
    return None


def merge(inputs: dict, imputed: bool = False) -> dict | None:
    q1, q2, bridge = inputs["question1"], inputs["question2"], inputs["answer1"]
    first = _QUOTED.search(q1)
    head = f"In the passage about {bridge}, "
    if not first or not q2.startswith(head):
        return None
    description = f"the entity that completes \u201c{first.group(1)}\u201d in the passage about {inputs['entity1']}"
    tail = q2[len(head):]
    question = (f"Consider {description}: in its passage, {tail}" if imputed
                else f"In the passage about {description}, {tail}")
    reasoning = f"Step 1: {q1} -> {bridge}. Step 2: {q2} -> {inputs['answer2']}."
    return {"question": question, "reasoning": reasoning}


def fill_cloze(question: str, passages: list) -> str | None:
    """The stand-in curator: the text that fills the last cloze of `question` in one of the passages."""
    clozes = _QUOTED.findall(question)
    if not clozes or BLANK not in clozes[-1]:
        return None
    parts = [re.escape(p) for p in clozes[-1].split(BLANK, 1)]
    pattern = (parts[0] + r"(.+?)" + parts[1]).replace(re.escape(IT), r".+?")
    for passage in passages:
        text = passage.get("text", "") if isinstance(passage, dict) else str(passage)
        match = re.search(pattern, re.sub(r"\s+", " ", text))
        if match:
            return match.group(1).strip().rstrip(".,")
    return None


# --- the generator ------------------------------------------------------------------------------------------------


def reply(step: str, inputs: dict, execute=None) -> dict[str, str] | None:
    """The stand-in's reply fields for one step (None: it has no answer, i.e. a malformed reply).
    `execute(sql) -> answer text` lets the table curator run its SQL (it then also states the answer)."""
    if step == "statement":
        return {"statement": statement(inputs)}
    if step == "sql":
        query = sql(inputs)
        return {"sql": query} if query else None
    if step == "table_question":
        question = table_question(inputs)
        return {"question": question, "answer": str(inputs["result"])} if question else None
    if step == "hop1":
        return hop1(inputs)
    if step == "hop2":
        return hop2(inputs)
    if step == "merge":
        return merge(inputs)
    if step == "impute":
        context = inputs.get("context") or {}
        if "statement" in context:
            question = table_question({"statement": context["statement"], "columns": context.get("columns")},
                                      imputed=True)
            return {"question": question} if question else None
        merged = merge({**context.get("hops", {}), "entity1": context.get("entity1", "")}, imputed=True)
        return {"question": merged["question"]} if merged else None
    if step == "table_answer":
        query = question_sql(inputs["question"], inputs["table"], inputs["columns"])
        if query is None:
            return None
        answer = execute(query) if execute else None
        return {"sql": query, "answer": answer or "unknown"}
    if step == "text_answer":
        answer = fill_cloze(inputs["question"], inputs["passages"])
        return {"answer": answer or "unknown"}
    raise ValueError(f"unknown step {step!r}")


class StandInGenerator:
    """`reply` behind the generator interface of `libs.source2synth.generators`."""

    label = LABEL

    def __init__(self, execute=None):
        self.execute = execute
        self.calls = 0

    async def ask(self, step: str, inputs: dict, *, tag: str | None = None,
                  temperature: float | None = None) -> dict[str, str]:
        del tag, temperature  # deterministic: k tries give the same answer
        self.calls += 1
        fields = reply(step, inputs, self.execute)
        if fields is None:
            raise prompts.ReplyError(f"{step}: the stand-in's templates do not cover these inputs")
        return fields
