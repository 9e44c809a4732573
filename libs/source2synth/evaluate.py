"""The evaluation harness: any model (through the LLM gateway) or the stand-in answers a Source2Synth eval set.

Reads `<dataset_dir>/dataset/eval.jsonl` (a generate run's output, or any file in that schema given as
`eval_file`) and, for table questions, that run's `sources.sqlite` (read-only). Each example is asked once
(`table_answer`: SQL and answer; `text_answer`: an answer from the passages) and scored with exact match, soft
exact match and, for tables, execution accuracy (`libs.source2synth.scoring`). Answers are appended to
`evaluation.jsonl` as they come (a rerun skips them); `eval_summary.{json,md}` give each metric per pipeline with
Wilson intervals.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

import gin
from absl import logging

from libs.source2synth import curation, pipelines, scoring, standin
from libs.source2synth import sql as sql_lib
from libs.source2synth.generators import ModelGenerator
from libs.source2synth.prompts import ReplyError
from libs.train import rundir
from libs.train.errors import ConfigError, UserError
from libs.train.launch import POSITIVE

_FIELDS = ("id", "pipeline", "question", "answer", "context")


@gin.configurable("source2synth_eval", denylist=["workdir"])
def evaluate(
    workdir: str,
    dataset_dir: str = "",
    eval_file: str = "",
    model: str = "llm",
    limit: int = 0,
    examples_in_parallel: Annotated[int, POSITIVE] = 8,
    rows_in_prompt: Annotated[int, POSITIVE] = 20,
    sql_timeout_s: Annotated[float, POSITIVE] = 2.0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Scores `model` ("llm": the gin-configured LLMConfig; "standin": the rule-based stand-in) on an eval set.

    Args:
      dataset_dir: a generate run's workdir (its dataset/eval.jsonl and sources.sqlite).
      eval_file: an eval.jsonl to use instead of the run's (the database is still the run's).
      limit: the first `limit` examples only (0: all).
    """
    if model not in ("llm", "standin"):
        raise ConfigError(f"source2synth_eval.model={model!r}: expected 'llm' or 'standin'")
    if not dataset_dir and not eval_file:
        raise ConfigError("source2synth_eval.dataset_dir: set it to a generate run's workdir")
    path = eval_file or os.path.join(dataset_dir, "dataset", "eval.jsonl")
    os.makedirs(workdir, exist_ok=True)
    examples = _read_examples(path, limit)
    db_path = os.path.join(dataset_dir, "sources.sqlite") if dataset_dir else ""
    tables = None
    if any(e["pipeline"] == "table" for e in examples):
        if not os.path.exists(db_path):
            raise UserError(f"{db_path}: no table database; set source2synth_eval.dataset_dir to the generate run")
        tables = pipelines.TableSources(db_path, [], sql_lib.read_schema(db_path), rows_in_prompt=rows_in_prompt,
                                        sql_timeout_s=sql_timeout_s)
    gateway = None
    if model == "llm":
        from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel (litellm is slow to import)
        gateway = llm.Gateway.for_run(workdir)
        answerer = ModelGenerator(gateway, max_attempts=1)
        call_errors: tuple = (llm.LLMError,)
    else:
        answerer = standin.StandInGenerator(
            execute=(lambda q: sql_lib.format_result(tables.run_sql(q))) if tables else None)
        call_errors = ()
    out = os.path.join(workdir, "evaluation.jsonl")
    done = {r["id"] for r in rundir.read_jsonl(out)}
    todo = [e for e in examples if e["id"] not in done]
    logging.info("evaluating %s on %d examples of %s (%d already done)", answerer.label, len(todo), path, len(done))
    failed = [0]

    async def one(example):
        step, inputs = curation.answer_inputs(example, tables.prompt_rows if tables else None)
        try:
            reply = await answerer.ask(step, inputs)
        except ReplyError as e:
            reply = {"error": str(e)[:200]}
        except call_errors as e:  # pylint: disable=catching-non-exception
            failed[0] += 1
            logging.warning("%s: model call failed, left for a rerun: %s", example["id"], str(e)[:200])
            return
        scores = scoring.score(example, reply, tables.run_sql if tables else None)
        rundir.append_jsonl(out, {"id": example["id"], "pipeline": example["pipeline"], "model": answerer.label,
                                  "reply": reply, **scores})

    async def all_examples():
        semaphore = asyncio.Semaphore(examples_in_parallel)

        async def guarded(example):
            async with semaphore:
                if not rundir.stop_requested():
                    await one(example)

        await asyncio.gather(*(guarded(e) for e in todo))

    try:
        asyncio.run(all_examples())
    finally:
        if gateway:
            gateway.write_usage(os.path.join(workdir, "llm_usage.jsonl"))
            gateway.close()
    wanted = {e["id"] for e in examples}
    rows = [r for r in rundir.read_jsonl(out) if r["id"] in wanted]
    summary = {kind: scoring.summarize([r for r in rows if r["pipeline"] == kind], confidence)
               for kind in sorted({e["pipeline"] for e in examples})}
    result = {"model": answerer.label, "eval_file": path, "examples": len(rows), "metrics": summary}
    with open(os.path.join(workdir, "eval_summary.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(workdir, "eval_summary.md"), "w") as f:
        f.write(summary_markdown(result, confidence))
    for kind, metrics in summary.items():
        logging.info("%s: %s", kind, ", ".join(f"{m} {v['rate']:.1%} [{v['low']:.1%}, {v['high']:.1%}] (n={v['n']})"
                                               for m, v in metrics.items()))
    status = "interrupted" if rundir.stop_requested() else "incomplete" if failed[0] else "complete"
    return {"status": status, "model": answerer.label, "examples": len(rows),
            "metrics": {k: {m: round(v["rate"], 4) for m, v in ms.items()} for k, ms in summary.items()}}


def _read_examples(path: str, limit: int) -> list[dict]:
    if not os.path.exists(path):
        raise UserError(f"{path}: no eval set (run the generate mode first, or set source2synth_eval.eval_file)")
    examples = rundir.read_jsonl(path)
    for n, e in enumerate(examples, 1):
        missing = [f for f in _FIELDS if f not in e]
        if missing or e.get("pipeline") not in pipelines.PIPELINES:
            raise UserError(f"{path} line {n}: not a Source2Synth eval record (missing {missing or 'a known pipeline'})")
    return examples[:limit] if limit else examples


def summary_markdown(result: dict, confidence: float) -> str:
    lines = [f"# Evaluation of {result['model']}", "",
             (f"Eval set: `{result['eval_file']}`, {result['examples']} answered. "
              f"Rates with {confidence:.0%} Wilson intervals."), "",
             "| pipeline | metric | rate | interval | n |", "|---|---|---:|---|---:|"]
    for kind, metrics in result["metrics"].items():
        for metric, v in metrics.items():
            lines.append(f"| {kind} | {metric.replace('_', ' ')} | {v['rate']:.1%} | "
                         f"[{v['low']:.1%}, {v['high']:.1%}] | {v['n']} |")
    return "\n".join(lines) + "\n"
