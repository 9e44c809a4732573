"""The two generation pipelines of Source2Synth: one seed in, one example (or a recorded rejection) out.

Tables (tool use):  seed (a table, a row, a column and its value) -> statement -> SQL, validated against the schema
with sqlglot and executed read-only with a time limit -> result -> question and answer; the answer is the executed
result and the SQL is kept as the reasoning.
Documents (multi-hop): seed entity A with a link to B -> question 1 on A's passage whose answer is B -> question 2 on
B's passage -> one merged question that needs both hops, with both passages kept as provenance.

`generate(kind, ...)` returns a record for `generated.jsonl`: {"pipeline", "index", "id", "kept", "stage",
"reason", and "example" or "detail" and "replies"}: `stage` and `reason` say where and why a seed was rejected, and
`replies` holds the steps' replies up to there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
from typing import Any

from libs.source2synth import documents, prompts, scoring, sources
from libs.source2synth import sql as sql_lib
from libs.source2synth.prompts import ReplyError

REJECT_REASONS = {
    "malformed_reply": "the reply held no usable JSON with the step's fields",
    "result_too_long": "the query returned more rows than an answer should have",
    "bridge_mismatch": "question 1's answer is not the bridge entity",
    "hop2_off_bridge": "question 2 does not name the bridge entity",
    "answer_not_in_passage": "question 2's answer is not in the bridge's passage",
    "leaks_bridge": "the merged question names the bridge entity",
    "no_seed": "the sources hold no seed for this pipeline",
    "answer_in_question": "the question already contains its answer",
    "not_a_question": "the question does not end with a question mark, or is longer than a question should be",
    "answer_too_long": "the answer is longer than a short answer (a name, a place, a number)",
    **{r: f"SQL rejected: {r}" for r in sql_lib.REASONS},
}


class Rejected(Exception):
    def __init__(self, stage: str, reason: str, detail: str = ""):
        super().__init__(f"{stage}: {reason}: {detail}")
        self.stage, self.reason, self.detail = stage, reason, detail


@dataclasses.dataclass
class TableSources:
    db_path: str
    tables: list  # sources.Table
    schema: dict[str, dict[str, str]]
    rows_in_prompt: int = 20
    sql_timeout_s: float = 2.0
    max_result_rows: int = 5

    def table(self, name: str):
        return next(t for t in self.tables if t.name == name)

    def run_sql(self, query: str) -> list[tuple]:
        """Validates and runs a query read-only (raises sql_lib.SQLRejected)."""
        return sql_lib.execute(self.db_path, sql_lib.validate(query, self.schema), timeout_s=self.sql_timeout_s)

    def prompt_rows(self, name: str) -> list[dict]:
        return sources.table_rows(self.db_path, name, limit=self.rows_in_prompt)


@dataclasses.dataclass
class DocumentSources:
    documents: dict  # title -> sources.Document

    def passage_mentioning(self, doc, entity: str) -> str | None:
        """The first paragraph of `doc` that links to or names `entity` (as plain text)."""
        target = self.documents[entity]
        names = [entity, *target.aliases]
        for raw in re.split(r"\n\s*\n", doc.text):
            plain = documents.plain_text(raw).strip()
            if plain.startswith("#"):
                continue
            if any(_names(plain, n) for n in names) or _links_to(raw, entity, target):
                return " ".join(plain.split())
        return None


def _names(text: str, name: str) -> bool:
    return re.search(r"\b" + re.escape(name) + r"\b", text, re.IGNORECASE) is not None


def _links_to(raw: str, title: str, target) -> bool:
    wiki = re.search(r"\[\[\s*" + re.escape(title) + r"\s*(\|[^\]]*)?\]\]", raw, re.IGNORECASE)
    return bool(wiki) or (target.path and f"({target.path.rsplit('/', 1)[-1]})" in raw)


MAX_QUESTION_WORDS = 80
MAX_ANSWER_WORDS = 8


def is_question(text: str) -> bool:
    return text.rstrip().endswith("?") and len(text.split()) <= MAX_QUESTION_WORDS


def _check_question(stage: str, text: str) -> None:
    if not is_question(text):
        raise Rejected(stage, "not_a_question", text[:200])


def _asker(generator, hashes: dict, trace: dict):
    """`ask(step, inputs)`: one step's reply fields; records the prompt's hash and the reply, and turns a reply
    without the step's JSON into a malformed_reply rejection."""

    async def ask(step: str, inputs: dict) -> dict[str, str]:
        hashes[step] = prompts.prompt_hash(prompts.messages(step, inputs))
        try:
            trace[step] = await generator.ask(step, inputs)
        except ReplyError as e:
            raise Rejected(step, "malformed_reply", str(e)) from e
        return trace[step]

    return ask


