"""What a Source2Synth run writes: datasets in a documented schema, and the statistics of what was kept and why.

`dataset/examples.jsonl`: the curated examples, whole (question, answer, reasoning, context, provenance, curation).
`dataset/train.jsonl`: the same examples in chat format ({"messages": [system, user, assistant]}, the assistant
turn holds the reasoning and the answer) for fine-tuning; `dataset/slice0_train.jsonl`: slice 0 in that format, for
fine-tuning the curation model (the paper's LLMSynth). `dataset/eval.jsonl`: {id, pipeline, question, answer,
context, gold} for the evaluation harness. The schema is in docs/source2synth.md.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any

SYSTEM = {
    "table": "Answer the question about the table. Write one SQLite query over it, then the answer.",
    "multihop": "Answer the question from the passages. Reason step by step, then give a short answer.",
}


def user_turn(example: dict) -> str:
    if example["pipeline"] == "table":
        c = example["context"]
        columns = ", ".join(f"{name} {kind}" for name, kind in c["columns"])
        return f"Table {c['table']}({columns})\nQuestion: {example['question']}"
    passages = "\n\n".join(f"{p['title']}: {p['text']}" for p in example["context"]["passages"])
    return f"{passages}\n\nQuestion: {example['question']}"


def assistant_turn(example: dict) -> str:
    if example["pipeline"] == "table":
        return f"SQL: {example['reasoning']['sql']}\nAnswer: {example['answer']}"
    return f"{example['reasoning']['text']}\nAnswer: {example['answer']}"


def chat(example: dict) -> dict[str, Any]:
    return {"id": example["id"], "messages": [{"role": "system", "content": SYSTEM[example["pipeline"]]},
                                              {"role": "user", "content": user_turn(example)},
                                              {"role": "assistant", "content": assistant_turn(example)}]}


def eval_record(example: dict) -> dict[str, Any]:
    gold = ({"sql": example["reasoning"]["sql"], "result": example["reasoning"]["result"]}
            if example["pipeline"] == "table" else {"hops": example["reasoning"]["hops"]})
    return {"id": example["id"], "pipeline": example["pipeline"], "question": example["question"],
            "answer": example["answer"], "context": example["context"], "gold": gold}


def _write_jsonl(path: str, records: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    os.replace(tmp, path)


def write_datasets(workdir: str, generated: list[dict], curated: dict[str, dict]) -> dict[str, int]:
    """Writes dataset/*.jsonl from the generation and curation records; returns the line counts."""
    out = os.path.join(workdir, "dataset")
    os.makedirs(out, exist_ok=True)
    kept, slice0 = [], []
    for record in sorted((r for r in generated if r["kept"]), key=lambda r: r["id"]):
        example = dict(record["example"])
        curation = curated.get(record["id"])
        if curation is None:
            continue
        if curation["slice"] == 0:
            slice0.append(example)
        elif curation["kept"]:
            example["question"] = curation["question"]
            example["curation"] = {k: curation[k] for k in ("slice", "curator", "original_question", "imputed")}
            example["curation"]["tries"] = len(curation["tries"])
            kept.append(example)
    files = {"examples.jsonl": kept, "train.jsonl": [chat(e) for e in kept],
             "eval.jsonl": [eval_record(e) for e in kept], "slice0_train.jsonl": [chat(e) for e in slice0]}
    for name, records in files.items():
        _write_jsonl(os.path.join(out, name), records)
    return {name: len(records) for name, records in files.items()}


def statistics(generated: list[dict], curated: dict[str, dict], pipelines: list[str]) -> dict[str, Any]:
    """Per pipeline: seeds, rejections per (stage, reason), slices, duplicates, imputations, answerability."""
    stats: dict[str, Any] = {}
    for kind in pipelines:
        records = [r for r in generated if r["pipeline"] == kind]
        rejected = collections.Counter(f"{r['stage']}: {r['reason']}" for r in records if not r["kept"])
        cur = [curated[r["id"]] for r in records if r["kept"] and r["id"] in curated]
        one = [c for c in cur if c["slice"] == 1]
        stats[kind] = {
            "seeds": len(records), "generated": sum(r["kept"] for r in records),
            "rejected_in_generation": dict(sorted(rejected.items())),
            "slice0": sum(c["slice"] == 0 for c in cur), "slice1": len(one),
            "duplicates": sum(c["reason"] == "duplicate" for c in one),
            "imputed": sum(c.get("imputed") is True for c in one),
            "imputation_failed": sum(c.get("imputed") == "failed" for c in one),
            "unanswerable": sum(c["reason"] == "unanswerable" for c in one),
            "kept": sum(c["kept"] for c in one),
        }
    return stats


def stats_markdown(stats: dict[str, Any], labels: dict[str, str], timing: dict[str, float]) -> str:
    lines = ["# Source2Synth run: what was kept and why", "",
             f"Generator: {labels['generator']}  ", f"Curator: {labels['curator']}", "",
             "| stage | " + " | ".join(stats) + " |", "|---|" + "---:|" * len(stats)]

    def row(name, values):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in values) + " |")

    row("seeds", [s["seeds"] for s in stats.values()])
    reasons = sorted({k for s in stats.values() for k in s["rejected_in_generation"]})
    for reason in reasons:
        row(f"rejected at {reason}", [s["rejected_in_generation"].get(reason, 0) for s in stats.values()])
    for key, name in (("generated", "generated"), ("slice0", "slice 0 (for fine-tuning the curator)"),
                      ("slice1", "slice 1 (curated)"), ("duplicates", "dropped: duplicate question"),
                      ("imputed", "question imputed"), ("imputation_failed", "imputation failed (original kept)"),
                      ("unanswerable", "dropped: unanswerable"), ("kept", "**kept**")):
        row(name, [s[key] for s in stats.values()])
    if timing:
        lines += ["", (f"Generation: {timing.get('generation_per_minute', 0):.1f} seeds per minute; curation: "
                       f"{timing.get('curation_per_minute', 0):.1f} examples per minute (this launch).")]
    return "\n".join(lines) + "\n"
