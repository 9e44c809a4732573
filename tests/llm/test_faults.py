"""Runs that survive faults: the usage ledger, one-line user errors, replies without content, no keys on disk."""

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time

import gin
import pytest

from libs.llm.cache import CachedReply, ResponseCache
from libs.llm.gateway import (BudgetExceeded, CacheError, CacheMiss, Gateway, LLMConfig, LLMError,
                              LLMUserError)
from libs.llm.testing import Fault, LocalOpenAIServer, estimate_tokens
from libs.train import launch, rundir
from libs.train.errors import ConfigError, UserError
from tests.conftest import REPO_ROOT
from tests.llm.conftest import KEY_ENV, SECRET

pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly:UserWarning")


def ask(text: str = "hi there") -> list[dict]:
    return [{"role": "user", "content": text}]


def run(gateway: Gateway, messages=None, **overrides):
    return asyncio.run(gateway.complete(messages or ask(), **overrides))


def spend_until_budget(gateway: Gateway, tag: str) -> int:
    """Asks distinct questions until the budget stops the gateway; returns how many were answered."""
    answered = 0
    with pytest.raises(BudgetExceeded):
        for i in range(1000):
            run(gateway, ask(f"{tag} question {i}: " + "x" * 40))
            answered += 1
    return answered


def served_tokens(server: LocalOpenAIServer) -> int:
    """Prompt + completion tokens of every reply the server sent (echo replies)."""
    total = 0
    for request in server.requests:
        content = request["json"]["messages"][-1]["content"]
        total += estimate_tokens(content) + estimate_tokens(f"echo: {content}")
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the ledger: usage and budgets across launches ---------------------------------------------------------


def test_ledger_records_each_call_and_hit_as_it_happens(server, make_config, tmp_path):
    ledger = str(tmp_path / "llm_ledger.jsonl")
    gateway = Gateway(make_config(), cache_path=str(tmp_path / "llm.db"), ledger_path=ledger)
    first = run(gateway, ask("one"))
    assert len(rundir.read_jsonl(ledger)) == 1  # Written at once, not at close: a kill loses nothing done.
    run(gateway, ask("one"))  # A cache hit.
    records = rundir.read_jsonl(ledger)
    assert [r["cached"] for r in records] == [False, True]
    assert set(records[0]) == {"time", "model", "prompt_tokens", "completion_tokens", "cost_usd", "cached"}
    assert records[0]["model"] == "openai/test-model"
    assert (records[0]["prompt_tokens"], records[0]["completion_tokens"]) == (first.prompt_tokens,
                                                                               first.completion_tokens)
    assert records[1]["prompt_tokens"] == first.prompt_tokens  # What the hit would have cost.
    assert abs(records[0]["time"] - time.time()) < 60


def test_usage_is_cumulative_across_launches(server, make_config, tmp_path):
    ledger = str(tmp_path / "llm_ledger.jsonl")
    cache = str(tmp_path / "llm.db")
    first = Gateway(make_config(), cache_path=cache, ledger_path=ledger)
    a = run(first, ask("one"))
    first.close()
    second = Gateway(make_config(), cache_path=cache, ledger_path=ledger)
    assert second.usage()["calls"] == 1 and second.usage()["launch_calls"] == 0  # Starts from the ledger.
    b = run(second, ask("two"))
    run(second, ask("one"))  # A hit on the first launch's reply.
    usage = second.usage()
    assert (usage["calls"], usage["cached_calls"], usage["launch_calls"], usage["launch_cached_calls"]) == (2, 1, 1, 1)
    assert usage["prompt_tokens"] == a.prompt_tokens + b.prompt_tokens
    assert usage["launch_prompt_tokens"] == b.prompt_tokens
    assert usage["cached_prompt_tokens"] == a.prompt_tokens
    second.write_usage(str(tmp_path / "usage.jsonl"))
    record = rundir.read_jsonl(str(tmp_path / "usage.jsonl"))[0]
    assert record["calls"] == 2 and record["launch_calls"] == 1 and record["ledger"] == ledger
    # Without a ledger, cumulative is this launch.
    alone = Gateway(make_config())
    run(alone, ask("three"))
    assert alone.usage()["calls"] == alone.usage()["launch_calls"] == 1


