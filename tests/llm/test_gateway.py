"""The LLM gateway over real HTTP: litellm's OpenAI client against LocalOpenAIServer."""

import asyncio
import json
import logging
import time

import gin
import pytest

from libs.llm.cache import ResponseCache
from libs.llm.gateway import BudgetExceeded, CacheError, CacheMiss, Gateway, LLMConfig, LLMError, LLMUserError
from libs.llm.testing import Fault, estimate_tokens
from libs.train.errors import ConfigError, UserError
from tests.llm.conftest import KEY_ENV, SECRET

# litellm builds pydantic models lazily on its first call; they warn about TypedDict ReadOnly items.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly:UserWarning")


def ask(text: str = "hi there") -> list[dict]:
    return [{"role": "user", "content": text}]


def run(gateway: Gateway, messages=None, **overrides):
    return asyncio.run(gateway.complete(messages or ask(), **overrides))


def test_plain_call_returns_scripted_text_and_tokens(server, make_config):
    server.push("hello world")
    gateway = Gateway(make_config())
    reply = run(gateway, ask("hi there"))
    assert reply.text == "hello world" and not reply.cached and reply.model == "test-model"
    assert reply.prompt_tokens == estimate_tokens("hi there")
    assert reply.completion_tokens == estimate_tokens("hello world")
    usage = gateway.usage()
    assert usage["calls"] == 1 and usage["retries"] == 0 and usage["errors"] == 0
    assert usage["prompt_tokens"] + usage["completion_tokens"] == reply.prompt_tokens + reply.completion_tokens
    request = server.requests[0]
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"  # The key is read at call time.
    assert request["headers"]["x-stainless-retry-count"] == "0"  # The SDK's own retries are off.
    assert request["json"]["model"] == "test-model" and request["json"]["temperature"] == 0.0


def test_overrides_and_extra_are_sent(server, make_config):
    gateway = Gateway(make_config(extra={"seed": 7}))
    run(gateway, temperature=0.7, max_tokens=11, stop=["END"])
    body = server.requests[0]["json"]
    assert (body["temperature"], body["max_tokens"], body["seed"], body["stop"]) == (0.7, 11, 7, ["END"])
    with pytest.raises(ValueError, match="api_key"):
        run(gateway, api_key="nope")


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_status_is_retried(server, make_config, status):
    server.push(Fault.http(status), "recovered")
    gateway = Gateway(make_config())
    assert run(gateway).text == "recovered"
    assert server.num_requests == 2 and gateway.usage()["retries"] == 1 and gateway.usage()["errors"] == 0


def test_retry_after_header_is_respected(server, make_config):
    server.push(Fault.http(429, retry_after=0.05), "ok")
    gateway = Gateway(make_config(backoff_initial_s=5.0, backoff_max_s=10.0))
    start = time.monotonic()
    assert run(gateway).text == "ok"
    assert time.monotonic() - start < 2.0  # 0.05 s from the header, not the 5 s backoff.


def test_slow_reply_times_out_and_is_retried(server, make_config):
    server.push(Fault.slow(2.0), "fast")
    gateway = Gateway(make_config(timeout_s=0.3))
    start = time.monotonic()
    assert run(gateway).text == "fast"
    assert gateway.usage()["retries"] == 1 and time.monotonic() - start < 1.5


def test_persistent_server_error_raises_one_line_after_max_retries(server, make_config, caplog):
    server.responder = lambda request: Fault.http(500, message="boom\ntraceback line")
    gateway = Gateway(make_config(max_retries=2))
    with pytest.raises(LLMError) as info:
        run(gateway)
    message = str(info.value)
    assert "\n" not in message and "openai/test-model" in message and "boom" in message
    assert "after 3 attempts" in message and not isinstance(info.value, UserError)  # Transient: not the user's.
    assert server.num_requests == 3
    assert gateway.usage()["retries"] == 2 and gateway.usage()["errors"] == 1 and gateway.usage()["calls"] == 0


