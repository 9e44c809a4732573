"""Curation: slices, de-duplication, imputation and answerability filtering.

Following the paper, generated examples are split into slice 0 and slice 1 (a stable hash of the example's id).
Slice 0 is written out in chat format for fine-tuning a curation model ("LLMSynth"); slice 1 is curated:

1. duplicates (the same normalised question as an earlier example) are dropped;
2. imputation (optional): the question is blanked and the curator writes it anew from the answer and the
   context; the original is kept in the record (a failed imputation, or one that is not a question, keeps the
   original question);
3. answerability: the curator gets `tries` attempts (sampled at `temperature`, each cached under its own tag) to
   answer the question from the context the dataset gives (the table's schema and rows / the passages); the
   example is kept if one attempt is correct (`scoring.correct`: its SQL executes to the gold result or its
   answer soft-matches the gold answer).
"""

from __future__ import annotations

import hashlib
from typing import Any

from libs.source2synth import scoring
from libs.source2synth.pipelines import is_question
from libs.source2synth.prompts import ReplyError


def slice_of(example_id: str, slice0_fraction: float) -> int:
    digest = hashlib.sha256(example_id.encode()).digest()
    return 0 if int.from_bytes(digest[:8], "little") / 2**64 < slice0_fraction else 1


def answer_inputs(example: dict, table_rows=None) -> tuple[str, dict[str, Any]]:
    """The answering step of an example and its inputs: what a model sees when asked the question."""
    if example["pipeline"] == "table":
        context = example["context"]
        rows = table_rows(context["table"]) if table_rows else []
        return "table_answer", {"question": example["question"], "table": context["table"],
                                "columns": context["columns"], "rows": rows}
    return "text_answer", {"question": example["question"], "passages": example["context"]["passages"]}


def impute_inputs(example: dict) -> dict[str, Any]:
    """The example with its question blanked: the answer and what produced it."""
    if example["pipeline"] == "table":
        r, c = example["reasoning"], example["context"]
        context = {"table": c["table"], "columns": c["columns"], "statement": r["statement"], "sql": r["sql"]}
    else:
        h1, h2 = example["reasoning"]["hops"]
        context = {"entity1": h1["document"], "passages": example["context"]["passages"],
                   "hops": {"question1": h1["question"], "answer1": h1["answer"], "question2": h2["question"],
                            "answer2": h2["answer"]}}
    return {"answer": example["answer"], "context": context}


async def curate(example: dict, curator, *, tries: int, temperature: float, impute: bool, run_sql=None,
                 table_rows=None) -> dict[str, Any]:
    """The curation record of one slice-1 example (not counting duplicates, which the caller drops)."""
    record: dict[str, Any] = {"id": example["id"], "slice": 1, "curator": curator.label,
                              "original_question": example["question"], "imputed": False}
    question = example["question"]
    if impute:
        try:
            imputed = (await curator.ask("impute", impute_inputs(example), tag=f"{example['id']}/impute"))["question"]
        except ReplyError as e:
            imputed, record["impute_error"] = None, str(e)[:200]
        if imputed is not None and not is_question(imputed):
            imputed, record["impute_error"] = None, f"not a question: {imputed[:200]}"
        record["imputed"] = "failed" if imputed is None else True
        question = imputed or question
    step, inputs = answer_inputs({**example, "question": question}, table_rows)
    attempts = []
    for t in range(tries):
        try:
            reply = await curator.ask(step, inputs, tag=f"{example['id']}/try-{t}", temperature=temperature)
        except ReplyError as e:
            attempts.append({"reply": None, "error": str(e)[:200], "correct": False})
            continue
        scores = scoring.score(example, reply, run_sql)
        attempts.append({"reply": reply, **scores, "correct": scoring.correct(scores)})
        if attempts[-1]["correct"]:
            break
    answerable = any(a["correct"] for a in attempts)
    record.update(question=question, tries=attempts, kept=answerable, reason="" if answerable else "unanswerable")
    return record
