"""A test double for LLM calls: a real OpenAI-compatible HTTP server with scripted replies.

`LocalOpenAIServer` listens on 127.0.0.1 (a free port) in a background thread and answers
`POST /v1/chat/completions` the way an OpenAI-compatible server does, so tests and benchmarks drive the
real client stack (litellm -> openai SDK -> httpx) over real HTTP. It is for tests and benchmarks only;
no production code path may use it. Standard library only.

    with LocalOpenAIServer(responder=lambda req: "hello") as server:
        config = LLMConfig(model="openai/test-model", api_base=server.base_url, api_key_env="KEY")
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import json
import threading
import time
import uuid
from typing import Any, Callable, Iterable

_TEXT = object()  # Sentinel: reply content is `Fault.text`.


@dataclasses.dataclass(frozen=True)
class Fault:
    """A scripted reply that is not a plain, prompt success.

    Attributes:
      status: HTTP status to answer with; 200 gives a chat.completion, anything else an OpenAI-style error.
      retry_after: seconds for a `Retry-After` header (sent with any status when set).
      delay_s: seconds to wait before answering (a slow reply); None uses the server's default delay.
      text: the reply content when status is 200.
      malformed_body: answer 200 with a body that is not JSON.
      content: replaces `choices[0].message.content` verbatim (None, "", a number, ...); unset uses `text`.
      no_choices: answer 200 with `"choices": []` (and usage for the prompt).
      message: the error message for a non-200 status.
    """

    status: int = 200
    retry_after: float | None = None
    delay_s: float | None = None
    text: str = ""
    malformed_body: bool = False
    content: Any = _TEXT
    no_choices: bool = False
    message: str = ""

    @classmethod
    def http(cls, status: int, retry_after: float | None = None, message: str = "") -> Fault:
        return cls(status=status, retry_after=retry_after, message=message)

    @classmethod
    def slow(cls, delay_s: float, text: str = "slow reply") -> Fault:
        return cls(delay_s=delay_s, text=text)

    @classmethod
    def malformed(cls) -> Fault:
        return cls(malformed_body=True)

    @classmethod
    def null_content(cls) -> Fault:
        return cls(content=None)

    @classmethod
    def empty_content(cls) -> Fault:
        return cls(content="")

    @classmethod
    def empty_choices(cls) -> Fault:
        return cls(no_choices=True)


Responder = Callable[[dict], "str | Fault"]


def estimate_tokens(text: str) -> int:
    """The server's token count: len(text) // 4 + 1."""
    return len(text) // 4 + 1


def _prompt_text(body: dict) -> str:
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):  # Content parts.
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


def echo_responder(body: dict) -> str:
    """Default replies: echoes the last message's content."""
    messages = body.get("messages") or [{}]
    return f"echo: {messages[-1].get('content', '')}"


class LocalOpenAIServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 with scripted replies.

    Each request takes the next item of `script` (a str reply or a Fault) while any remain, then asks
    `responder(request_json)`. Requests are handled on their own threads, so slow replies overlap.

    Like a real server, it can check the request first (recorded either way; no script item is used):
    `api_key` set: a request without "Authorization: Bearer <api_key>" gets a 401; `models` set: a request
    for a model not in it gets a 404 "model does not exist".

    Attributes:
      base_url: "http://127.0.0.1:PORT/v1", for `api_base`.
      requests: recorded requests, each {"path", "headers" (lower-case names), "json"} (None if not JSON).
      max_concurrent: the most requests that were being answered at once.
    """

    def __init__(self, responder: Responder | None = None, script: Iterable[str | Fault] = (),
                 delay_s: float = 0.0, model: str | None = None, api_key: str | None = None,
                 models: Iterable[str] | None = None):
        self.responder = responder or echo_responder
        self.delay_s = delay_s
        self.model = model
        self.api_key = api_key
        self.models = None if models is None else set(models)
        self.requests: list[dict] = []
        self.max_concurrent = 0
        self._script: collections.deque = collections.deque(script)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._closing = threading.Event()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Scripting and bookkeeping (thread-safe).

    def push(self, *items: str | Fault) -> None:
        """Appends scripted replies."""
        with self._lock:
            self._script.extend(items)

    @property
    def num_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    def _next_reply(self, body: dict | None) -> str | Fault:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self.responder(body or {})

    def _enter(self, record: dict) -> None:
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # Lifecycle.

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("LocalOpenAIServer is not started; use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> LocalOpenAIServer:
        handler = type("_BoundHandler", (_Handler,), {"server_double": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="LocalOpenAIServer", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # Wakes handlers sleeping in a delay.
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # The default listen backlog of 5 drops bursts of connections (1 s SYN retry).

    def handle_error(self, request, client_address):
        pass  # Clients that time out and hang up are expected; don't print tracebacks.


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # Else headers and body in two writes cost ~40 ms (delayed ACK).
    server_double: LocalOpenAIServer

    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        pass

    def do_POST(self):  # noqa: N802 (stdlib name)
        double = self.server_double
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        double._enter({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "json": body})
        try:
            if not self.path.rstrip("/").endswith("/chat/completions") or body is None:
                self._send_json(404 if body is not None else 400,
                                _error(f"no route for {self.path}" if body is not None else "body is not JSON"))
                return
            if double.api_key is not None and self.headers.get("Authorization") != f"Bearer {double.api_key}":
                self._send_json(401, _error("Incorrect API key provided", 401))
                return
            if double.models is not None and body.get("model") not in double.models:
                self._send_json(404, _error(f"The model `{body.get('model')}` does not exist", 404))
                return
            try:
                reply = double._next_reply(body)
            except Exception as e:  # pylint: disable=broad-except  (a broken responder is a 500, not a hang-up)
                reply = Fault.http(500, message=f"responder raised {e!r}")
            fault = reply if isinstance(reply, Fault) else Fault(text=str(reply))
            delay = double.delay_s if fault.delay_s is None else fault.delay_s
            if delay > 0 and double._closing.wait(delay):
                return
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            if fault.status != 200:
                self._send_json(fault.status, _error(fault.message or f"scripted error {fault.status}",
                                                     fault.status), headers)
            elif fault.malformed_body:
                self._send(200, b"<html>this is not JSON", "text/html", headers)
            elif fault.no_choices:
                payload = self._completion(body, None)  # No completion tokens.
                payload["choices"] = []
                self._send_json(200, payload, headers)
            else:
                content = fault.text if fault.content is _TEXT else fault.content
                self._send_json(200, self._completion(body, content), headers)
        finally:
            double._leave()

    def _completion(self, body: dict, content: Any) -> dict:
        prompt_tokens = estimate_tokens(_prompt_text(body))
        completion_tokens = estimate_tokens(content) if isinstance(content, str) else 0
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server_double.model or body.get("model", "test-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # The client gave up (e.g. timed out).


def _error(message: str, status: int = 400) -> dict:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "invalid_request_error", 429: "rate_limit_exceeded"}
    return {"error": {"message": message, "type": kinds.get(status, "server_error"), "param": None,
                      "code": str(status)}}
