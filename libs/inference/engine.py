"""Continuous batching: many requests share the decode steps of one `Decoder`.

`Engine.submit` queues a request (a bounded queue: `QueueFull` when it is full) and returns it at once;
a background thread admits queued requests into free cache slots as soon as one frees up (a prefill
each), runs one decode step for all busy slots at a time, and finishes each request on a stop token,
a stop string, a finished grammar, its token limit, the end of the context, or its deadline. Callers
wait on `Request.wait()`. A request with a grammar gets a mask of allowed tokens at every step.

Prefix reuse: a slot's cache keeps the keys and values of the last sequence it held. A new request goes
to the free slot whose tokens share the longest prefix with its prompt, and only the rest of the prompt
is prefilled. Requests that share a long system prompt or instructions (a search agent's queries) skip
most of their prefill; nothing is copied, since later positions are overwritten before they are seen.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import threading
import time
from typing import Any

import numpy as np

from libs.inference.decode import Decoder, SamplingParams

_LOG = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The engine's queue is at its bound; the server answers 503."""


@dataclasses.dataclass(eq=False)
class Request:
    """One generation: its prompt, how to sample, and (once done) its tokens, text and finish reason."""

    prompt: list[int]
    sampling: SamplingParams
    matcher: Any = None  # a libs.inference.grammar.Matcher, for structured outputs
    deadline: float | None = None  # time.monotonic() after which the request is given up
    tokens: list[int] = dataclasses.field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None  # "stop" | "length" | "timeout" | "error"
    error: str | None = None
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    first_token_at: float | None = None
    finished_at: float | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


@dataclasses.dataclass(eq=False)
class _Slot:
    request: Request
    detokenizer: Any
    fed: list[int]  # the tokens whose keys and values are in the slot's cache, in order
    token: int  # the last sampled token, fed at the next step
    step: int = 1

    @property
    def position(self) -> int:  # where the next token fed goes
        return len(self.fed)


