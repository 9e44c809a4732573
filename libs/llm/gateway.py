"""The LLM gateway: the only path from project code to a language model.

Calls go through `litellm.acompletion` (any provider it knows; "openai/<name>" plus `api_base` for any
OpenAI-compatible server) with our own bounded concurrency, retries, token and dollar budgets and an
on-disk reply cache. API keys are read from the environment at call time and never stored, cached, logged
or put into errors. Usage: `Gateway(LLMConfig(...)).complete(messages)`, then `write_usage(path)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import os
import random
import re
import threading
import time
import warnings
import weakref
from typing import Any

import gin
import litellm  # Imported after libs.llm (our package), which pins litellm to its bundled cost map.

from libs.llm.cache import CachedReply, CacheError, CacheMiss, ResponseCache, request_key

__all__ = ["BudgetExceeded", "CacheError", "CacheMiss", "Completion", "Gateway", "LLMConfig", "LLMError"]

litellm.suppress_debug_info = True  # No "Give Feedback / Get Help" banners on stdout.
litellm.telemetry = False
# litellm logs a line per call at INFO; our progress lines say what a run is doing.
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# litellm's lazily built pydantic models warn about TypedDict ReadOnly items on the first call.
warnings.filterwarnings("ignore", message=r".*using the `ReadOnly` qualifier", category=UserWarning)

_LOG = logging.getLogger(__name__)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAMPLING = ("temperature", "max_tokens", "top_p")
_RESERVED = frozenset({"api_key", "api_base", "base_url", "model", "messages", "stream", "num_retries",
                       "max_retries", "timeout"})
# Errors litellm reports as 5xx that no retry can fix.
_FATAL_MARKERS = ("Missing credentials", "api_key client option must be set")
_NO_KEY = "no-key"  # Sent to a custom api_base when api_key_env is None, so no provider default key leaks.


class LLMError(RuntimeError):
    """A model call failed: non-retryable, or still failing after max_retries."""


class BudgetExceeded(RuntimeError):
    """The run's token or dollar budget is spent; a clean stop, not an LLMError."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LLMConfig:
    """How to reach one model, and the run's limits.

    Attributes:
      model: a litellm model string: "openai/gpt-4o", "anthropic/...", "ollama/...", "hosted_vllm/...".
      api_base: the server URL for self-hosted or OpenAI-compatible servers.
      api_key_env: NAME of the environment variable holding the API key, read at call time. None: litellm's
        provider default, or a placeholder when api_base is set (so OPENAI_API_KEY never goes elsewhere).
      temperature, max_tokens, top_p: sampling defaults; `Gateway.complete` may override them per call.
      timeout_s, max_retries: per attempt; retries follow 429, 5xx, timeouts and connection errors.
      backoff_initial_s, backoff_max_s: exponential backoff with jitter; backoff_max_s also caps Retry-After.
      max_in_flight: most concurrent model calls.
      budget_tokens, budget_usd: prompt + completion tokens / dollars this run may spend (0: unlimited),
        checked before each model call (calls already in flight may overshoot).
      input_usd_per_mtok, output_usd_per_mtok: prices per million tokens that replace litellm's cost map.
      cache_path, replay_only: sqlite reply cache (None: off); replay_only answers from it or raises.
      extra: further litellm kwargs, e.g. {"reasoning_effort": "low"}; part of the cache key.
    """

    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    top_p: float = 1.0
    timeout_s: float = 300.0
    max_retries: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    max_in_flight: int = 8
    budget_tokens: int = 0
    budget_usd: float = 0.0
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    cache_path: str | None = None
    replay_only: bool = False
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        reserved = ", ".join(sorted(_RESERVED.intersection(self.extra)))
        checks = [
            (isinstance(self.model, str) and self.model, "model must be a litellm model string: 'openai/gpt-4o'"),
            # Never echo the value: someone may have pasted the key itself here.
            (self.api_key_env is None or _ENV_NAME.match(self.api_key_env),
             "api_key_env must be the NAME of an environment variable, not a key"),
            (self.max_in_flight >= 1 and self.max_retries >= 0 and self.timeout_s > 0,
             "needs max_in_flight >= 1, max_retries >= 0 and timeout_s > 0"),
            (self.budget_tokens >= 0 and self.budget_usd >= 0, "budgets must be >= 0 (0 is unlimited)"),
            (not reserved, f"extra may not set {reserved}; use the config's own fields"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"LLMConfig: {message}")


@dataclasses.dataclass(frozen=True)
class Completion:
    """A model's reply. For a cached reply, tokens and cost are those of the original call."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    model: str


class Gateway:
    """Calls one configured model: bounded concurrency, retries, budgets, cache, usage accounting.

    One Gateway is one run: budgets and usage count this instance's calls. Share it between the asyncio
    tasks of a run. `cache_path` overrides `config.cache_path`.
    """

    def __init__(self, config: LLMConfig, cache_path: str | None = None):
        self.config = config
        path = cache_path or config.cache_path
        if config.replay_only and not path:
            raise ValueError("LLMConfig.replay_only needs a cache_path to replay from")
        self._cache = ResponseCache(path) if path else None
        self._semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._usage = dict.fromkeys(("calls", "cached_calls", "prompt_tokens", "completion_tokens", "retries",
                                     "errors", "cached_prompt_tokens", "cached_completion_tokens"), 0)
        self._usage.update(cost_usd=0.0, cached_cost_usd=0.0)
        self._warned_cost = False
        self._sync_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def complete(self, messages: list[dict], *, cache_tag: str | int | None = None,
                       **overrides: Any) -> Completion:
        """Returns the model's reply to OpenAI-style chat `messages`.

        `overrides` are temperature, max_tokens, top_p or further litellm kwargs for this call. `cache_tag`
        is part of the cache key only (never sent): distinct tags cache distinct samples of one request.
        Raises LLMError, BudgetExceeded, CacheMiss (replay_only) or CacheError.
        """
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list of chat messages")
        cfg = self.config
        if _RESERVED.intersection(overrides):
            raise ValueError(f"cannot override {sorted(_RESERVED.intersection(overrides))} per call")
        params = {name: overrides.pop(name, getattr(cfg, name)) for name in _SAMPLING}
        extra = {**cfg.extra, **overrides}
        request = {"model": cfg.model, "api_base": cfg.api_base, "messages": messages, "extra": extra, **params}
        if cache_tag is not None:
            request["cache_tag"] = cache_tag
        key = request_key(request)
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                self._add(cached_calls=1, cached_prompt_tokens=hit.prompt_tokens,
                          cached_completion_tokens=hit.completion_tokens, cached_cost_usd=hit.cost_usd)
                return Completion(hit.text, hit.prompt_tokens, hit.completion_tokens, hit.cost_usd, True,
                                  hit.model)
            if cfg.replay_only:
                raise CacheMiss(f"replay_only: no cached reply for {cfg.model} request {key[:12]} "
                                f"in {self._cache.path}")
        async with self._semaphore():
            self._check_budget()
            reply = await self._call(messages, params, extra)
        if self._cache is not None:
            self._cache.put(key, CachedReply(reply.text, reply.prompt_tokens, reply.completion_tokens,
                                             reply.cost_usd, reply.model, time.time()))
        return reply

    def complete_sync(self, messages: list[dict], **overrides: Any) -> Completion:
        """`complete` for scripts (not inside a running event loop), on this gateway's private loop."""
        with self._sync_lock:
            # One loop for all sync calls: litellm's clients and logging worker are bound to a loop.
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                weakref.finalize(self, _close_loop, self._loop)
            return self._loop.run_until_complete(self.complete(messages, **overrides))

    def usage(self) -> dict:
        """Counts so far: calls (answered by the model), cached_calls, tokens and cost spent, retries,
        errors; cached_* report what cache hits would have cost."""
        with self._lock:
            return dict(self._usage)

    def write_usage(self, path: str) -> None:
        """Appends one JSON line {time, model, **usage()} to `path`."""
        record = {"time": time.time(), "model": self.config.model, **self.usage()}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def close(self) -> None:
        """Closes the cache and the private event loop."""
        if self._cache is not None:
            self._cache.close()
        if self._loop is not None:
            _close_loop(self._loop)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Internals.

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.config.max_in_flight)
        return semaphore

    def _add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                self._usage[name] += value

    def _check_budget(self) -> None:
        cfg, usage = self.config, self.usage()
        tokens = usage["prompt_tokens"] + usage["completion_tokens"]
        if cfg.budget_tokens and tokens >= cfg.budget_tokens:
            raise BudgetExceeded(f"LLM token budget spent for {cfg.model}: {tokens} >= {cfg.budget_tokens}")
        if cfg.budget_usd and usage["cost_usd"] >= cfg.budget_usd:
            raise BudgetExceeded(f"LLM dollar budget spent for {cfg.model}: "
                                 f"${usage['cost_usd']:.4f} >= ${cfg.budget_usd:.4f}")

    def _api_key(self) -> str | None:
        cfg = self.config
        if cfg.api_key_env is None:
            return _NO_KEY if cfg.api_base else None
        value = os.environ.get(cfg.api_key_env)
        if not value:
            self._add(errors=1)
            raise LLMError(f"{cfg.model}: environment variable {cfg.api_key_env} (api_key_env) is not set")
        return value

    async def _call(self, messages: list[dict], params: dict, extra: dict) -> Completion:
        cfg = self.config
        api_key = self._api_key()
        kwargs = dict(model=cfg.model, messages=messages, api_base=cfg.api_base, api_key=api_key,
                      timeout=cfg.timeout_s, num_retries=0, max_retries=0, **params, **extra)
        for attempt in range(cfg.max_retries + 1):
            try:
                response = await asyncio.wait_for(litellm.acompletion(**kwargs), cfg.timeout_s + 10.0)
            except Exception as e:  # litellm maps every provider's errors onto its own classes.
                retryable, retry_after = _classify(e)
                message = _one_line(e, api_key)
            else:
                return self._account(response)
            if not retryable or attempt == cfg.max_retries:
                self._add(errors=1)
                tries = f" after {attempt + 1} attempts" if retryable else ""
                _LOG.warning("LLM call to %s failed%s: %s", cfg.model, tries, message)
                raise LLMError(f"{cfg.model} failed{tries}: {message}")  # Outside `except`: no chained key.
            if retry_after is None:
                delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2**attempt) * random.uniform(0.5, 1.0)
            else:  # Never earlier than asked; spread so that a burst of 429s does not return at once.
                delay = min(cfg.backoff_max_s, retry_after) * random.uniform(1.0, 1.2)
            self._add(retries=1)
            _LOG.info("LLM call to %s: %s; retry %d/%d in %.2fs", cfg.model, message, attempt + 1,
                      cfg.max_retries, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _account(self, response: Any) -> Completion:
        cfg = self.config
        choices = getattr(response, "choices", None) or []
        content = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
        text = content if isinstance(content, str) else ""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        if cfg.input_usd_per_mtok is not None or cfg.output_usd_per_mtok is not None:
            cost = (prompt_tokens * (cfg.input_usd_per_mtok or 0.0)
                    + completion_tokens * (cfg.output_usd_per_mtok or 0.0)) / 1e6
        else:
            try:
                cost = float(litellm.completion_cost(completion_response=response) or 0.0)
            except Exception as e:  # Models missing from litellm's cost map raise.
                cost = 0.0
                if not self._warned_cost:
                    self._warned_cost = True
                    _LOG.warning("no price for %s (%s); counting $0; set LLMConfig.input_usd_per_mtok and "
                                 "output_usd_per_mtok", cfg.model, type(e).__name__)
        self._add(calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost)
        model = getattr(response, "model", None) or cfg.model
        return Completion(text, prompt_tokens, completion_tokens, cost, False, model)


def _classify(error: Exception) -> tuple[bool, float | None]:
    """(retryable, Retry-After seconds or None) for an exception from litellm."""
    if any(marker in str(error) for marker in _FATAL_MARKERS):
        return False, None
    retryable = isinstance(error, (litellm.RateLimitError, litellm.InternalServerError,
                                   litellm.ServiceUnavailableError, litellm.APIConnectionError,
                                   litellm.Timeout, asyncio.TimeoutError))
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and (status in (408, 429) or status >= 500):
        retryable = True
    if not retryable:
        return False, None
    headers = getattr(error, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(error, "response", None), "headers", None)
    return True, _retry_after(headers)


def _retry_after(headers: Any) -> float | None:
    """Seconds from Retry-After-Ms / Retry-After (seconds or an HTTP date); None without (valid) advice."""
    try:
        headers = {str(k).lower(): str(v) for k, v in headers.items()} if headers else {}
        if headers.get("retry-after-ms") is not None:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None or value.replace(".", "", 1).isdigit():
            return None if value is None else float(value)
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except Exception:  # pylint: disable=broad-except  (a malformed header is no advice)
        return None


def _one_line(error: Exception, secret: str | None, limit: int = 500) -> str:
    """The error as one bounded line, with every occurrence of `secret` redacted (before truncating)."""
    text = str(error)
    if secret and secret != _NO_KEY:
        text = text.replace(secret, "[REDACTED]")
    text = " ".join(text.split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed():
        pending = asyncio.all_tasks(loop)  # litellm's logging worker, if any.
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