def test_bad_request_is_not_retried(server, make_config):
    server.push(Fault.http(400, message="bad request"))
    gateway = Gateway(make_config())
    with pytest.raises(LLMError, match="bad request") as info:  # This one request is bad: a per-call LLMError.
        run(gateway)
    assert not isinstance(info.value, UserError)
    assert server.num_requests == 1 and gateway.usage()["retries"] == 0 and gateway.usage()["errors"] == 1


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_malformed_replies_are_retried_then_fail_clearly(server, make_config):
    # litellm reports a non-JSON body or non-string content as a 500: transient, so retried.
    server.push(Fault.malformed(), Fault(content=123), "fine")
    gateway = Gateway(make_config())
    assert run(gateway).text == "fine" and gateway.usage()["retries"] == 2
    server.responder = lambda request: Fault.malformed()
    with pytest.raises(LLMError, match="invalid response") as info:
        run(gateway, ask("again"))
    assert "\n" not in str(info.value)


def test_max_in_flight_bounds_concurrency(server, make_config):
    server.delay_s = 0.2

    async def burst(gateway):
        return await asyncio.gather(*(gateway.complete(ask(f"q{i}")) for i in range(10)))

    start = time.monotonic()
    replies = asyncio.run(burst(Gateway(make_config(max_in_flight=3))))
    assert [r.text for r in replies] == [f"echo: q{i}" for i in range(10)]
    assert server.max_concurrent == 3 and time.monotonic() - start >= 0.8  # ceil(10 / 3) waves of 0.2 s.
    server.max_concurrent = 0
    asyncio.run(burst(Gateway(make_config(max_in_flight=10))))
    assert server.max_concurrent > 3  # The server itself does not serialize slow replies.


def test_cache_serves_repeats_and_misses_on_changed_parameters(server, make_config, tmp_path):
    config = make_config(cache_path=str(tmp_path / "llm.db"))
    gateway = Gateway(config)
    first = run(gateway)
    second = run(gateway)
    assert server.num_requests == 1 and second.cached and not first.cached
    assert (second.text, second.prompt_tokens, second.completion_tokens) == (
        first.text, first.prompt_tokens, first.completion_tokens)
    assert gateway.usage()["cached_calls"] == 1 and gateway.usage()["calls"] == 1
    assert Gateway(config).complete_sync(ask()).cached  # A rerun is free.
    assert not run(gateway, temperature=0.5).cached and server.num_requests == 2
    assert not run(gateway, cache_tag="sample-2").cached and server.num_requests == 3
    assert "cache_tag" not in server.requests[-1]["json"]


def test_replay_only_raises_on_miss_and_serves_hits(server, make_config, tmp_path):
    config = make_config(cache_path=str(tmp_path / "llm.db"))
    replay = Gateway(config.__class__(**{**config.__dict__, "replay_only": True}))
    with pytest.raises(CacheMiss, match="openai/test-model") as info:
        run(replay)
    assert "\n" not in str(info.value) and server.num_requests == 0
    run(Gateway(config))
    assert run(replay).cached and server.num_requests == 1
    with pytest.raises(ConfigError, match="cache_path"):
        Gateway(make_config(replay_only=True))


def test_token_budget_stops_the_run(server, make_config, tmp_path):
    gateway = Gateway(make_config(budget_tokens=5, cache_path=str(tmp_path / "llm.db")))
    run(gateway, ask("a prompt long enough to spend the whole budget"))
    with pytest.raises(BudgetExceeded, match="token budget"):
        run(gateway, ask("another"))
    assert server.num_requests == 1
    assert run(gateway, ask("a prompt long enough to spend the whole budget")).cached  # Hits are free.


