"""The Source2Synth experiment: generate grounded synthetic QA data from tables and documents, curate it, write it.

    sources -> seeds -> pipelines (tables: statement, SQL, question; documents: hop 1, hop 2, merge)
      -> generated.jsonl -> slices -> curation (duplicates, imputation, answerability) -> curated.jsonl
      -> dataset/*.jsonl, stats.json, stats.md

Each seed's record is appended to `generated.jsonl` (and each curated example's to `curated.jsonl`) when it is
done, so a rerun in the same workdir skips them; with a model, the gateway's reply cache (`llm_cache.sqlite`)
makes a rerun of a killed call free. A seed whose model call still fails after the gateway's retries is left for a
rerun (status "incomplete"); a spent budget stops the run cleanly (status "budget"); SIGTERM / Ctrl-C finish the
examples in flight and stop. `mode = "evaluate"` runs the evaluation harness instead (`libs.source2synth.evaluate`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Annotated, Any

import gin
from absl import logging

from libs.source2synth import curation, outputs, scoring, sources, standin
from libs.source2synth import documents as docs_lib
from libs.source2synth import pipelines as pipes
from libs.source2synth import sql as sql_lib
from libs.source2synth.generators import ModelGenerator
from libs.train import rundir
from libs.train.errors import ConfigError, UserError
from libs.train.launch import NON_NEGATIVE, POSITIVE
from libs.train.metrics import format_duration

CORPUS = "configs/source2synth/corpus"
MODELS = ("standin", "llm")


@gin.configurable("source2synth", denylist=["workdir"])
def run(
    workdir: str,
    mode: str = "generate",
    pipelines: Sequence[str] = ("table", "multihop"),
    tables: Sequence[str] = (f"{CORPUS}/tables",),
    documents: Sequence[str] = (f"{CORPUS}/docs",),
    matcher: str = "links",
    num_examples: Annotated[int, POSITIVE] = 20,
    seed: int = 0,
    generator: str = "standin",
    finetuned_curator: str | None = None,
    slice0_fraction: float = 0.0,
    tries: Annotated[int, POSITIVE] = 3,
    curation_temperature: Annotated[float, NON_NEGATIVE] = 0.7,
    impute: bool = True,
    examples_in_parallel: Annotated[int, POSITIVE] = 8,
    rows_in_prompt: Annotated[int, POSITIVE] = 20,
    sql_timeout_s: Annotated[float, POSITIVE] = 2.0,
    max_result_rows: Annotated[int, POSITIVE] = 5,
) -> dict[str, Any]:
    """Generates `num_examples` seeds per pipeline, curates them and writes the datasets.

    Args:
      workdir: the run directory (sources.sqlite, generated.jsonl, curated.jsonl, dataset/, stats.*).
      mode: "generate" (this), or "evaluate" (the harness; see `libs.source2synth.evaluate.evaluate`).
      pipelines: "table" and / or "multihop".
      tables: CSV / Parquet / SQLite files or folders, loaded into `workdir/sources.sqlite`.
      documents: .md / .txt files or folders. matcher: entity links: "links", "names" or "links+names".
      num_examples: seeds per pipeline; seed: the seed of the seeds.
      generator: "standin" (rule-based templates, labelled) or "llm" (the gin-configured `LLMConfig`).
      finetuned_curator: a model name (litellm string) fine-tuned on `dataset/slice0_train.jsonl` (the paper's
        LLMSynth), reached like `LLMConfig`; None: the generator curates.
      slice0_fraction: the share of examples set aside as slice 0 (written for fine-tuning, not curated).
      tries: answerability attempts per example (the paper: k = 3); curation_temperature: their sampling.
      impute: blank each question and have the curator write it anew before the answerability check.
      examples_in_parallel: seeds (and curations) in flight at once.
      rows_in_prompt: table rows shown to the model; sql_timeout_s: per query; max_result_rows: longer results
        are rejected (an answer is a value or a short list).
    """
    if mode == "evaluate":
        from libs.source2synth import evaluate  # pylint: disable=import-outside-toplevel
        return evaluate.evaluate(workdir)
    if mode != "generate":
        raise ConfigError(f"source2synth.mode={mode!r}: expected 'generate' or 'evaluate'")
    unknown = sorted(set(pipelines) - set(pipes.PIPELINES))
    if unknown or not pipelines:
        raise ConfigError(f"source2synth.pipelines={list(pipelines)}: expected some of {sorted(pipes.PIPELINES)}")
    if generator not in MODELS:
        raise ConfigError(f"source2synth.generator={generator!r}: expected one of {list(MODELS)}")
    if not 0.0 <= slice0_fraction < 1.0:
        raise ConfigError(f"source2synth.slice0_fraction={slice0_fraction}: expected 0 <= fraction < 1")
    os.makedirs(workdir, exist_ok=True)
    srcs = load_sources(workdir, pipelines, tables, documents, matcher, rows_in_prompt=rows_in_prompt,
                        sql_timeout_s=sql_timeout_s, max_result_rows=max_result_rows)
    table_src = srcs.get("table")
    gateways, make_generator, curator = _models(workdir, generator, finetuned_curator, table_src)
    labels = {"generator": make_generator.label, "curator": curator.label}
    logging.info("Source2Synth: %s, %d seeds each | generator: %s | curator: %s", "+".join(pipelines),
                 num_examples, labels["generator"], labels["curator"])
    try:
        status, timing = asyncio.run(_generate_and_curate(
            workdir, srcs, pipelines, num_examples, seed, make_generator, curator, gateways,
            slice0_fraction=slice0_fraction, tries=tries, temperature=curation_temperature, impute=impute,
            parallel=examples_in_parallel))
    finally:
        for gateway in gateways:
            gateway.write_usage(os.path.join(workdir, "llm_usage.jsonl"))
            gateway.close()
    generated = rundir.read_jsonl(os.path.join(workdir, "generated.jsonl"))
    curated = {r["id"]: r for r in rundir.read_jsonl(os.path.join(workdir, "curated.jsonl"))}
    counts = outputs.write_datasets(workdir, generated, curated)
    stats = outputs.statistics(generated, curated, list(pipelines))
    with open(os.path.join(workdir, "stats.json"), "w") as f:
        json.dump({"labels": labels, "pipelines": stats, "files": counts, "timing": timing}, f, indent=1)
    with open(os.path.join(workdir, "stats.md"), "w") as f:
        f.write(outputs.stats_markdown(stats, labels, timing))
    kept = {k: s["kept"] for k, s in stats.items()}
    logging.info("kept %s of %s seeds; dataset in %s; statistics in %s", kept,
                 {k: s["seeds"] for k, s in stats.items()}, os.path.join(workdir, "dataset"),
                 os.path.join(workdir, "stats.md"))
    return {"status": status, "kept": kept, "generator": labels["generator"], "curator": labels["curator"]}


def load_sources(workdir: str, kinds: Sequence[str], tables: Sequence[str], documents: Sequence[str], matcher: str,
                 **table_options: Any) -> dict[str, Any]:
    """The run's sources: the table database (built once per run in the workdir) and the linked documents.
    Malformed files are named in a warning and skipped."""
    srcs: dict[str, Any] = {}
    if "table" in kinds:
        db_path = os.path.join(workdir, "sources.sqlite")
        loaded, skipped = sources.load_tables(list(tables), db_path)
        _warn_skipped(skipped)
        logging.info("tables: %s in %s", ", ".join(f"{t.name} ({t.num_rows} rows)" for t in loaded), db_path)
        srcs["table"] = pipes.TableSources(db_path, loaded, sql_lib.read_schema(db_path), **table_options)
    if "multihop" in kinds:
        docs, skipped = docs_lib.load_documents(list(documents), matcher=matcher)
        _warn_skipped(skipped)
        links = sum(len(d.links) for d in docs.values())
        if not links:
            raise UserError(f"no links between the {len(docs)} documents of {list(documents)} (matcher "
                            f"{matcher!r}): the multi-hop pipeline needs entity links")
        logging.info("documents: %d with %d links (matcher %s)", len(docs), links, matcher)
        srcs["multihop"] = pipes.DocumentSources(docs)
    return srcs


def _warn_skipped(skipped) -> None:
    for s in skipped:
        logging.warning("skipped %s: %s", s.path, s.reason)


def _models(workdir: str, generator: str, finetuned_curator: str | None, table_src):
    """(gateways to close, the generator, the curator)."""
    execute = (lambda q: sql_lib.format_result(table_src.run_sql(q))) if table_src else None
    gateways = []
    if generator == "standin":
        made = standin.StandInGenerator(execute=execute)
    else:
        from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel (litellm is slow to import)
        gateways.append(llm.Gateway.for_run(workdir))
        made = ModelGenerator(gateways[0])
    curator = made
    if finetuned_curator:
        from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel
        config = dataclasses.replace(llm.LLMConfig(), model=finetuned_curator, local_model=None)
        gateways.append(llm.Gateway(config, cache_path=os.path.join(workdir, "llm_cache.sqlite"),
                                    ledger_path=os.path.join(workdir, "llm_ledger_curator.jsonl")))
        curator = ModelGenerator(gateways[-1], label=f"{finetuned_curator} (fine-tuned on slice 0)")
    return gateways, made, curator


def _call_errors(gateways) -> tuple[tuple, tuple]:
    """(errors that stop the run cleanly: a spent budget, errors of one failed call)."""
    if not gateways:
        return (), ()
    from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel
    return (llm.BudgetExceeded,), (llm.LLMError,)


async def _generate_and_curate(workdir, srcs, kinds, num_examples, seed, generator, curator, gateways, *,
                               slice0_fraction, tries, temperature, impute, parallel) -> tuple[str, dict]:
    budget_errors, call_errors = _call_errors(gateways)
    generated_path = os.path.join(workdir, "generated.jsonl")
    curated_path = os.path.join(workdir, "curated.jsonl")
    done = {r["id"] for r in rundir.read_jsonl(generated_path)}
    jobs = [(k, i) for k in kinds for i in range(num_examples) if f"{k}-{seed}-{i:05d}" not in done]
    logging.info("generation: %d seeds to run (%d already done)", len(jobs), len(done))
    state = {"failed": 0, "budget": False}
    progress = _Progress("generation", len(jobs))

    async def one_seed(kind, index):
        try:
            record = await pipes.generate(kind, generator, srcs[kind], seed, index)
        except budget_errors as e:  # pylint: disable=catching-non-exception
            logging.warning("LLM budget spent (%s); stopping after the calls in flight", e)
            state["budget"] = True
            return
        except call_errors as e:  # pylint: disable=catching-non-exception
            if not getattr(e, "rejected", False):
                state["failed"] += 1
                logging.warning("%s seed %d: model call failed, left for a rerun: %s", kind, index,
                                str(e).splitlines()[0][:200])
                return
            record = {"pipeline": kind, "index": index, "id": f"{kind}-{seed}-{index:05d}", "kept": False,
                      "stage": "model", "reason": "model_rejected", "detail": str(e)[:400]}
        rundir.append_jsonl(generated_path, record)
        progress.step(record["kept"])

    start = time.perf_counter()
    await _bounded([lambda k=k, i=i: one_seed(k, i) for k, i in jobs], parallel, state)
    generation_s = time.perf_counter() - start
    timing = {"generation_seconds": round(generation_s, 3),
              "generation_per_minute": 60 * progress.done / generation_s if progress.done else 0.0}
    if state["budget"] or rundir.stop_requested():
        return ("budget" if state["budget"] else "interrupted"), timing

    generated = [r for r in rundir.read_jsonl(generated_path) if r["kept"]]
    curated = {r["id"] for r in rundir.read_jsonl(curated_path)}
    todo, seen = [], set()
    for record in sorted(generated, key=lambda r: r["id"]):
        example = record["example"]
        part = curation.slice_of(example["id"], slice0_fraction)
        key = (example["pipeline"], scoring.normalize(example["question"]))
        duplicate = part == 1 and key in seen
        if part == 1:
            seen.add(key)
        if example["id"] in curated:
            continue
        if part == 0 or duplicate:
            rundir.append_jsonl(curated_path, {"id": example["id"], "slice": part, "kept": False,
                                               "reason": "duplicate" if duplicate else "slice0",
                                               "question": example["question"], "tries": []})
        else:
            todo.append(example)
    logging.info("curation: %d examples to curate (%d already done)", len(todo), len(curated))
    progress = _Progress("curation", len(todo))
    table_src = srcs.get("table")

    async def one_example(example):
        try:
            record = await curation.curate(
                example, curator, tries=tries, temperature=temperature, impute=impute,
                run_sql=table_src.run_sql if table_src else None,
                table_rows=table_src.prompt_rows if table_src else None)
        except budget_errors as e:  # pylint: disable=catching-non-exception
            logging.warning("LLM budget spent (%s); stopping after the calls in flight", e)
            state["budget"] = True
            return
        except call_errors as e:  # pylint: disable=catching-non-exception
            state["failed"] += 1
            logging.warning("%s: curation call failed, left for a rerun: %s", example["id"],
                            str(e).splitlines()[0][:200])
            return
        rundir.append_jsonl(curated_path, record)
        progress.step(record["kept"])

    start = time.perf_counter()
    await _bounded([lambda e=e: one_example(e) for e in todo], parallel, state)
    curation_s = time.perf_counter() - start
    timing.update(curation_seconds=round(curation_s, 3),
                  curation_per_minute=60 * progress.done / curation_s if progress.done else 0.0)
    if state["budget"]:
        return "budget", timing
    if rundir.stop_requested():
        return "interrupted", timing
    return ("incomplete" if state["failed"] else "complete"), timing


async def _bounded(jobs, parallel: int, state: dict) -> None:
    """Runs coroutine factories `parallel` at a time; none starts after a stop request or a spent budget."""
    semaphore = asyncio.Semaphore(parallel)

    async def guarded(job):
        async with semaphore:
            if state["budget"] or rundir.stop_requested():
                return
            await job()

    await asyncio.gather(*(guarded(j) for j in jobs))


class _Progress:
    """One progress line per finished item (at most every 5 s, and the last): what, how far, how fast, ETA."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done, self.kept = what, total, 0, 0
        self.start = self.last = time.perf_counter()

    def step(self, kept: bool) -> None:
        self.done += 1
        self.kept += bool(kept)
        now = time.perf_counter()
        if now - self.last < 5.0 and self.done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed else 0.0
        eta = (self.total - self.done) / rate if rate else 0.0
        logging.info("%s %d/%d | kept %d | %.1f per minute | %s elapsed | ETA %s", self.what, self.done, self.total,
                     self.kept, 60 * rate, format_duration(elapsed), format_duration(eta))
