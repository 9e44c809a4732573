r"""Source2Synth throughput: examples per minute against an OpenAI-compatible server that takes 200 ms a reply.

    python -m tools.bench_source2synth --seeds=40 --delay_s=0.2 --parallel=1,8,32

Every row runs the real experiment (`libs.source2synth.experiment.run`, both pipelines over the bundled corpus)
in a fresh workdir: generation (3 model calls a seed) and curation (imputation + up to 3 answerability tries).
  over HTTP, parallel P   the scripted replies of `libs.source2synth.testing` from `LocalOpenAIServer` over real
                          HTTP (litellm -> openai -> httpx) with `--delay_s` per reply, P examples and calls in flight
  rerun (cache)           the same run again from a copy of its reply cache: what a resumed or repeated run costs
  stand-in, no HTTP       the anchor: the rule-based stand-in answering in-process (the pipeline's own cost)
Examples per minute = seeds (both pipelines) through generation and curation per wall-clock minute.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time

from absl import app, flags, logging

from libs.llm.testing import LocalOpenAIServer
from libs.source2synth import experiment
from libs.source2synth.testing import scripted_responder
from libs.train import launch

_SEEDS = flags.DEFINE_integer("seeds", 40, "Seeds per pipeline.")
_DELAY = flags.DEFINE_float("delay_s", 0.2, "Seconds the server takes per reply.")
_PARALLEL = flags.DEFINE_list("parallel", ["1", "8", "32"], "Examples (and model calls) in flight.")


def _run(workdir: str, bindings: list[str]) -> tuple[float, dict]:
    launch.parse_config(["configs/source2synth/offline.gin"], [f"source2synth.num_examples = {_SEEDS.value}",
                                                                *bindings])
    start = time.perf_counter()
    result = experiment.run(workdir)
    return time.perf_counter() - start, result


def _model_bindings(server: LocalOpenAIServer, parallel: int) -> list[str]:
    return ["import libs.llm.gateway", "source2synth.generator = 'llm'",
            f"source2synth.examples_in_parallel = {parallel}", "LLMConfig.model = 'openai/scripted'",
            f"LLMConfig.api_base = '{server.base_url}'", f"LLMConfig.max_in_flight = {parallel}",
            "LLMConfig.input_usd_per_mtok = 0.0", "LLMConfig.output_usd_per_mtok = 0.0"]


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    seeds = 2 * _SEEDS.value
    rows = []
    root = tempfile.mkdtemp(prefix="bench_s2s_")
    try:
        seconds, result = _run(os.path.join(root, "standin"), [])
        rows.append(("stand-in, no HTTP (anchor)", seconds, result))
        with LocalOpenAIServer(responder=scripted_responder(), delay_s=_DELAY.value) as server:
            for parallel in (int(p) for p in _PARALLEL.value):
                workdir = os.path.join(root, f"http_{parallel}")
                before = server.num_requests
                seconds, result = _run(workdir, _model_bindings(server, parallel))
                result["requests"] = server.num_requests - before
                rows.append((f"over HTTP, parallel {parallel}", seconds, result))
            cached = os.path.join(root, "cached")
            os.makedirs(cached)
            shutil.copy(os.path.join(workdir, "llm_cache.sqlite"), cached)
            before = server.num_requests
            seconds, result = _run(cached, _model_bindings(server, parallel))
            result["requests"] = server.num_requests - before
            rows.append((f"rerun (cache), parallel {parallel}", seconds, result))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"Source2Synth throughput, {seeds} seeds (table + multihop), reply delay {_DELAY.value * 1000:.0f} ms, "
          f"{os.cpu_count()}-core CPU, {stamp}\n")
    print("| run | seconds | examples / minute | model requests | kept (table, multihop) |")
    print("|---|---:|---:|---:|---|")
    for name, seconds, result in rows:
        kept = result["kept"]
        print(f"| {name} | {seconds:.1f} | {60 * seeds / seconds:.0f} | {result.get('requests', 0)} | "
              f"{kept.get('table', 0)}, {kept.get('multihop', 0)} |")


if __name__ == "__main__":
    app.run(main)
