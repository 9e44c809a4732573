"""libs.inference.grammar on SmolLM2's real 49,152-token vocabulary: random walks that only take allowed
tokens always yield valid outputs, the stop token is allowed exactly when the output may end, and malformed
requests raise GrammarError."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from libs.inference.grammar import ConstraintSpec, GrammarCompiler, GrammarError, constraint_from_request
from tests.inference.conftest import SMOLLM2_GGUF as GGUF
from tests.inference.conftest import needs_smollm2
from tools import bench_grammar

REPO_ROOT = Path(__file__).resolve().parents[2]
STOPS = frozenset({0, 2})  # <|endoftext|>, <|im_end|>

VALUE = {"type": "object", "properties": {"value": {"type": "number", "minimum": 0, "maximum": 1}},
         "required": ["value"]}
EXPLORE = {"type": "object", "properties": {"explore": {"type": "boolean"}}, "required": ["explore"]}
PRIORS = {"type": "object", "properties": {str(i): {"type": "number"} for i in range(4)},
          "required": [str(i) for i in range(4)], "additionalProperties": False}
ACTION = {"type": "object", "properties": {"action": {"enum": ["continue", "backtrack"]},
                                           "confident": {"type": "boolean"}},
          "required": ["action", "confident"], "additionalProperties": False}

needs_vocab = needs_smollm2


@pytest.fixture(scope="module")
def vocab():
    tokens, special, eos = bench_grammar.gguf_vocab(GGUF)
    assert len(tokens) == 49152 and eos == 2 and len(special) == 17 and tokens[2] == b"<|im_end|>"
    return tokens, special


@pytest.fixture(scope="module")
def compiler(vocab):
    tokens, special = vocab
    return GrammarCompiler(tokens, STOPS, special, len(tokens))


def _valid(value, schema) -> bool:
    """The JSON Schema subset these tests use: type, properties, required, additionalProperties, enum,
    minimum, maximum."""
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict) or not set(schema.get("required", [])) <= set(value):
            return False
        props = schema.get("properties", {})
        if schema.get("additionalProperties", True) is False and not set(value) <= set(props):
            return False
        return all(_valid(v, props[k]) for k, v in value.items() if k in props)
    if kind == "number":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and schema.get("minimum", -np.inf) <= value <= schema.get("maximum", np.inf))
    if kind == "boolean":
        return isinstance(value, bool)
    return True


def _json_complete(schema):
    def complete(text: str) -> bool:
        if not text.endswith("}"):  # cheap pre-check: a finished object ends with its brace
            return False
        try:
            return _valid(json.loads(text), schema)
        except ValueError:
            return False
    return complete


def _walk(compiler, tokens, spec, seed, complete, max_tokens=40_000) -> str:
    """Samples uniformly among allowed tokens until a stop token; at every step the stop tokens must be
    allowed exactly when `complete(text so far)`, and once the matcher is finished only they are."""
    rng = np.random.default_rng(seed)
    m = compiler.matcher(spec)
    mask = np.zeros(compiler.vocab_size, np.bool_)
    out = bytearray()
    for _ in range(max_tokens):
        m.fill_mask(mask)
        allowed = np.flatnonzero(mask)
        assert allowed.size, "empty mask"
        try:
            text = out.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        can_end = text is not None and complete(text)
        assert all(mask[s] == can_end for s in STOPS), (seed, bytes(out[-80:]), can_end)
        if m.is_finished():
            assert set(allowed.tolist()) == set(STOPS)
        token = int(rng.choice(allowed))
        assert m.accept(token)
        if token in STOPS:
            assert m.is_finished()
            return text
        out += tokens[token]
    raise AssertionError(f"walk {seed} did not stop within {max_tokens} tokens")


@needs_vocab
@pytest.mark.parametrize("name,schema,walks", [("value", VALUE, 12), ("explore", EXPLORE, 12),
                                               ("priors", PRIORS, 12), ("action", ACTION, 8)])
def test_random_walks_give_valid_json(compiler, vocab, name, schema, walks):
    spec = constraint_from_request({"type": "json_schema",
                                    "json_schema": {"name": name, "schema": schema, "strict": True}})
    for seed in range(walks):
        text = _walk(compiler, vocab[0], spec, seed, _json_complete(schema))
        assert _valid(json.loads(text), schema), text


@needs_vocab
def test_random_walks_regex_and_choice(compiler, vocab):
    pattern = r"\\boxed\{0\.[0-9]\}"
    spec = constraint_from_request(None, regex=pattern)
    seen = set()
    for seed in range(10):
        text = _walk(compiler, vocab[0], spec, seed, lambda t: re.fullmatch(pattern, t) is not None)
        assert re.fullmatch(pattern, text), text
        seen.add(text)
    assert len(seen) > 1
    # "cont" is a prefix of "continue": the stop token is allowed there, yet the grammar is not finished.
    for choices in (["continue", "backtrack"], ["continue", "backtrack", "cont"], ['say "hi"', "a\\b", "naïve"]):
        spec = constraint_from_request(None, choice=choices)
        outs = {_walk(compiler, vocab[0], spec, seed, lambda t, c=choices: t in c) for seed in range(12)}
        assert outs <= set(choices) and len(outs) > 1, outs


@needs_vocab
def test_accept_refuses_disallowed_tokens_and_keeps_state(compiler, vocab):
    tokens = vocab[0]
    m = compiler.matcher(constraint_from_request(None, json_schema=VALUE))
    mask = np.zeros(compiler.vocab_size, np.bool_)
    m.fill_mask(mask)
    # Forced text ('{"value": ') is offered in one tokenization (llguidance's canonical one): here '{"'.
    assert np.flatnonzero(mask).tolist() == [tokens.index(b'{"')]
    for bad in (tokens.index(b"x"), tokens.index(b"{"), 2, 0, 7, -1, compiler.vocab_size + 5):
        assert not m.accept(bad)
    assert m.error() == "" and not m.is_finished()
    for piece in (b'{"', b"value", b'":', b" ", b"1", b"}"):
        assert m.accept(tokens.index(piece)), piece
    assert m.is_finished() and not m.accept(tokens.index(b"}"))
    assert m.accept(2) and m.is_finished()
    # With no mask computed for the step, accept() asks the grammar, which takes any tokenization.
    fresh = compiler.matcher(constraint_from_request(None, json_schema=VALUE))
    assert not fresh.accept(2) and fresh.accept(tokens.index(b"{")) and fresh.accept(tokens.index(b'"'))


@needs_vocab
def test_masks_pad_the_vocabulary_and_check_their_buffer(vocab):
    tokens, special = vocab
    compiler = GrammarCompiler(tokens, frozenset({2}), special, len(tokens) + 64)
    m = compiler.matcher(constraint_from_request({"type": "json_object"}))
    mask = np.ones(len(tokens) + 64, np.bool_)
    m.fill_mask(mask)
    assert not mask[len(tokens):].any() and all(tokens[i].startswith(b"{") for i in np.flatnonzero(mask))
    words = np.zeros((len(tokens) + 31) // 32, np.int32)
    m.fill_bitmask(words)
    assert np.array_equal(np.unpackbits(words.view(np.uint8), bitorder="little")[:len(tokens)].astype(bool),
                          mask[:len(tokens)])
    with pytest.raises(ValueError):
        m.fill_mask(np.zeros(len(tokens), np.bool_))
    with pytest.raises(ValueError):
        m.fill_mask(np.zeros(len(tokens) + 64, np.int32))


@needs_vocab
def test_compiler_caches_and_builds_from_a_tokenizer(vocab):
    tokens, special = vocab

    class Tok:
        vocab_size = len(tokens)
        stop_ids = frozenset({2})
        special_ids = special

        @staticmethod
        def token_bytes():
            return tokens

    compiler = GrammarCompiler.from_tokenizer(Tok(), cache_size=2)
    specs = [constraint_from_request(None, choice=[w]) for w in ("a", "b", "c")]
    for spec in (specs[0], specs[1], specs[0], specs[2]):
        compiler.matcher(spec)
    assert list(compiler._cache) == [specs[0], specs[2]]  # pylint: disable=protected-access
    # Each request gets its own state.
    a, b = compiler.matcher(specs[0]), compiler.matcher(specs[0])
    assert a.accept(tokens.index(b"a")) and a.is_finished() and not b.is_finished()


def test_request_shapes():
    assert constraint_from_request(None) is None
    assert constraint_from_request({"type": "text"}) is None
    obj = constraint_from_request({"type": "json_object"})
    assert obj == ConstraintSpec("json_schema", '{"type":"object"}') == constraint_from_request(
        None, json_schema={"type": "object"})
    a = constraint_from_request({"type": "json_schema", "json_schema": {"name": "v", "schema": VALUE}})
    b = constraint_from_request(None, json_schema=json.dumps(VALUE, indent=2))
    assert a == b and a.kind == "json_schema" and hash(a) == hash(b)
    assert constraint_from_request(None, choice=("x", "y")).kind == "choice"
    assert constraint_from_request({"type": "text"}, regex="[ab]+") == ConstraintSpec("regex", "[ab]+")


@pytest.mark.parametrize("response_format,extra,needle", [
    ("json", {}, "response_format"),
    ({"type": "xml"}, {}, "response_format.type"),
    ({}, {}, "response_format.type"),
    ({"type": "json_schema"}, {}, "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, {}, "schema: missing"),
    ({"type": "json_schema", "json_schema": {"schema": [1]}}, {}, "JSON Schema object"),
    ({"type": "json_schema", "json_schema": {"schema": {"type": "frob"}}}, {}, "schema"),
    (None, {"json_schema": "{not json"}, "guided_json"),
    (None, {"json_schema": False}, "accepts no output"),
    (None, {"regex": "(unclosed"}, "guided_regex"),
    (None, {"regex": ""}, "guided_regex"),
    (None, {"choice": []}, "guided_choice"),
    (None, {"choice": ["ok", 3]}, "guided_choice"),
    ({"type": "json_object"}, {"regex": "a"}, "at most one"),
    (None, {"regex": "a", "choice": ["a"]}, "at most one"),
])
def test_bad_requests_raise_one_line(response_format, extra, needle):
    with pytest.raises(GrammarError) as info:
        constraint_from_request(response_format, **extra)
    message = str(info.value)
    assert needle in message and "\n" not in message, message
    assert isinstance(info.value, ValueError)


def test_bench_rejects_bad_flags_with_one_line():
    for args in (["--engines=xgrammar"], ["--cases=nope"], ["--repeats=0"], ["--no_such_flag=1"]):
        proc = subprocess.run([sys.executable, "-m", "tools.bench_grammar", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2, (args, proc.stderr[-500:])
        assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1, proc.stderr


@needs_vocab
def test_bench_runs_small():
    proc = subprocess.run([sys.executable, "-m", "tools.bench_grammar", "--cases=value,choice", "--repeats=2",
                           "--batch=2"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [ln for ln in proc.stdout.splitlines() if re.match(r"\s*(llguidance|outlines) \|", ln)]
    assert len(rows) == 6 and "server step" in proc.stdout, proc.stdout