def test_dollar_budget_with_price_overrides(server, make_config):
    gateway = Gateway(make_config(budget_usd=0.01, input_usd_per_mtok=1000.0, output_usd_per_mtok=2000.0))
    reply = run(gateway, ask("x" * 40))
    assert reply.cost_usd == pytest.approx((reply.prompt_tokens * 1000 + reply.completion_tokens * 2000) / 1e6)
    assert gateway.usage()["cost_usd"] == pytest.approx(reply.cost_usd) and reply.cost_usd >= 0.01
    with pytest.raises(BudgetExceeded, match="dollar budget"):
        run(gateway, ask("next"))
    assert server.num_requests == 1


def test_unpriced_model_costs_zero_with_one_warning(server, make_config, caplog):
    gateway = Gateway(make_config())
    with caplog.at_level(logging.WARNING, logger="libs.llm.gateway"):
        assert run(gateway, ask("one")).cost_usd == 0.0
        run(gateway, ask("two"))
    assert sum("no price for openai/test-model" in r.getMessage() for r in caplog.records) == 1


def test_api_key_never_leaks(server, make_config, tmp_path, caplog):
    # A careless server echoes the key in its error message; the gateway must redact it.
    server.push("cached reply", Fault.http(500), "after retry",
                Fault.http(401, message=f"Incorrect API key provided: {SECRET}"))
    cache_file = tmp_path / "llm.db"
    config = make_config(cache_path=str(cache_file))
    gateway = Gateway(config)
    with caplog.at_level(logging.DEBUG):
        run(gateway, ask("one"))
        run(gateway, ask("one"))
        run(gateway, ask("two"))
        with pytest.raises(LLMUserError) as info:  # A refused key: the user's to fix.
            run(gateway, ask("three"))
    assert "[REDACTED]" in str(info.value) and SECRET not in str(info.value) + repr(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    gateway.write_usage(str(tmp_path / "usage.jsonl"))
    assert SECRET not in (tmp_path / "usage.jsonl").read_text() + json.dumps(gateway.usage())
    assert SECRET not in repr(config) + gin.config_str()
    gateway.close()
    for path in tmp_path.glob("llm.db*"):  # The database, and its WAL while open.
        assert SECRET.encode() not in path.read_bytes()


def test_missing_key_variable_fails_fast(server, make_config, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(LLMUserError, match=KEY_ENV):
        run(Gateway(make_config()))
    assert server.num_requests == 0


def test_api_key_env_must_be_a_name():
    with pytest.raises(ConfigError) as info:
        LLMConfig(model="openai/x", api_key_env="sk-live-abc-123")
    assert "sk-live" not in str(info.value)


def test_corrupt_cache_file_names_the_file(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(CacheError, match="broken.db") as info:
        ResponseCache(str(path))
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_cache_is_shared_between_connections(tmp_path):
    from libs.llm.cache import CachedReply

    path = str(tmp_path / "shared.db")
    with ResponseCache(path) as writer, ResponseCache(path) as reader:  # As two processes would.
        writer.put("k", CachedReply("text", 1, 2, 0.5, "m", 123.0))
        writer.put("k", CachedReply("other", 9, 9, 9.0, "m", 124.0))  # The first reply wins.
        assert reader.get("k") == CachedReply("text", 1, 2, 0.5, "m", 123.0) and reader.get("nope") is None


def test_complete_sync_runs_repeatedly(server, make_config):
    with Gateway(make_config()) as gateway:
        assert gateway.complete_sync(ask("a")).text == "echo: a"
        assert gateway.complete_sync(ask("b")).text == "echo: b"


def test_llm_config_is_gin_configurable(clean_gin):
    gin.parse_config(["LLMConfig.model = 'openai/gin-model'", "LLMConfig.temperature = 0.3",
                      "LLMConfig.extra = {'reasoning_effort': 'low'}"])
    config = LLMConfig()
    assert (config.model, config.temperature, config.extra) == ("openai/gin-model", 0.3,
                                                                 {"reasoning_effort": "low"})


def test_custom_server_without_key_env_never_gets_provider_keys(server, make_config, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    run(Gateway(make_config(api_key_env=None)))
    assert server.requests[0]["headers"]["authorization"] == "Bearer no-key"
