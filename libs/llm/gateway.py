"""The LLM gateway: the only path from project code to a language model.

Calls go through `litellm.acompletion` (any provider it knows; "openai/<name>" plus `api_base` for any
OpenAI-compatible server) with our own bounded concurrency, retries, token and dollar budgets and an
on-disk reply cache. API keys are read from the environment at call time and never stored, cached, logged
or put into errors. Usage: `Gateway(LLMConfig(...)).complete(messages)`, then `write_usage(path)`.

Surviving faults:
- **A usage ledger** (`Gateway(..., ledger_path=...)`): every reply the model sends (and every cache hit,
  marked cached) is appended at once as one JSONL line, and a new Gateway starts from the ledger's totals,
  so usage and the token / dollar budgets count every launch of a run, and a kill loses at most the calls
  in flight.
- **Errors a user can fix** (a refused key, an unset key variable, nothing listening at api_base, an unknown
  model, a corrupt cache, a replay_only miss) fail fast, without retries, as `LLMUserError` / `CacheError` /
  `CacheMiss`: subclasses of `libs.train.errors.UserError`, which the launcher prints as one line (exit 2).
  They are deliberately NOT `LLMError`: `except LLMError` means "this one call failed, go on without it",
  which would turn a bad key into a run of fallbacks.
- **Transient faults** (429, 5xx, timeouts, malformed bodies, replies without content) are retried with
  backoff and raise `LLMError` once retries are spent. A reply without content is never cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import logging
import math
import os
import random
import re
import socket
import threading
import time
import urllib.parse
import warnings
import weakref
from typing import Any

import gin
import litellm  # Imported after libs.llm (our package), which pins litellm to its bundled cost map.

from libs.llm import local_server
from libs.llm.cache import CachedReply, CacheError, CacheMiss, ResponseCache, request_key
from libs.train import rundir
from libs.train.errors import ConfigError, UserError

__all__ = ["BudgetExceeded", "CacheError", "CacheMiss", "Completion", "ConfigError", "Gateway", "LLMConfig",
           "LLMError", "LLMUserError", "UserError"]

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
# Things that look like keys in a server's message ("Incorrect API key provided: sk-proj-****abcd").
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_*.\-]{8,}|\bBearer\s+\S+")
# The usage counters a ledger record adds to (the rest, retries and errors, are this launch's only).
_LEDGER_FIELDS = ("calls", "cached_calls", "empty_replies", "prompt_tokens", "completion_tokens", "cost_usd",
                  "cached_prompt_tokens", "cached_completion_tokens", "cached_cost_usd")


class LLMError(RuntimeError):
    """A model call failed: a transient fault still failing after max_retries (429, 5xx, timeouts, malformed
    or empty replies), or a request the server rejects (400; `rejected` is then True: the same request
    will not succeed, e.g. a prompt longer than the model's context). One call failed; the run may go on."""

    def __init__(self, message: str, rejected: bool = False):
        super().__init__(message)
        self.rejected = rejected


class LLMUserError(UserError, RuntimeError):
    """A model call cannot succeed until the user fixes something: the key (401/403, unset variable), the
    api_base (connection refused, unknown host), the model name (404). Raised at once, without retries.

    A `libs.train.errors.UserError` (the launcher prints one line and exits 2), and NOT an `LLMError`: code
    that catches LLMError to skip one failed call must not carry on through a run in which every call fails.
    """


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
        checked before each model call (calls already in flight may overshoot); with the Gateway's
        ledger_path, over every launch of the run, not just this one.
      input_usd_per_mtok, output_usd_per_mtok: prices per million tokens that replace litellm's cost map.
      cache_path, replay_only: sqlite reply cache (None: off); replay_only answers from it or raises.
      extra: further litellm kwargs, e.g. {"reasoning_effort": "low"}; part of the cache key.
      structured_outputs: the provider enforces `response_format` JSON schemas (this project's server,
        vLLM, OpenAI); callers that can ask for a schema then do (`Gateway.structured_outputs`).
      local_model: a model source for this project's own server ("embedded": SmolLM2-135M-Instruct, a
        .gguf file, a Hugging Face folder), started at api_base (on this machine) unless already serving.

    Bad values raise `libs.train.errors.ConfigError` (one line, never echoing a value that may be a key).
    """

    model: str = ""
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
    structured_outputs: bool = False
    local_model: str | None = None

    def __post_init__(self):
        extra_ok = isinstance(self.extra, dict)
        reserved = ", ".join(sorted(_RESERVED.intersection(self.extra))) if extra_ok else ""
        prices = (self.input_usd_per_mtok, self.output_usd_per_mtok)
        checks = [
            (isinstance(self.model, str) and self.model.strip(),
             "model must be set to a litellm model string, e.g. LLMConfig.model = 'openai/gpt-4o'"),
            # Never echo the value: someone may have pasted the key itself here.
            (self.api_key_env is None or (isinstance(self.api_key_env, str) and _ENV_NAME.match(self.api_key_env)),
             "api_key_env must be the NAME of an environment variable (e.g. 'OPENAI_API_KEY'), not a key"),
            (self.api_base is None or (isinstance(self.api_base, str)
                                       and self.api_base.startswith(("http://", "https://"))),
             "api_base must be a URL starting with http:// or https://, e.g. 'http://localhost:8000/v1'"),
            (not _has_credentials(self.api_base),
             "api_base may not hold credentials (user:password@); pass keys through api_key_env"),
            (_number(self.max_in_flight) and self.max_in_flight >= 1 and _number(self.max_retries)
             and self.max_retries >= 0 and _number(self.timeout_s) and self.timeout_s > 0,
             "needs max_in_flight >= 1, max_retries >= 0 and timeout_s > 0"),
            (_number(self.backoff_initial_s) and self.backoff_initial_s >= 0 and _number(self.backoff_max_s)
             and self.backoff_max_s >= 0, "backoff_initial_s and backoff_max_s must be >= 0"),
            (_number(self.budget_tokens) and self.budget_tokens >= 0 and _number(self.budget_usd)
             and self.budget_usd >= 0, "budgets must be >= 0 (0 is unlimited)"),
            (all(p is None or (_number(p) and p >= 0) for p in prices),
             "input_usd_per_mtok and output_usd_per_mtok must be None or >= 0"),
            ((self.temperature is None or (_number(self.temperature) and self.temperature >= 0))
             and (self.top_p is None or (_number(self.top_p) and 0 <= self.top_p <= 1))
             and (self.max_tokens is None or (_number(self.max_tokens) and self.max_tokens >= 1)),
             "needs temperature >= 0, 0 <= top_p <= 1 and max_tokens >= 1 (or None: the server's default)"),
            (extra_ok, "extra must be a dict of litellm keyword arguments"),
            (isinstance(self.structured_outputs, bool), "structured_outputs must be True or False"),
            (self.local_model is None or (isinstance(self.local_model, str) and self.local_model and self.api_base),
             "local_model needs a model source ('embedded', a .gguf file, a folder) and an api_base to serve it at"),
            (not reserved, f"extra may not set {reserved}; use the config's own fields"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"LLMConfig: {message}")


def _has_credentials(url: Any) -> bool:
    """Whether `url` holds user:password@ (it would reach config.gin, logs and error messages)."""
    return isinstance(url, str) and "@" in url.split("://", 1)[-1].split("/", 1)[0]


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


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

    One Gateway is one launch of a run; share it between the asyncio tasks of the launch.

    Args:
      config: the model and the run's limits.
      cache_path: the sqlite reply cache; overrides `config.cache_path` (None: that, or no cache).
      ledger_path: a JSONL usage ledger (None: none). Each reply the model sends (with content or not) and
        each cache hit is appended as one line {time, model, prompt_tokens, completion_tokens, cost_usd,
        cached[, empty]} when it arrives; the Gateway starts from the totals already in it, so `usage()` and
        the budgets count every launch that shared the ledger (a run's workdir), not just this one.

    Raises ConfigError (replay_only without a cache), CacheError (the cache cannot be opened) or UserError (the
    ledger cannot be read or written).
    """

    def __init__(self, config: LLMConfig, cache_path: str | None = None, ledger_path: str | None = None):
        self.config = config
        path = cache_path or config.cache_path
        if config.replay_only and not path:
            raise ConfigError("LLMConfig.replay_only needs a cache_path to replay from")
        self._semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._launch = dict.fromkeys(_LEDGER_FIELDS, 0)
        self._launch.update(cost_usd=0.0, cached_cost_usd=0.0, retries=0, errors=0)
        self._earlier = dict.fromkeys(_LEDGER_FIELDS, 0)  # What the ledger held when this launch began.
        self._earlier.update(cost_usd=0.0, cached_cost_usd=0.0)
        self._warned_cost = False
        self._reached = False  # A reply came back: from now on a refused connection is a server restarting.
        self._sync_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ledger_path = os.fspath(ledger_path) if ledger_path else None
        if self.ledger_path:
            self._open_ledger()
        self._cache = ResponseCache(path) if path else None
        if config.local_model:
            log_dir = os.path.dirname(os.path.abspath(self.ledger_path)) if self.ledger_path else None
            local_server.ensure(config.api_base, config.model, config.local_model, log_dir=log_dir)

    @classmethod
    def for_run(cls, workdir: str) -> Gateway:
        """The gateway of a run directory: the gin-configured `LLMConfig`, with the reply cache
        (`llm_cache.sqlite`) and the usage ledger (`llm_ledger.jsonl`, so budgets count every launch) there."""
        return cls(LLMConfig(), cache_path=os.path.join(workdir, "llm_cache.sqlite"),
                   ledger_path=os.path.join(workdir, "llm_ledger.jsonl"))

    @property
    def structured_outputs(self) -> bool:
        """Whether callers may pass `response_format` with a JSON schema (the provider enforces it)."""
        return self.config.structured_outputs

    async def complete(self, messages: list[dict], *, cache_tag: str | int | None = None,
                       **overrides: Any) -> Completion:
        """Returns the model's reply to OpenAI-style chat `messages`; its text is never empty.

        `overrides` are temperature, max_tokens, top_p or further litellm kwargs for this call. `cache_tag`
        is part of the cache key only (never sent): distinct tags cache distinct samples of one request.
        Raises BudgetExceeded (a clean stop), LLMError (this call failed), and the UserErrors LLMUserError,
        CacheMiss (replay_only) and CacheError (fix something, then rerun).
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
            hit = self._cache.get(key)  # Never an empty reply.
            if hit is not None:
                self._record(cached=True, prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens,
                             cost_usd=hit.cost_usd)
                return Completion(hit.text, hit.prompt_tokens, hit.completion_tokens, hit.cost_usd, True,
                                  hit.model)
            if cfg.replay_only:
                raise CacheMiss(f"replay_only: no cached reply for {cfg.model} request {key[:12]} in "
                                f"{self._cache.path}; set LLMConfig.replay_only = False to call the model")
        async with self._semaphore():
            self._check_budget()
            reply = await self._call(messages, params, extra)
        if self._cache is not None and reply.text:
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
        """Counts so far.

        Cumulative over every launch in the ledger, this one included (without a ledger: this launch):
          calls (replies with content), cached_calls, empty_replies (replies without content, retried),
          prompt_tokens, completion_tokens, cost_usd (spent by calls and empty replies: what the budgets
          check), and cached_prompt_tokens, cached_completion_tokens, cached_cost_usd (what hits would have
          cost).
        This launch only: launch_<each of those>, retries, errors.
        """
        with self._lock:
            totals = {name: self._earlier[name] + self._launch[name] for name in _LEDGER_FIELDS}
            totals.update({f"launch_{name}": self._launch[name] for name in _LEDGER_FIELDS})
            totals.update(retries=self._launch["retries"], errors=self._launch["errors"])
        return totals

    def write_usage(self, path: str) -> None:
        """Appends one JSON line {time, model, ledger, **usage()} to `path` (torn-line safe)."""
        if self.ledger_path and os.path.abspath(path) == os.path.abspath(self.ledger_path):
            raise ValueError(f"write_usage({path!r}) would write into the ledger; use another file")
        record = {"time": time.time(), "model": self.config.model, "ledger": self.ledger_path, **self.usage()}
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            rundir.append_jsonl(path, record)
        except OSError as e:
            raise UserError(f"cannot write LLM usage to {path}: {e.strerror or e}") from None

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
                self._launch[name] += value

    def _open_ledger(self) -> None:
        """Adds the ledger's records to `_earlier`; checks that the ledger can be appended to."""
        path = self.ledger_path
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "a"):
                pass
        except OSError as e:
            raise UserError(f"cannot use LLM usage ledger {path}: {e.strerror or e}") from None
        for number, record in enumerate(rundir.read_jsonl(path), start=1):
            try:
                counts = _ledger_counts(record)
            except (TypeError, ValueError, KeyError):
                raise UserError(f"{path}: record {number} is not an LLM ledger record; fix or remove it "
                                "(removing the ledger forgets the spending the budgets count)") from None
            for name, value in counts.items():
                self._earlier[name] += value

    def _record(self, *, cached: bool, prompt_tokens: int, completion_tokens: int, cost_usd: float,
                empty: bool = False) -> None:
        """Counts one reply (or cache hit) and appends it to the ledger."""
        record = {"time": round(time.time(), 3), "model": self.config.model, "prompt_tokens": int(prompt_tokens),
                  "completion_tokens": int(completion_tokens), "cost_usd": float(cost_usd), "cached": cached}
        if empty:
            record["empty"] = True
        with self._lock:
            if self.ledger_path:
                try:
                    rundir.append_jsonl(self.ledger_path, record)
                except OSError as e:
                    raise UserError(f"cannot append to LLM usage ledger {self.ledger_path}: "
                                    f"{e.strerror or e}") from None
            for name, value in _ledger_counts(record).items():
                self._launch[name] += value

    def _check_budget(self) -> None:
        cfg, usage = self.config, self.usage()
        tokens = usage["prompt_tokens"] + usage["completion_tokens"]
        where = f" (all launches in {self.ledger_path})" if self.ledger_path else ""
        if cfg.budget_tokens and tokens >= cfg.budget_tokens:
            raise BudgetExceeded(f"LLM token budget spent for {cfg.model}: {tokens} >= {cfg.budget_tokens}{where}")
        if cfg.budget_usd and usage["cost_usd"] >= cfg.budget_usd:
            raise BudgetExceeded(f"LLM dollar budget spent for {cfg.model}: "
                                 f"${usage['cost_usd']:.4f} >= ${cfg.budget_usd:.4f}{where}")

    def _api_key(self) -> str | None:
        cfg = self.config
        if cfg.api_key_env is None:
            return _NO_KEY if cfg.api_base else None
        value = os.environ.get(cfg.api_key_env)
        if not value:
            self._add(errors=1)
            raise LLMUserError(f"{cfg.model}: environment variable {cfg.api_key_env} (LLMConfig.api_key_env) is "
                               f"not set; export {cfg.api_key_env}=<your API key> and rerun")
        return value

    async def _call(self, messages: list[dict], params: dict, extra: dict) -> Completion:
        cfg = self.config
        api_key = self._api_key()
        kwargs = dict(model=cfg.model, messages=messages, api_base=cfg.api_base, api_key=api_key,
                      timeout=cfg.timeout_s, num_retries=0, max_retries=0, **params, **extra)
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                self._check_budget()  # Empty replies spend tokens too.
            try:
                response = await asyncio.wait_for(litellm.acompletion(**kwargs), cfg.timeout_s + 10.0)
            except Exception as e:  # litellm maps every provider's errors onto its own classes.
                fatal = self._user_error(e, api_key)
                retryable, retry_after = _classify(e)
                message = _one_line(e, api_key)
            else:
                self._reached = True
                reply = self._account(response)
                if reply.text:
                    return reply
                fatal, retryable, retry_after = None, True, None
                message = "the reply has no content (no choices, or null or empty text)"
            if fatal is not None:
                self._add(errors=1)
                raise LLMUserError(fatal)  # Outside `except`: no chained exception holding the key.
            if not retryable or attempt == cfg.max_retries:
                self._add(errors=1)
                tries = f" after {attempt + 1} attempts" if retryable else ""
                _LOG.warning("LLM call to %s failed%s: %s", cfg.model, tries, message)
                raise LLMError(f"{cfg.model} failed{tries}: {message}",  # Outside `except`: no chained key.
                               rejected=not retryable)
            if retry_after is None:
                delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2**attempt) * random.uniform(0.5, 1.0)
            else:  # Never earlier than asked; spread so that a burst of 429s does not return at once.
                delay = min(cfg.backoff_max_s, retry_after) * random.uniform(1.0, 1.2)
            self._add(retries=1)
            _LOG.info("LLM call to %s: %s; retry %d/%d in %.2fs", cfg.model, message, attempt + 1,
                      cfg.max_retries, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _user_error(self, error: Exception, api_key: str | None) -> str | None:
        """The one-line message for an error only the user can fix (no retry helps), else None."""
        cfg = self.config
        where = _safe_url(cfg.api_base) if cfg.api_base else "the provider"
        text = str(error)
        if any(marker in text for marker in _FATAL_MARKERS):
            return (f"{cfg.model}: no API key; set LLMConfig.api_key_env to the NAME of the environment variable "
                    "holding it")
        connection = _connection_failure(error)
        if connection is not None:
            # Before any reply: a wrong api_base or a server not started. After one: a restart, retried.
            if self._reached:
                return None
            if not cfg.api_base:
                fix = "check the network, or set LLMConfig.api_base"
            elif connection == "connection refused":
                fix = "start the server or fix LLMConfig.api_base"
            else:
                fix = "fix the host in LLMConfig.api_base"
            return f"{cfg.model}: cannot reach {where}: {connection}; {fix}"
        status = getattr(error, "status_code", None)
        detail = _detail(error, api_key)
        if cfg.api_key_env:
            fix_key, key = f"put a valid key in ${cfg.api_key_env}", f"the key in ${cfg.api_key_env}"
        else:
            fix_key = "set LLMConfig.api_key_env to the NAME of an environment variable holding a valid key"
            key = "the key (LLMConfig.api_key_env)"
        if status == 401 or isinstance(error, litellm.AuthenticationError):
            return f"{cfg.model}: {where} refused the API key (HTTP 401: {detail}); {fix_key}"
        if status == 403 or isinstance(error, litellm.PermissionDeniedError):
            return f"{cfg.model}: {where} denied access (HTTP 403: {detail}); check that {key} may use this model"
        if status == 404 or isinstance(error, litellm.NotFoundError):
            return (f"{cfg.model}: not found at {where} (HTTP 404: {detail}); check LLMConfig.model "
                    "('provider/name') and LLMConfig.api_base")
        return None

    def _account(self, response: Any) -> Completion:
        """The reply as a Completion (text "" when it has no content), counted and written to the ledger."""
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
        elif not prompt_tokens and not completion_tokens:
            cost = 0.0
        else:
            try:
                cost = float(litellm.completion_cost(completion_response=response) or 0.0)
            except Exception as e:  # Models missing from litellm's cost map raise.
                cost = 0.0
                if not self._warned_cost:
                    self._warned_cost = True
                    _LOG.warning("no price for %s (%s); counting $0; set LLMConfig.input_usd_per_mtok and "
                                 "output_usd_per_mtok", cfg.model, type(e).__name__)
        self._record(cached=False, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
                     empty=not text)
        model = getattr(response, "model", None) or cfg.model
        return Completion(text, prompt_tokens, completion_tokens, cost, False, model)


def _ledger_counts(record: dict) -> dict[str, float]:
    """The usage counters one ledger record adds to."""
    prompt, completion = int(record["prompt_tokens"]), int(record["completion_tokens"])
    cost = float(record["cost_usd"])
    if record["cached"]:
        return {"cached_calls": 1, "cached_prompt_tokens": prompt, "cached_completion_tokens": completion,
                "cached_cost_usd": cost}
    kind = "empty_replies" if record.get("empty") else "calls"
    return {kind: 1, "prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": cost}


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
    """The error as one bounded line, with `secret` and anything key-like redacted (before truncating)."""
    text = _redact(str(error), secret)
    text = " ".join(text.split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _redact(text: str, secret: str | None) -> str:
    if secret and secret != _NO_KEY:
        text = text.replace(secret, "[REDACTED]")
    return _KEY_LIKE.sub("[REDACTED]", text)


def _detail(error: Exception, secret: str | None, limit: int = 160) -> str:
    """The server's own words, without litellm's "litellm.XError: XError: OpenAIException - " prefixes."""
    text = _one_line(error, secret, limit=10_000)
    text = re.sub(r"^(?:litellm\.\w+:\s*)?(?:\w+Error:\s*)?(?:\w+Exception\s*-\s*)?", "", text)
    text = re.sub(r"^Error code: \d+ - ", "", text).strip() or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _connection_failure(error: BaseException) -> str | None:
    """"connection refused" or "unknown host" when nothing answered at the address, else None."""
    seen, link = set(), error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, socket.gaierror):
            return "unknown host"
        link = link.__cause__ or link.__context__
    text = str(error)
    if "Connection refused" in text or "Connect call failed" in text:
        return "connection refused"
    if any(m in text for m in ("Name or service not known", "nodename nor servname", "getaddrinfo failed")):
        return "unknown host"
    return None


def _safe_url(url: str) -> str:
    """`url` without user:password@ and query string (either may hold a credential)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "LLMConfig.api_base"


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed():
        pending = asyncio.all_tasks(loop)  # litellm's logging worker, if any.
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
