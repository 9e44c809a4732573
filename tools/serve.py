r"""Serve a model over an OpenAI-compatible HTTP API (libs/inference/server.py).

    python -m tools.serve                                # SmolLM2-135M-Instruct, the embedded model
    python -m tools.serve --model=path/to/model.gguf --port=8000
    python -m tools.serve --model=path/to/hf_folder --slots=16 --max_len=4096

Then point any OpenAI client, or the gateway, at it:
    LLMConfig.model = "openai/SmolLM2-135M-Instruct"
    LLMConfig.api_base = "http://127.0.0.1:8421/v1"

Concurrent requests share decode steps (continuous batching over --slots cache rows); a full queue
answers 503 at once; SIGTERM or Ctrl-C stops it (requests in flight are answered with an error).
"""

from __future__ import annotations

import logging as std_logging
import signal
import sys
import threading

from absl import app, flags, logging

from libs.inference import serving
from libs.inference.server import Server
from libs.train.errors import UserError
from libs.train.launch import EXIT_USER_ERROR

DEFAULT_PORT = 8421

_MODEL = flags.DEFINE_string("model", serving.EMBEDDED, "'embedded' (SmolLM2-135M-Instruct), a .gguf file, or "
                             "a Hugging Face folder.")
_NAME = flags.DEFINE_string("name", None, "The model name clients ask for (default: from --model).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
_PORT = flags.DEFINE_integer("port", DEFAULT_PORT, "Port to listen on (0: any free port).")
_SLOTS = flags.DEFINE_integer("slots", 8, "Sequences decoded together (KV-cache rows).", lower_bound=1)
_MAX_LEN = flags.DEFINE_integer("max_len", 2048, "Context length per sequence (prompt + reply).", lower_bound=16)
_MAX_QUEUE = flags.DEFINE_integer("max_queue", 64, "Requests that may wait for a slot; more get 503.",
                                  lower_bound=0)
_TIMEOUT = flags.DEFINE_float("timeout_s", 600.0, "Seconds a request may take, queued and generating.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype (float32 on CPUs).")
_COMPILE_CACHE = flags.DEFINE_string("compile_cache_dir", serving.DEFAULT_COMPILE_CACHE,
                                     "XLA's persistent compilation cache: restarts skip compiling ('' disables).")
_ADMISSION = flags.DEFINE_enum("admission", "continuous", ["continuous", "static"],
                               "continuous: a request takes a free slot at once; static: whole batches.")
_STRUCTURED = flags.DEFINE_bool("structured_outputs", True, "Enforce response_format / guided_* with token masks.")


def main(argv):
    del argv
    std_logging.getLogger("libs.inference").setLevel(std_logging.INFO)
    serving.use_compile_cache(_COMPILE_CACHE.value)
    try:
        served = serving.build(_MODEL.value, name=_NAME.value, slots=_SLOTS.value, max_len=_MAX_LEN.value,
                               max_queue=_MAX_QUEUE.value, dtype=_DTYPE.value,
                               structured_outputs=_STRUCTURED.value, admission=_ADMISSION.value)
        server = Server(served, _HOST.value, _PORT.value, _TIMEOUT.value)
    except (UserError, OSError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    logging.info("serving %s at %s (%d slots, context %d)", served.name, server.base_url, _SLOTS.value,
                 served.engine.decoder.max_len)
    print(f"serving {served.name} at {server.base_url}", flush=True)
    stop.wait()
    logging.info("stopping")
    server.stop()


if __name__ == "__main__":
    app.run(main)
