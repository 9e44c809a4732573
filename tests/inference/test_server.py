"""The OpenAI-compatible server over the continuous-batching engine, over real HTTP: reply shapes and
usage, batching of concurrent clients, stop strings, limits, 400/404/503/504, structured outputs,
and the gateway (litellm) reaching it as a provider. A tiny random Llama with SmolLM2's tokenizer."""

import concurrent.futures
import json
import os
import re
import urllib.error
import urllib.request

import jax
import jax.numpy as jnp
import pytest

import libs.llm  # noqa: F401  (before litellm: its bundled cost map)
from libs.inference import decode, grammar, server
from libs.inference.engine import Engine
from libs.inference.tokenizer import Tokenizer
from libs.models import llama
from libs.train.state import strip_boxes
from tests.inference.conftest import SMOLLM2_GGUF as GGUF
from tests.inference.conftest import needs_smollm2

pytestmark = needs_smollm2

NAME = "tiny-random"


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_gguf(GGUF)


def _served(tokenizer, slots=4, max_len=128, max_queue=16):
    cfg = llama.LlamaConfig(vocab_size=tokenizer.vocab_size, num_layers=2, model_dim=32, num_heads=4,
                            num_kv_heads=2, hidden_dim=64, use_scaled_rope=False, max_seq_len=256,
                            tie_embeddings=True, dtype="float32")
    params = strip_boxes(llama.Llama(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"])
    decoder = decode.Decoder(cfg, params, slots=slots, max_len=max_len, prefill_chunks=(16, 64), attend_step=64)
    return server.ServedModel(NAME, Engine(decoder, tokenizer, max_queue=max_queue), tokenizer,
                              grammar.GrammarCompiler.from_tokenizer(tokenizer), default_max_tokens=16)


@pytest.fixture(scope="module")
def srv(tokenizer):
    with server.Server(_served(tokenizer), timeout_s=60) as s:
        yield s


def _post(base, path, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _chat(content="Hello there", **kw):
    return {"model": NAME, "messages": [{"role": "user", "content": content}], "temperature": 0, **kw}


def test_chat_and_text_completions_have_openai_shape_and_usage(srv, tokenizer):
    status, reply = _post(srv.base_url, "/chat/completions", _chat(max_tokens=5))
    assert status == 200 and reply["object"] == "chat.completion" and reply["model"] == NAME
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    prompt = tokenizer.encode_chat([{"role": "user", "content": "Hello there"}])
    assert reply["usage"]["prompt_tokens"] == len(prompt)
    assert 1 <= reply["usage"]["completion_tokens"] <= 5
    assert reply["usage"]["total_tokens"] == len(prompt) + reply["usage"]["completion_tokens"]
    status, text = _post(srv.base_url, "/completions", {"prompt": "Once upon a time", "max_tokens": 4,
                                                        "temperature": 0})
    assert status == 200 and text["object"] == "text_completion" and isinstance(text["choices"][0]["text"], str)
    assert text["usage"]["prompt_tokens"] == len(tokenizer.encode("Once upon a time"))
    with urllib.request.urlopen(srv.base_url.removesuffix("/v1") + "/health") as health:
        assert json.loads(health.read())["model"] == NAME


def test_greedy_replies_are_deterministic_and_seeds_reproduce(srv):
    a = _post(srv.base_url, "/chat/completions", _chat(max_tokens=8))[1]
    b = _post(srv.base_url, "/chat/completions", _chat(max_tokens=8))[1]
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    sampled = [_post(srv.base_url, "/chat/completions", _chat(max_tokens=8, temperature=1.0, seed=5))[1]
               for _ in range(2)]
    assert sampled[0]["choices"][0]["message"] == sampled[1]["choices"][0]["message"]


def test_concurrent_clients_share_decode_steps(srv):
    engine = srv.served.engine
    before = dict(engine.counts)
    bodies = [_chat(f"Question number {i}", max_tokens=12, temperature=1.0, seed=i) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda b: _post(srv.base_url, "/chat/completions", b), bodies))
    assert all(status == 200 for status, _ in replies)
    steps = engine.counts["decode_steps"] - before.get("decode_steps", 0)
    rows = engine.counts["decode_rows"] - before.get("decode_rows", 0)
    assert rows / steps > 1.5  # several requests decoded in each step (4 slots)


def test_stop_strings_cut_the_reply(srv):
    free = _post(srv.base_url, "/completions", {"prompt": "abc", "max_tokens": 12, "temperature": 0})[1]
    text = free["choices"][0]["text"]
    stop = text[3:5]
    if not stop.strip():
        pytest.skip("the random model's reply has no usable stop string")
    cut = _post(srv.base_url, "/completions", {"prompt": "abc", "max_tokens": 12, "temperature": 0, "stop": [stop]})[1]
    assert cut["choices"][0]["text"] == text[:text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("body, status, message", [
    (_chat(model="other-model"), 404, "not served here"),
    (_chat(stream=True), 400, "stream"),
    (_chat(temperature=5), 400, "temperature"),
    (_chat(max_tokens=0), 400, "max_tokens"),
    ({"model": NAME, "messages": []}, 400, "messages"),
    (_chat(response_format={"type": "xml"}), 400, "response_format"),
    (_chat(guided_regex="("), 400, ""),
])
def test_bad_requests_get_clear_errors(srv, body, status, message):
    got, reply = _post(srv.base_url, "/chat/completions", body)
    assert got == status and message in reply["error"]["message"]


def test_bad_bodies_and_paths(srv):
    assert _post(srv.base_url, "/chat/completions", None, raw=b"{not json")[0] == 400
    assert _post(srv.base_url, "/embeddings", {"input": "x"})[0] == 404
    too_long = _post(srv.base_url, "/completions", {"prompt": "word " * 400, "max_tokens": 4})
    assert too_long[0] == 400 and "context" in too_long[1]["error"]["message"]


def test_structured_outputs_always_parse(srv):
    schema = {"type": "object", "properties": {"state_value_estimation": {"type": "number", "minimum": 0,
                                                                           "maximum": 1}},
              "required": ["state_value_estimation"], "additionalProperties": False}
    for seed in range(4):
        body = _chat("Rate this state.", max_tokens=64, temperature=1.0, seed=seed,
                     response_format={"type": "json_schema", "json_schema": {"name": "v", "schema": schema}})
        status, reply = _post(srv.base_url, "/chat/completions", body)
        assert status == 200
        if reply["choices"][0]["finish_reason"] == "stop":
            value = json.loads(reply["choices"][0]["message"]["content"])["state_value_estimation"]
            assert 0 <= value <= 1
    choice = _post(srv.base_url, "/chat/completions", _chat(guided_choice=["continue", "backtrack"], temperature=1.0))
    assert choice[1]["choices"][0]["message"]["content"] in ("continue", "backtrack")
    regex = _post(srv.base_url, "/completions", {"prompt": "x", "guided_regex": r"[0-9]{3}", "temperature": 1.0})
    assert re.fullmatch(r"[0-9]{3}", regex[1]["choices"][0]["text"])


def test_a_full_queue_answers_503_and_a_slow_request_504(tokenizer):
    with server.Server(_served(tokenizer, slots=1, max_queue=1), timeout_s=60) as s:
        bodies = [_chat(f"q{i}", max_tokens=100, temperature=1.0, seed=i, stop=None) for i in range(6)]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            statuses = [status for status, _ in pool.map(lambda b: _post(s.base_url, "/chat/completions", b), bodies)]
        assert 503 in statuses and 200 in statuses
    with server.Server(_served(tokenizer, slots=1), timeout_s=0.05) as s:
        status, reply = _post(s.base_url, "/chat/completions", _chat(max_tokens=100))
        assert status == 504 and "timed out" in reply["error"]["message"]


def test_the_gateway_reaches_the_server_through_litellm(srv):
    from libs.agents import answers  # pylint: disable=import-outside-toplevel
    from libs.llm.gateway import Gateway, LLMConfig  # pylint: disable=import-outside-toplevel

    config = LLMConfig(model=f"openai/{NAME}", api_base=srv.base_url, max_tokens=48, temperature=0.0,
                       structured_outputs=True, input_usd_per_mtok=0.0, output_usd_per_mtok=0.0)
    with Gateway(config) as gateway:
        schema = answers.response_schema("explore", "countdown", [])
        reply = gateway.complete_sync([{"role": "user", "content": "Explore?"}], response_format=schema)
        assert isinstance(answers.parse_answer("explore", "countdown", reply.text, [], boxed=False), bool)
        assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
        assert gateway.usage()["calls"] == 1


def test_the_serve_binary_rejects_a_bad_model_source(tmp_path):
    from tests.conftest import run_binary  # pylint: disable=import-outside-toplevel

    result = run_binary("tools.serve", f"--model={os.path.join(tmp_path, 'missing.gguf')}", "--port=0")
    assert result.returncode == 2 and "model source" in result.stderr


def test_a_shared_prompt_prefix_is_not_prefilled_again(tokenizer):
    def run(engine, prompt):
        request = engine.submit(prompt, decode.SamplingParams(max_tokens=6))
        assert request.wait(60)
        return request.tokens

    first = tokenizer.encode("A long shared instruction block that every query of a search repeats. " * 3)
    second = first + tokenizer.encode(" Now the state differs.")
    engine = _served(tokenizer).engine.start()
    fresh = _served(tokenizer).engine.start()
    try:
        run(engine, first)
        before = engine.counts["prefill_tokens"]
        reused = run(engine, second)
        assert engine.counts["prefill_tokens"] - before == len(second) - len(first)
        assert reused == run(fresh, second)  # the same reply as with a cold cache
    finally:
        engine.stop()
        fresh.stop()


def test_static_admission_waits_for_the_whole_batch(tokenizer):
    served = _served(tokenizer, slots=2)
    engine = Engine(served.engine.decoder, tokenizer, admission="static").start()
    try:
        long = engine.submit(tokenizer.encode("one"), decode.SamplingParams(max_tokens=30, ignore_eos=True))
        short = engine.submit(tokenizer.encode("two"), decode.SamplingParams(max_tokens=2, ignore_eos=True))
        late = engine.submit(tokenizer.encode("three"), decode.SamplingParams(max_tokens=2, ignore_eos=True))
        assert late.wait(60) and long.wait(60) and short.wait(60)
        assert late.first_token_at >= long.finished_at  # admitted only once the first batch had ended
    finally:
        engine.stop()
    with pytest.raises(ValueError, match="admission"):
        Engine(served.engine.decoder, tokenizer, admission="sometimes")