def test_token_budget_holds_across_reruns(make_config, server, tmp_path):
    """Three launches of a run with one budget spend it once, not three times."""
    ledger = str(tmp_path / "llm_ledger.jsonl")
    budget = 400
    answered = [spend_until_budget(Gateway(make_config(budget_tokens=budget), ledger_path=ledger), f"launch{n}")
                for n in range(3)]
    assert answered[0] > 1 and answered[1:] == [0, 0]  # Reruns stop before calling the model.
    one_call = max(estimate_tokens(r["json"]["messages"][-1]["content"]) * 2 + 2 for r in server.requests)
    assert budget <= served_tokens(server) < budget + one_call  # Overshoot: at most the call that crossed it.
    gateway = Gateway(make_config(budget_tokens=budget), ledger_path=ledger)
    assert gateway.usage()["prompt_tokens"] + gateway.usage()["completion_tokens"] == served_tokens(server)


def test_second_gateway_stops_when_the_shared_budget_is_spent(server, make_config, tmp_path):
    ledger = str(tmp_path / "llm_ledger.jsonl")
    first = Gateway(make_config(budget_tokens=200), ledger_path=ledger)
    for i in range(3):
        run(first, ask(f"first {i}: " + "x" * 40))
    spent = first.usage()["prompt_tokens"] + first.usage()["completion_tokens"]
    assert spent < 200
    second = Gateway(make_config(budget_tokens=200), ledger_path=ledger)
    calls = spend_until_budget(second, "second")
    assert server.num_requests == 3 + calls
    total = served_tokens(server)
    assert 200 <= total and total - spent < 200  # The second launch had only what the first left.
    with pytest.raises(BudgetExceeded, match="token budget.*all launches"):
        run(second, ask("more"))


def test_dollar_budget_holds_across_launches(server, make_config, tmp_path):
    ledger = str(tmp_path / "llm_ledger.jsonl")
    config = make_config(budget_usd=0.01, input_usd_per_mtok=1000.0, output_usd_per_mtok=2000.0)
    run(Gateway(config, ledger_path=ledger), ask("x" * 40))
    with pytest.raises(BudgetExceeded, match="dollar budget"):
        run(Gateway(config, ledger_path=ledger), ask("next"))
    assert server.num_requests == 1


def test_ledger_survives_a_torn_last_line(server, make_config, tmp_path):
    ledger = tmp_path / "llm_ledger.jsonl"
    gateway = Gateway(make_config(), ledger_path=str(ledger))
    run(gateway, ask("one"))
    run(gateway, ask("two"))
    with open(ledger, "a") as f:
        f.write('{"time": 1.0, "model": "openai/test-mo')  # A kill in the middle of a write.
    again = Gateway(make_config(), ledger_path=str(ledger))
    assert again.usage()["calls"] == 2
    run(again, ask("three"))
    records = rundir.read_jsonl(str(ledger))
    assert len(records) == 3 and all(not r["cached"] for r in records)  # The torn line was cut, not glued.
    assert Gateway(make_config(), ledger_path=str(ledger)).usage()["calls"] == 3


def test_corrupt_ledger_middle_line_is_one_line_user_error(make_config, tmp_path):
    ledger = tmp_path / "llm_ledger.jsonl"
    ledger.write_text('{"model": "m", "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0, "cached": false}\n'
                      "garbage\n"
                      '{"model": "m", "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0, "cached": false}\n')
    with pytest.raises(UserError, match="line 2") as info:
        Gateway(make_config(), ledger_path=str(ledger))
    assert "\n" not in str(info.value)
    ledger.write_text('{"something": "else"}\n')
    with pytest.raises(UserError, match="not an LLM ledger record"):
        Gateway(make_config(), ledger_path=str(ledger))


