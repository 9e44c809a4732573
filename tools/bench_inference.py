r"""Local inference speed: prefill and decode tokens/s, and a server's aggregate throughput.

    python -m tools.bench_inference                                  # the embedded SmolLM2-135M, this CPU
    python -m tools.bench_inference --llamacpp_python=/tmp/llamacpp-env/bin/python   # + llama.cpp, same run
    python -m tools.bench_inference --model=path/to/model.gguf --batch_sizes=1,64 --skip_server
    python -m tools.bench_inference --gin_file=configs/llama/llama3_2_1b.gin --dtype=bfloat16 --batch_sizes=1,64

A --gin_file gives an architecture with random weights instead of a model source: prefill and decode
figures only (no tokenizer, so no server and no reference runtime). Decode speed does not depend on
the weights' values, and this path needs none of the inference extra's packages (a bare GPU image runs it).

Measures, after a warm-up (compilation is excluded and reported apart):
- prefill: tokens/s of one `--prompt_tokens` prompt into an empty cache (median of --repeats);
- decode: tokens/s at each batch size (every slot busy, --decode_tokens steps, median of --repeats);
- server: completion tokens/s in aggregate with --clients concurrent clients sending two rounds of chat
  requests of --decode_tokens/2 to --decode_tokens tokens through the HTTP server: continuous batching
  with and without a JSON-schema response_format, and static batching;
- reference (optional): the same model through llama.cpp (tools/bench_llamacpp.py under the given
  interpreter, with llama-cpp-python built from source) in the same run.
"""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import subprocess
import sys
import time
import urllib.request

import dataclasses

import jax
from absl import app, flags

from libs.inference import decode
from libs.train.errors import UserError
from libs.train.launch import EXIT_USER_ERROR

_MODEL = flags.DEFINE_string("model", "embedded", "'embedded', a .gguf file, or a Hugging Face folder.")
_GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Instead of --model: a Llama architecture from gin "
                                       "(make_model.family = 'llama') with random weights; engine figures only.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied after --gin_file.")
_MAX_LEN = flags.DEFINE_integer("max_len", 2048, "KV-cache length per slot (fewer attended-length programs "
                                "to compile when smaller).", lower_bound=2)
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_PROMPT = flags.DEFINE_integer("prompt_tokens", 512, "Prompt length for the prefill figure.", lower_bound=1)
_DECODE = flags.DEFINE_integer("decode_tokens", 128, "Tokens decoded per measurement.", lower_bound=1)
_BATCHES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Decode batch sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats; medians are reported.", lower_bound=1)
_CLIENTS = flags.DEFINE_integer("clients", 8, "Concurrent clients for the server figure.", lower_bound=1)
_SKIP_SERVER = flags.DEFINE_bool("skip_server", False, "Skip the server measurement.")
_LLAMACPP = flags.DEFINE_string("llamacpp_python", None, "An interpreter with llama_cpp installed: adds the "
                                "reference runtime's figures for the same GGUF file.")


def _median_rate(work, count: int) -> float:
    times = []
    for _ in range(_REPEATS.value):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return count / statistics.median(times)


def _engine_figures(cfg, params) -> dict:
    out = {}
    prompt = [(17 * i) % min(40000, cfg.vocab_size - 100) + 100 for i in range(_PROMPT.value)]
    greedy = decode.SamplingParams(max_tokens=1)
    for batch in sorted({int(b) for b in _BATCHES.value}):
        decoder = decode.Decoder(cfg, params, slots=batch, max_len=min(_MAX_LEN.value, cfg.max_seq_len))
        t0 = time.perf_counter()
        decoder.warm_up()
        out[f"compile_s_batch{batch}"] = round(time.perf_counter() - t0, 1)
        if batch == 1:
            out["prefill_tok_s"] = round(_median_rate(lambda: decoder.prefill(0, prompt, greedy), len(prompt)), 1)
        positions = [len(prompt)] * batch

        def run(decoder=decoder, batch=batch):
            tokens = [0] * batch
            for step in range(_DECODE.value):
                tokens = decoder.decode(tokens, [p + step for p in positions], [greedy] * batch, [step] * batch)

        out[f"decode_tok_s_batch{batch}"] = round(_median_rate(run, batch * _DECODE.value), 1)
    return out


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as reply:
        return json.loads(reply.read())