def _rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"{seed}/{kind}/{index}")


# --- tables -------------------------------------------------------------------------------------------------------


def table_seed(src: TableSources, seed: int, index: int) -> dict[str, Any]:
    """A random table (weighted by rows), row and non-empty column: the seed of one example."""
    rng = _rng(seed, "table", index)
    tables = [t for t in src.tables if t.num_rows]
    if not tables:
        raise Rejected("seed", "no_seed", "no table has rows")
    table = rng.choices(tables, weights=[t.num_rows for t in tables])[0]
    row_index = rng.randrange(table.num_rows)
    row = sources.table_rows(src.db_path, table.name, limit=1, offset=row_index)[0]
    filled = [c for c, _ in table.columns if row.get(c) not in (None, "")]
    column = rng.choice(filled or [table.columns[0][0]])
    return {"table": table.name, "row_index": row_index, "column": column, "value": row.get(column), "row": row}


async def table_example(generator, src: TableSources, seed: int, index: int, trace: dict) -> dict[str, Any]:
    hashes: dict[str, str] = {}
    ask = _asker(generator, hashes, trace)
    seed_info = table_seed(src, seed, index)
    table = src.table(seed_info["table"])
    columns = [list(c) for c in table.columns]
    base = {"table": table.name, "columns": columns}

    seed_view = {k: seed_info[k] for k in ("column", "value", "row")}
    found = await ask("statement", {**base, "rows": src.prompt_rows(table.name), "seed": seed_view})
    statement = found["statement"]
    query = (await ask("sql", {**base, "statement": statement}))["sql"]
    try:
        query = sql_lib.validate(query, src.schema)
        rows = await asyncio.to_thread(sql_lib.execute, src.db_path, query, src.sql_timeout_s)
    except sql_lib.SQLRejected as e:
        raise Rejected("sql", e.reason, f"{e} | {query[:200]}") from e
    if len(rows) > src.max_result_rows:
        raise Rejected("sql", "result_too_long", f"{len(rows)} rows | {query[:200]}")
    result = sql_lib.format_result(rows)
    qa = await ask("table_question", {"statement": statement, "sql": query, "result": result})
    _check_question("table_question", qa["question"])
    example = {
        "pipeline": "table", "question": qa["question"], "answer": result,
        "reasoning": {"statement": statement, "sql": query, "result": [list(r) for r in rows]},
        "context": {"table": table.name, "columns": columns},
        "provenance": {"seed": {k: seed_info[k] for k in ("table", "row_index", "column", "value")},
                       "source": table.source, "rows": [seed_info["row"]], "generator_answer": qa["answer"]},
    }
    return {"example": example, "prompts": hashes}


# --- documents ----------------------------------------------------------------------------------------------------


def multihop_seed(src: DocumentSources, seed: int, index: int) -> dict[str, Any]:
    """A random (entity A, bridge B) pair along a link, with A's passage naming B and one of B's passages."""
    rng = _rng(seed, "multihop", index)
    pairs = [(a, b) for a, doc in sorted(src.documents.items()) for b in doc.links if b in src.documents]
    rng.shuffle(pairs)
    for first, bridge in pairs:
        passage = src.passage_mentioning(src.documents[first], bridge)
        second = documents.passages(src.documents[bridge])
        if passage and second:
            return {"entity": first, "bridge": bridge, "passage1": passage, "passage2": rng.choice(second)}
    raise Rejected("seed", "no_seed", "no document links to another one in a passage")