def test_a_kill_loses_at_most_the_call_in_flight(server, tmp_path, api_key):
    ledger = tmp_path / "llm_ledger.jsonl"
    script = f"""
import asyncio, os, signal
import libs.llm
from libs.llm.gateway import Gateway, LLMConfig
gateway = Gateway(LLMConfig(model="openai/test-model", api_base={server.base_url!r}, api_key_env={KEY_ENV!r}),
                  ledger_path={str(ledger)!r})
for i in range(3):
    asyncio.run(gateway.complete([{{"role": "user", "content": f"q{{i}}"}}]))
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, KEY_ENV: api_key}, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert len(rundir.read_jsonl(str(ledger))) == 3 == server.num_requests


# --- errors a user can fix: one line, no retries ----------------------------------------------------------


def user_error_cases():
    """name -> (LocalOpenAIServer kwargs, scripted reply, LLMConfig overrides from the server, env change)."""
    return {
        "401": ({"api_key": "sk-the-right-one-000"}, None, {}, None),
        "403": ({}, Fault.http(403, message="you may not use this model"), {}, None),
        "404 unknown model": ({"models": ["other-model"]}, None, {}, None),
        "unset key variable": ({}, None, {}, "unset"),
        "no key at all": ({}, None, {"api_base": None, "api_key_env": None, "model": "openai/test-model"}, "nokey"),
    }


@pytest.mark.parametrize("case", list(user_error_cases()))
def test_user_errors_are_one_line_and_not_retried(case, make_config, monkeypatch, api_key):
    server_kwargs, reply, overrides, env = user_error_cases()[case]
    if env == "unset":
        monkeypatch.delenv(KEY_ENV)
    if env == "nokey":
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with LocalOpenAIServer(**server_kwargs) as server:
        if reply is not None:
            server.push(reply)
        config = make_config(api_base=server.base_url, backoff_initial_s=5.0, backoff_max_s=5.0)
        gateway = Gateway(LLMConfig(**{**config.__dict__, **overrides}))
        start = time.monotonic()
        with pytest.raises(LLMUserError) as info:
            run(gateway)
        assert time.monotonic() - start < 4.0  # No 5 s backoff: not retried.
        assert server.num_requests <= 1
    error = info.value
    message = str(error)
    assert isinstance(error, UserError) and not isinstance(error, LLMError)
    assert "\n" not in message and "openai/test-model" in message and len(message) < 400
    assert SECRET not in message + repr(error) and error.__cause__ is None and error.__context__ is None
    assert gateway.usage()["retries"] == 0 and gateway.usage()["errors"] == 1


def test_user_error_messages_name_the_fix(make_config, monkeypatch):
    with LocalOpenAIServer(api_key="sk-the-right-one-000", models=["test-model"]) as server:
        with pytest.raises(LLMUserError, match=rf"refused the API key.*valid key in \${KEY_ENV}"):
            run(Gateway(make_config(api_base=server.base_url)))
        server.api_key = None
        with pytest.raises(LLMUserError, match=r"openai/nope: not found .*check LLMConfig.model"):
            run(Gateway(make_config(api_base=server.base_url, model="openai/nope")))
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(LLMUserError, match=rf"{KEY_ENV} \(LLMConfig.api_key_env\) is not set; export"):
        run(Gateway(make_config()))


@pytest.mark.parametrize("where", ["refused", "unknown host"])
def test_unreachable_api_base_is_a_user_error(make_config, where):
    api_base = f"http://127.0.0.1:{free_port()}/v1" if where == "refused" else "http://no-such-host.invalid/v1"
    gateway = Gateway(make_config(api_base=api_base, backoff_initial_s=5.0, backoff_max_s=5.0))
    start = time.monotonic()
    with pytest.raises(LLMUserError) as info:
        run(gateway)
    message = str(info.value)
    assert time.monotonic() - start < 4.0 and gateway.usage()["retries"] == 0
    assert "\n" not in message and "openai/test-model" in message and "LLMConfig.api_base" in message
    assert ("connection refused" if where == "refused" else "unknown host") in message


def test_refused_connection_after_a_reply_is_a_restart_and_retried(make_config):
    server = LocalOpenAIServer().start()
    gateway = Gateway(make_config(api_base=server.base_url, max_retries=2))
    assert run(gateway, ask("one")).text == "echo: one"
    server.close()  # The server goes away mid-run (a restart): transient, not the user's config.
    with pytest.raises(LLMError, match="after 3 attempts") as info:
        run(gateway, ask("two"))
    assert not isinstance(info.value, UserError) and gateway.usage()["retries"] == 2


def test_cache_errors_and_misses_are_user_errors(make_config, server, tmp_path):
    corrupt = tmp_path / "llm_cache.sqlite"
    corrupt.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(CacheError) as info:
        Gateway(make_config(), cache_path=str(corrupt))
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    assert "llm_cache.sqlite" in str(info.value) and "delete it" in str(info.value)
    replay = Gateway(make_config(replay_only=True), cache_path=str(tmp_path / "empty.db"))
    with pytest.raises(CacheMiss) as info:
        run(replay)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value) and "openai/test-model" in str(info.value)
    assert server.num_requests == 0


def test_transient_faults_exhausted_are_plain_llm_errors(server, make_config):
    server.responder = lambda request: Fault.http(429)
    gateway = Gateway(make_config(max_retries=1))
    with pytest.raises(LLMError, match="after 2 attempts") as info:
        run(gateway)
    assert not isinstance(info.value, UserError) and server.num_requests == 2


def test_launcher_prints_a_user_error_as_one_line(make_config, tmp_path, capsys, clean_gin):
    with LocalOpenAIServer(api_key="sk-the-right-one-000") as server:
        config = make_config(api_base=server.base_url)

        def main(workdir):
            gateway = Gateway(config, ledger_path=os.path.join(workdir, "llm_ledger.jsonl"))
            return run(gateway).text

        with pytest.raises(SystemExit) as info:
            launch.run(main, [], [], str(tmp_path / "run"))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: openai/test-model") and "401" in err[0]
    for path in (tmp_path / "run").iterdir():
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes()


# --- replies without content ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.null_content(), Fault.empty_content(), Fault.empty_choices()],
                         ids=["null", "empty", "no choices"])
def test_reply_without_content_is_retried_and_counted(server, make_config, tmp_path, fault):
    server.push(fault, "real answer")
    ledger = str(tmp_path / "llm_ledger.jsonl")
    gateway = Gateway(make_config(), ledger_path=ledger)
    reply = run(gateway)
    assert reply.text == "real answer" and server.num_requests == 2
    usage = gateway.usage()
    assert usage["retries"] == 1 and usage["calls"] == 1 and usage["empty_replies"] == 1
    records = rundir.read_jsonl(ledger)
    assert [r.get("empty", False) for r in records] == [True, False]
    assert usage["prompt_tokens"] == 2 * reply.prompt_tokens  # The empty reply's prompt was paid for too.


@pytest.mark.parametrize("fault", [Fault.null_content(), Fault.empty_content(), Fault.empty_choices()],
                         ids=["null", "empty", "no choices"])
def test_reply_without_content_is_never_cached(server, make_config, tmp_path, fault):
    cache = str(tmp_path / "llm.db")
    server.push(fault, fault)
    with pytest.raises(LLMError, match="no content") as info:
        run(Gateway(make_config(max_retries=1), cache_path=cache))
    assert not isinstance(info.value, UserError) and server.num_requests == 2
    again = run(Gateway(make_config(max_retries=1), cache_path=cache))  # A rerun asks the model again...
    assert not again.cached and again.text == "echo: hi there" and server.num_requests == 3
    assert run(Gateway(make_config(), cache_path=cache)).cached  # ...and caches the real reply.
    with sqlite3.connect(cache) as conn:
        assert conn.execute("SELECT COUNT(*) FROM replies WHERE text = ''").fetchone()[0] == 0


def test_cache_refuses_and_ignores_empty_text(tmp_path):
    path = str(tmp_path / "legacy.db")
    with ResponseCache(path) as cache, pytest.raises(ValueError):
        cache.put("k", CachedReply("", 1, 0, 0.0, "m", 1.0))
    with sqlite3.connect(path) as conn:  # A cache written before the rule: an empty reply stored.
        conn.execute("INSERT INTO replies VALUES ('k', 'm', '', 1, 0, 0.0, 1.0)")
    with ResponseCache(path) as cache:
        assert cache.get("k") is None  # Not served...
        cache.put("k", CachedReply("text", 1, 2, 0.5, "m", 2.0))  # ...and replaced by the next reply.
        assert cache.get("k").text == "text"
        cache.put("k", CachedReply("other", 1, 2, 0.5, "m", 3.0))  # A real reply still wins over later ones.
        assert cache.get("k").text == "text"


def test_legacy_empty_cache_row_is_asked_again(server, make_config, tmp_path):
    cache = str(tmp_path / "llm.db")
    run(Gateway(make_config(), cache_path=cache))
    with sqlite3.connect(cache) as conn:
        conn.execute("UPDATE replies SET text = ''")
    reply = run(Gateway(make_config(), cache_path=cache))
    assert not reply.cached and reply.text and server.num_requests == 2


# --- config errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    {"model": ""}, {"api_key_env": "sk-live-abc-123"}, {"api_base": "localhost:8000"}, {"max_in_flight": 0},
    {"max_retries": -1}, {"timeout_s": 0}, {"budget_tokens": -1}, {"budget_usd": -0.5},
    {"backoff_initial_s": -1.0}, {"temperature": -0.1}, {"top_p": 1.5}, {"max_tokens": 0},
    {"input_usd_per_mtok": -1.0}, {"extra": {"api_key": "x"}}, {"extra": ["not", "a", "dict"]},
    {"budget_tokens": float("nan")}, {"api_base": "http://me:pw@host/v1"},
], ids=lambda o: next(iter(o)))
def test_bad_config_values_are_one_line_config_errors(overrides):
    with pytest.raises(ConfigError) as info:
        LLMConfig(**{"model": "openai/x", **overrides})
    message = str(info.value)  # gin appends "\n  In call to configurable ..."; the launcher prints line one.
    assert message.startswith("LLMConfig: ") and "sk-live" not in message and "abc-123" not in message


def test_unbound_model_is_a_config_error(clean_gin):
    with pytest.raises(ConfigError, match="model must be set"):
        LLMConfig()
    gin.parse_config(["LLMConfig.temperature = -1.0", "LLMConfig.model = 'openai/x'"])
    with pytest.raises(ConfigError) as info:  # Through gin, the first line is still the whole story.
        LLMConfig()
    assert str(info.value).splitlines()[0].startswith("LLMConfig: needs temperature >= 0")


# --- nothing key-like on disk --------------------------------------------------------------------------------------


def test_key_never_reaches_ledger_usage_cache_or_errors(server, make_config, tmp_path):
    masked = SECRET[:7] + "*" * 8 + SECRET[-3:]  # How OpenAI echoes a wrong key.
    server.push("cached reply", Fault.http(500, message=f"upstream saw Bearer {SECRET}"), "after retry",
                Fault.http(401, message=f"Incorrect API key provided: {masked}"))
    ledger, usage, cache = tmp_path / "llm_ledger.jsonl", tmp_path / "usage.jsonl", tmp_path / "llm.db"
    gateway = Gateway(make_config(), cache_path=str(cache), ledger_path=str(ledger))
    run(gateway, ask("one"))
    run(gateway, ask("one"))
    run(gateway, ask("two"))
    with pytest.raises(LLMUserError) as info:
        run(gateway, ask("three"))
    message = str(info.value)
    assert SECRET not in message and masked not in message and "[REDACTED]" in message
    gateway.write_usage(str(usage))
    gateway.close()
    for path in [ledger, usage, *tmp_path.glob("llm.db*")]:
        data = path.read_bytes()
        assert SECRET.encode() not in data and masked.encode() not in data, path
    assert len(rundir.read_jsonl(str(ledger))) == 3


def test_api_base_credentials_are_refused_or_not_echoed(make_config):
    with pytest.raises(ConfigError, match="credentials") as info:
        make_config(api_base=f"http://user:{SECRET}@127.0.0.1:8000/v1")
    assert SECRET not in str(info.value)
    port = free_port()
    gateway = Gateway(make_config(api_base=f"http://127.0.0.1:{port}/v1?key={SECRET}"))
    with pytest.raises(LLMUserError) as info:
        run(gateway)
    assert SECRET not in str(info.value) and f"127.0.0.1:{port}/v1" in str(info.value)