def _random_model():
    """(LlamaConfig, random params) of the --gin_file architecture, in --dtype."""
    from libs.models import registry  # pylint: disable=import-outside-toplevel
    from libs.train import launch  # pylint: disable=import-outside-toplevel

    launch.parse_config(_GIN_FILES.value, _GIN_BINDINGS.value)  # strict, as every binary parses gin
    model = registry.make_model()
    if model.family != "llama":
        raise UserError(f"--gin_file: make_model.family={model.family!r}; the decoder serves 'llama' models")
    cfg = dataclasses.replace(model.cfg, dtype=_DTYPE.value, param_dtype=_DTYPE.value)
    module = type(model.module)(cfg)
    init = jax.jit(lambda key: module.init(key, jax.numpy.zeros((1, 8), jax.numpy.int32), train=False)["params"])
    return cfg, init(jax.random.key(0))


def _server_figures() -> dict:
    from libs.inference import serving  # pylint: disable=import-outside-toplevel
    from libs.inference.server import Server  # pylint: disable=import-outside-toplevel

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    json_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    out = {}
    for admission in ("continuous", "static"):
        served = serving.build(_MODEL.value, slots=_CLIENTS.value, dtype=_DTYPE.value, admission=admission)
        cases = (("plain", {}), ("json_schema", {"response_format": json_format}))
        with Server(served) as server:
            for label, extra in cases if admission == "continuous" else cases[:1]:
                def one(i, extra=extra):
                    # Replies of different lengths (a half to the full --decode_tokens), as real clients ask.
                    body = {"messages": [{"role": "user", "content": f"Write a story about the number {i}."}],
                            "max_tokens": _DECODE.value // 2 + (_DECODE.value // 2) * i // max(1, _CLIENTS.value - 1),
                            "temperature": 0.7, "seed": i, "ignore_eos": True, **extra}
                    return _post(server.base_url + "/chat/completions", body)["usage"]["completion_tokens"]

                with concurrent.futures.ThreadPoolExecutor(_CLIENTS.value) as pool:
                    # An untimed round first: it compiles the programs of every batch bucket it meets.
                    list(pool.map(one, range(_CLIENTS.value)))
                    t0 = time.perf_counter()
                    tokens = sum(pool.map(one, range(2 * _CLIENTS.value)))  # two rounds of requests
                name = f"server_{admission}_{label}"
                out[f"{name}_tok_s"] = round(tokens / (time.perf_counter() - t0), 1)
                out[f"{name}_tokens"] = tokens
    return out


def _llamacpp_figures(path: str) -> dict:
    command = [_LLAMACPP.value, "tools/bench_llamacpp.py", f"--gguf={path}", f"--decode_tokens={_DECODE.value}",
               "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode:
        return {"llamacpp_error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return {f"llamacpp_{k}": v for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def main(argv):
    del argv
    random_weights = bool(_GIN_FILES.value)
    try:
        if random_weights:
            cfg, params = _random_model()
            path, kind = None, "random"
        else:
            from libs.inference import serving  # pylint: disable=import-outside-toplevel

            serving.use_compile_cache(serving.DEFAULT_COMPILE_CACHE)
            path, kind = serving.resolve(_MODEL.value)
            cfg, params, _ = serving.load(_MODEL.value, _DTYPE.value)
    except (UserError, ValueError, OSError) as e:  # ConfigError is a ValueError
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    model = ",".join(_GIN_FILES.value) + " (random weights)" if random_weights else _MODEL.value
    figures = {"model": model, "dtype": _DTYPE.value, "device": str(jax.devices()[0].device_kind),
               "params_m": round(sum(x.size for x in jax.tree.leaves(params)) / 1e6, 2),
               **_engine_figures(cfg, params)}
    del params
    if not _SKIP_SERVER.value and not random_weights:
        figures.update(_server_figures())
    if _LLAMACPP.value and kind == "gguf":
        figures.update(_llamacpp_figures(path))
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    app.run(main)