async def multihop_example(generator, src: DocumentSources, seed: int, index: int, trace: dict) -> dict[str, Any]:
    hashes: dict[str, str] = {}
    ask = _asker(generator, hashes, trace)
    s = multihop_seed(src, seed, index)
    bridge_doc = src.documents[s["bridge"]]
    bridge_names = [s["bridge"], *bridge_doc.aliases]

    hop1 = await ask("hop1", {"entity": s["entity"], "passage": s["passage1"], "bridge": s["bridge"]})
    if not any(scoring.soft_exact_match(hop1["answer"], n) for n in bridge_names):
        raise Rejected("hop1", "bridge_mismatch", f"{hop1['answer']!r} is not {s['bridge']!r}")
    _check_question("hop1", hop1["question"])
    hop2 = await ask("hop2", {"entity": s["bridge"], "passage": s["passage2"]})
    if not any(_names(hop2["question"], n) for n in bridge_names):
        raise Rejected("hop2", "hop2_off_bridge", hop2["question"][:200])
    _check_question("hop2", hop2["question"])
    if len(hop2["answer"].split()) > MAX_ANSWER_WORDS:
        raise Rejected("hop2", "answer_too_long", hop2["answer"][:100])
    if not scoring.soft_exact_match(s["passage2"], hop2["answer"]):
        raise Rejected("hop2", "answer_not_in_passage", hop2["answer"][:100])
    merged = await ask("merge", {"entity1": s["entity"], "question1": hop1["question"], "answer1": s["bridge"],
                                 "question2": hop2["question"], "answer2": hop2["answer"]})
    _check_question("merge", merged["question"])
    if any(_names(merged["question"], n) for n in bridge_names):
        raise Rejected("merge", "leaks_bridge", merged["question"][:200])
    documents = [src.documents[s["entity"]], bridge_doc]
    passages = [{"title": d.title, "text": p} for d, p in zip(documents, (s["passage1"], s["passage2"]))]
    example = {
        "pipeline": "multihop", "question": merged["question"], "answer": hop2["answer"],
        "reasoning": {"text": merged["reasoning"],
                      "hops": [{"question": hop1["question"], "answer": s["bridge"], "document": s["entity"]},
                               {"question": hop2["question"], "answer": hop2["answer"], "document": s["bridge"]}]},
        "context": {"passages": passages},
        "provenance": {"seed": {"entity": s["entity"], "bridge": s["bridge"]},
                       "passages": [{**p, "document": d.path} for p, d in zip(passages, documents)]},
    }
    return {"example": example, "prompts": hashes}


PIPELINES = {"table": table_example, "multihop": multihop_example}


async def generate(kind: str, generator, src, seed: int, index: int) -> dict[str, Any]:
    """One seed through one pipeline: the record of `generated.jsonl`."""
    record: dict[str, Any] = {"pipeline": kind, "index": index, "id": f"{kind}-{seed}-{index:05d}"}
    trace: dict[str, Any] = {}  # the replies so far, kept with a rejection
    try:
        made = await PIPELINES[kind](generator, src, seed, index, trace)
    except Rejected as e:
        return {**record, "kept": False, "stage": e.stage, "reason": e.reason, "detail": e.detail[:400],
                "replies": trace}
    example = made["example"]
    if scoring.soft_exact_match(example["question"], example["answer"]):
        return {**record, "kept": False, "stage": "question", "reason": "answer_in_question",
                "detail": f"{example['answer']!r} in {example['question'][:300]!r}"}
    example["id"] = record["id"]
    example["provenance"].update(prompts=made["prompts"], generator=generator.label)
    return {**record, "kept": True, "stage": "generated", "reason": "", "example": example}