class Engine:
    """Owns a Decoder and serves requests from a background thread (see module doc)."""

    def __init__(self, decoder: Decoder, tokenizer: Any, *, max_queue: int = 64, admission: str = "continuous"):
        if admission not in ("continuous", "static"):
            raise ValueError(f"admission={admission!r}: expected 'continuous' or 'static'")
        self.decoder, self.tokenizer, self.max_queue = decoder, tokenizer, max_queue
        # "continuous": a queued request takes any free slot at once; "static": a batch is admitted only
        # when every slot is free, and runs until its last request ends (kept for comparison).
        self.admission = admission
        self._waiting: collections.deque[Request] = collections.deque()
        self._slots: list[_Slot | None] = [None] * decoder.slots
        self._held: list[list[int]] = [[] for _ in range(decoder.slots)]  # each slot's cached tokens
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._allowed = np.ones((decoder.slots, decoder.vocab_size), bool)
        # requests, prompt_tokens, prefill_tokens (not reused), completion_tokens, decode_steps, decode_rows
        # (busy slots summed over steps), prefill_s, decode_s, finished_<reason>
        self.counts = collections.Counter()

    # --- the caller's side ---------------------------------------------------------------------------

    def submit(self, prompt: list[int], sampling: SamplingParams, matcher: Any = None,
               timeout_s: float | None = None) -> Request:
        if not prompt:
            raise ValueError("empty prompt")
        if len(prompt) >= self.decoder.max_len:
            raise ValueError(f"the prompt has {len(prompt)} tokens; this server's context is "
                             f"{self.decoder.max_len} tokens")
        if sampling.seed is None:
            sampling = dataclasses.replace(sampling, seed=random.getrandbits(32))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        request = Request(list(prompt), sampling, matcher, deadline)
        with self._wake:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"server busy: {len(self._waiting)} requests queued (the bound is {self.max_queue})")
            self._waiting.append(request)
            self.counts["requests"] += 1
            self._wake.notify()
        return request

    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finishes every queued and running request with an error and stops the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()

    def load(self) -> dict[str, int]:
        with self._wake:
            return {"waiting": len(self._waiting), "running": sum(s is not None for s in self._slots),
                    "slots": len(self._slots)}

    # --- the engine thread ---------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._wake:
                    while not self._stopping and not self._waiting and not any(self._slots):
                        self._wake.wait(timeout=1.0)
                    if self._stopping:
                        break
                self._expire()
                self._admit()
                if any(self._slots):
                    self._step()
        except Exception as e:  # pylint: disable=broad-except
            _LOG.exception("the engine failed")
            self._fail_all(f"the engine failed: {type(e).__name__}: {e}")
            return
        self._fail_all("the server is shutting down")

    def _fail_all(self, message: str) -> None:
        with self._wake:
            self._stopping = True
            pending = list(self._waiting) + [s.request for s in self._slots if s is not None]
            self._waiting.clear()
            self._slots = [None] * len(self._slots)
        for request in pending:
            self._finish(request, "error", message)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._wake:
            expired = [r for r in self._waiting if r.deadline is not None and now > r.deadline]
            for r in expired:
                self._waiting.remove(r)
        for r in expired:
            self._finish(r, "timeout", "the request timed out while queued")
        for i, slot in enumerate(self._slots):
            if slot is not None and slot.request.deadline is not None and now > slot.request.deadline:
                self._slots[i] = None
                self._finish(slot.request, "timeout", "the request timed out while generating")

    def _admit(self) -> None:
        if self.admission == "static" and any(self._slots):
            return
        while True:
            free = [i for i, s in enumerate(self._slots) if s is None]
            with self._wake:
                if not free or not self._waiting:
                    return
                request = self._waiting.popleft()
            prompt = request.prompt
            shared = {i: _common_prefix(self._held[i], prompt) for i in free}
            i = max(free, key=lambda j: shared[j])
            start = min(shared[i], len(prompt) - 1)  # at least one token to prefill, for its logits
            mask = None
            if request.matcher is not None:
                mask = np.zeros(self.decoder.vocab_size, bool)
                request.matcher.fill_mask(mask)
            self._held[i] = list(prompt[:start])  # still true should the prefill fail half-way
            t0 = time.perf_counter()
            token = self.decoder.prefill(i, prompt, request.sampling, mask, counter=0, start=start)
            self.counts["prefill_s"] += time.perf_counter() - t0
            self._held[i] = list(prompt)
            self.counts["prompt_tokens"] += len(prompt)
            self.counts["prefill_tokens"] += len(prompt) - start
            self.counts["prefills"] += 1
            request.first_token_at = time.monotonic()
            slot = _Slot(request, self.tokenizer.detokenizer(), self._held[i], token)
            self._slots[i] = None if self._emit(slot) else slot

    def _step(self) -> None:
        slots = self._slots
        tokens = np.array([s.token if s else 0 for s in slots], np.int32)
        positions = np.array([s.position if s else 0 for s in slots], np.int32)
        constrained = [i for i, s in enumerate(slots) if s is not None and s.request.matcher is not None]
        allowed = None
        if constrained:
            allowed = self._allowed
            allowed.fill(True)
            for i in constrained:
                slots[i].request.matcher.fill_mask(allowed[i])
        samplings = [s.request.sampling if s else None for s in slots]
        counters = [s.step if s else 0 for s in slots]
        t0 = time.perf_counter()
        next_tokens = self.decoder.decode(tokens, positions, samplings, counters, allowed)
        self.counts["decode_s"] += time.perf_counter() - t0
        self.counts["decode_steps"] += 1
        self.counts["decode_rows"] += sum(s is not None for s in slots)
        for i, slot in enumerate(slots):
            if slot is None:
                continue
            slot.fed.append(slot.token)
            slot.step += 1
            slot.token = int(next_tokens[i])
            if self._emit(slot):
                self._slots[i] = None

    def _emit(self, slot: _Slot) -> bool:
        """Takes in the slot's newly sampled token; True when its request has finished."""
        request, token = slot.request, slot.token
        if token in self.tokenizer.stop_ids and not request.sampling.ignore_eos:
            return self._finish(request, "stop")
        if request.matcher is not None and not request.matcher.accept(token):
            return self._finish(request, "error", f"token {token} broke the grammar")
        request.tokens.append(token)
        self.counts["completion_tokens"] += 1
        before = len(request.text)
        request.text += slot.detokenizer.add(token)
        for stop in request.sampling.stop:
            at = request.text.find(stop, max(0, before - len(stop) + 1))
            if at >= 0:
                request.text = request.text[:at]
                return self._finish(request, "stop")
        if request.matcher is not None and request.matcher.is_finished():
            return self._finish(request, "stop")
        if len(request.tokens) >= request.sampling.max_tokens or slot.position + 1 >= self.decoder.max_len:
            return self._finish(request, "length")
        return False

    def _finish(self, request: Request, reason: str, error: str | None = None) -> bool:
        request.finish_reason, request.error = reason, error
        request.finished_at = time.monotonic()
        self.counts[f"finished_{reason}"] += 1
        request.done.set()
        return True


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo
