"""An OpenAI-compatible HTTP server over the continuous-batching engine.

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (with usage counts), `GET /v1/models`,
`GET /health` (the served model's name and the engine's load). Requests from any number of clients are
batched into shared decode steps by the engine; its queue is bounded, and a request that finds it full
is answered 503 at once. A request that runs past the server's timeout is answered 504.

Structured outputs, as vLLM offers them: `response_format` (`json_schema`, `json_object`) and vLLM's
`guided_json`, `guided_regex` and `guided_choice` are enforced with token masks (libs/inference/grammar.py).

Errors use OpenAI's shape, {"error": {"message", "type", "code"}}: 400 for a malformed request, 404 for
an unknown path or model name, 503 when busy, 504 on timeout, 500 when the engine fails.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import logging
import math
import threading
import time
import uuid
from typing import Any

from libs.inference import grammar
from libs.inference.decode import SamplingParams
from libs.inference.engine import Engine, QueueFull, Request
from libs.train.errors import UserError

_LOG = logging.getLogger(__name__)
_MAX_BODY = 8 << 20


class HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


@dataclasses.dataclass
class ServedModel:
    """What the server serves: a name, the engine, its tokenizer and grammar compiler."""

    name: str
    engine: Engine
    tokenizer: Any
    compiler: grammar.GrammarCompiler | None = None
    default_max_tokens: int = 512


def _number(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
        raise HTTPError(400, f"'{key}' must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _integer(body: dict, key: str, lo: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise HTTPError(400, f"'{key}' must be an integer >= {lo}, got {value!r}")
    return value


def _stops(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 16 or not all(isinstance(s, str) and s for s in stops):
        raise HTTPError(400, "'stop' must be a non-empty string or a list of at most 16 of them")
    return tuple(stops)


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                                         for p in content):
        return "".join(p["text"] for p in content)
    raise HTTPError(400, f"{where}: content must be a string or a list of text parts")


class Handler(http.server.BaseHTTPRequestHandler):
    """One HTTP exchange; `served` and `timeout_s` are set on the subclass `make_server` builds."""

    served: ServedModel
    timeout_s: float
    protocol_version = "HTTP/1.1"
    server_version = "jax-research-monorepo"

    def log_message(self, fmt, *args):  # The access log goes to logging's debug level, not stderr.
        _LOG.debug("%s - %s", self.address_string(), fmt % args)

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        if path == "/health":
            engine = self.served.engine
            self._reply(200, {"status": "ok", "model": self.served.name, **engine.load(), "counts": dict(engine.counts)})
        elif path == "/v1/models":
            self._reply(200, {"object": "list", "data": [{"id": self.served.name, "object": "model",
                                                         "owned_by": "jax-research-monorepo"}]})
        else:
            self._error(HTTPError(404, f"no route GET {path}", "not_found_error"))

    def do_POST(self):
        path = self.path.split("?")[0].rstrip("/")
        try:
            if path not in ("/v1/chat/completions", "/v1/completions"):
                raise HTTPError(404, f"no route POST {path}", "not_found_error")
            body = self._body()
            chat = path == "/v1/chat/completions"
            request = self._submit(body, chat)
            if not request.wait(self.timeout_s + 5.0):
                raise HTTPError(504, f"no reply within {self.timeout_s:.0f} s", "timeout")
            if request.finish_reason == "timeout":
                raise HTTPError(504, f"{request.error} (the server's limit is {self.timeout_s:.0f} s)", "timeout")
            if request.finish_reason == "error":
                raise HTTPError(500, request.error or "generation failed", "server_error")
            self._reply(200, self._completion(request, chat))
        except HTTPError as e:
            self._error(e)
        except Exception as e:  # pylint: disable=broad-except
            _LOG.exception("request failed")
            self._error(HTTPError(500, f"{type(e).__name__}: {e}", "server_error"))

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise HTTPError(413, f"request body over {_MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPError(400, f"the body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "the body must be a JSON object")
        return body

    def _submit(self, body: dict, chat: bool) -> Request:
        served = self.served
        model = body.get("model")
        if model is not None and model != served.name:
            raise HTTPError(404, f"model {model!r} is not served here; this server serves {served.name!r}",
                            "not_found_error")
        if body.get("stream"):
            raise HTTPError(400, "stream=true is not supported by this server; ask without streaming")
        if body.get("n", 1) != 1:
            raise HTTPError(400, "only n=1 is supported")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise HTTPError(400, "'messages' must be a non-empty list")
            clean = []
            for i, m in enumerate(messages):
                if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                    raise HTTPError(400, f"messages[{i}] must be an object with a 'role'")
                clean.append({"role": m["role"], "content": _text_of(m.get("content", ""), f"messages[{i}]")})
            try:
                prompt = served.tokenizer.encode_chat(clean)
            except UserError as e:  # the model's chat template refuses these messages
                raise HTTPError(400, str(e).splitlines()[0]) from None
        else:
            text = body.get("prompt")
            if not isinstance(text, str) or not text:
                raise HTTPError(400, "'prompt' must be a non-empty string")
            prompt = served.tokenizer.encode(text)
        room = served.engine.decoder.max_len - len(prompt)
        if room <= 1:
            raise HTTPError(400, f"the prompt has {len(prompt)} tokens; this server's context is "
                                 f"{served.engine.decoder.max_len} tokens")
        max_tokens = _integer(body, "max_completion_tokens", 1) or _integer(body, "max_tokens", 1)
        sampling = SamplingParams(
            max_tokens=min(max_tokens or served.default_max_tokens, room - 1),
            temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
            top_p=_number(body, "top_p", 1.0, 1e-6, 1.0),
            stop=_stops(body),
            seed=_integer(body, "seed", 0),
            ignore_eos=bool(body.get("ignore_eos", False)))  # vLLM's extra: for benchmarks
        matcher = self._matcher(body)
        try:
            return served.engine.submit(prompt, sampling, matcher, self.timeout_s)
        except QueueFull as e:
            raise HTTPError(503, str(e), "server_busy") from None

    def _matcher(self, body: dict):
        try:
            spec = grammar.constraint_from_request(body.get("response_format"), regex=body.get("guided_regex"),
                                                   choice=body.get("guided_choice"), json_schema=body.get("guided_json"))
            if spec is None:
                return None
            if self.served.compiler is None:
                raise HTTPError(400, "structured outputs are off on this server")
            return self.served.compiler.matcher(spec)
        except grammar.GrammarError as e:
            raise HTTPError(400, str(e)) from None

    def _completion(self, request: Request, chat: bool) -> dict:
        usage = {"prompt_tokens": len(request.prompt), "completion_tokens": len(request.tokens),
                 "total_tokens": len(request.prompt) + len(request.tokens)}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": request.text},
                      "finish_reason": request.finish_reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": request.text, "finish_reason": request.finish_reason, "logprobs": None}
        return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.served.name, "choices": [choice], "usage": usage}

    def _error(self, e: HTTPError) -> None:
        self._reply(e.status, {"error": {"message": e.message, "type": e.kind, "code": e.status}})

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server:
    """The HTTP server in a background thread: `Server(served, port=0).start()`, then `.base_url`."""

    def __init__(self, served: ServedModel, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 600.0):
        handler = type("BoundHandler", (Handler,), {"served": served, "timeout_s": timeout_s})
        self.served = served
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> Server:
        self.served.engine.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.served.engine.stop()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
