"""Structured outputs as vLLM offers them: next-token masks from llguidance.

    spec = constraint_from_request(body.get("response_format"), regex=body.get("guided_regex"),
                                   choice=body.get("guided_choice"), json_schema=body.get("guided_json"))
    compiler = GrammarCompiler.from_tokenizer(tok)      # once per tokenizer, shared by all requests
    m = compiler.matcher(spec)                          # once per request
    m.fill_mask(row)                                    # each decode step: row[i] = token i is allowed
    m.accept(token_id)                                  # after sampling
    m.is_finished()                                     # the grammar is complete: stop generating

The request shapes are OpenAI's `response_format` ({"type": "json_schema", "json_schema": {"name", "schema",
"strict"}}, {"type": "json_object"}, {"type": "text"}) and vLLM's extras `guided_regex`, `guided_choice` and
`guided_json`. A malformed request raises `GrammarError` with one line (the server answers HTTP 400).

Engine: llguidance (Earley parser over a lazily built lexer DFA, masks computed against a token trie). It
was chosen over outlines-core after `tools/bench_grammar.py` (2-core CPU VM, SmolLM2's 49k vocabulary): it
compiles these grammars in under 1 ms where outlines-core's index build takes 7-63 ms (growing with the
schema), its masks cost 2-6 us a step including inside free-text strings (outlines-core: ~1 us, but ~60 us
in a string), and it honours JSON Schema keywords such as numeric ranges that outlines-core's regex
translation drops.

JSON is generated compact with Python's separators (`{"value": 0.5}`): no free whitespace, which a small
model would otherwise fill with newlines until its token budget runs out. A schema can override this with
llguidance's own `"x-guidance"` key.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from typing import Any, Literal

import llguidance
import numpy as np

_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_ANY_OBJECT = {"type": "object"}
_RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")


class GrammarError(ValueError):
    """A constraint the request asked for is malformed or cannot be compiled (HTTP 400)."""


@dataclasses.dataclass(frozen=True)
class ConstraintSpec:
    """What a request constrains its output to; hashable, the compiler's cache key.

    kind: "json_schema" (source: the schema as canonical JSON text; "json_object" requests become the schema
    {"type": "object"}), "regex" (source: the pattern, matched against the whole output) or "choice"
    (source: a JSON list of the allowed outputs).
    """
    kind: Literal["json_schema", "regex", "choice"]
    source: str

    def grammar(self) -> str:
        """The llguidance grammar text for this spec."""
        if self.kind == "json_schema":
            return llguidance.LLMatcher.grammar_from_json_schema(self.source, defaults=_JSON_OPTIONS)
        if self.kind == "regex":
            return llguidance.LLMatcher.grammar_from_regex(self.source)
        # Lark string literals take JSON escapes; keep non-ASCII as is.
        alternatives = " | ".join(json.dumps(c, ensure_ascii=False) for c in json.loads(self.source))
        return llguidance.LLMatcher.grammar_from_lark(f"start: {alternatives}")


def _first_line(message: str) -> str:
    lines = [ln.strip() for ln in str(message).strip().splitlines() if ln.strip()]
    return lines[0] if lines else "invalid grammar"


def _schema_spec(schema: Any, where: str) -> ConstraintSpec:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise GrammarError(f"{where}: not valid JSON ({e})") from None
    if isinstance(schema, bool):  # JSON Schema's `true` accepts anything; `false` nothing.
        if not schema:
            raise GrammarError(f"{where}: the schema `false` accepts no output")
        schema = {}
    if not isinstance(schema, dict):
        raise GrammarError(f"{where}: expected a JSON Schema object, got {type(schema).__name__}")
    try:
        source = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise GrammarError(f"{where}: not serialisable as JSON ({e})") from None
    return ConstraintSpec("json_schema", source)


def _validate(spec: ConstraintSpec, where: str) -> ConstraintSpec:
    try:
        grammar = spec.grammar()
    except ValueError as e:
        raise GrammarError(f"{where}: {_first_line(str(e))}") from None
    error = llguidance.LLMatcher.validate_grammar(grammar)
    if error:
        raise GrammarError(f"{where}: {_first_line(error)}")
    return spec


def constraint_from_request(response_format: dict | None, *, regex: str | None = None,
                            choice: list[str] | None = None,
                            json_schema: dict | None = None) -> ConstraintSpec | None:
    """The constraint a chat/completions request asks for, or None for free text.

    response_format: OpenAI's field (None or {"type": "text"}: no constraint). regex / choice / json_schema:
    vLLM's guided_regex / guided_choice / guided_json. At most one constraint may be given. Raises
    GrammarError (one line) for a malformed shape, several constraints at once, or a schema or pattern the
    engine rejects.
    """
    found: list[tuple[str, ConstraintSpec]] = []
    if response_format is not None:
        if not isinstance(response_format, dict):
            raise GrammarError(f"response_format: expected an object, got {type(response_format).__name__}")
        kind = response_format.get("type")
        if kind not in _RESPONSE_FORMAT_TYPES:
            raise GrammarError(f"response_format.type: expected one of {list(_RESPONSE_FORMAT_TYPES)}, "
                               f"got {kind!r}")
        if kind == "json_object":
            found.append(("response_format", _schema_spec(_ANY_OBJECT, "response_format")))
        elif kind == "json_schema":
            inner = response_format.get("json_schema")
            if not isinstance(inner, dict):
                raise GrammarError("response_format.json_schema: expected an object with a 'schema' field")
            if "schema" not in inner:
                raise GrammarError("response_format.json_schema.schema: missing")
            name = inner.get("name")
            if name is not None and not isinstance(name, str):
                raise GrammarError("response_format.json_schema.name: expected a string")
            found.append(("response_format.json_schema.schema",
                          _schema_spec(inner["schema"], "response_format.json_schema.schema")))
    if regex is not None:
        if not isinstance(regex, str) or not regex:
            raise GrammarError("guided_regex: expected a non-empty string")
        found.append(("guided_regex", ConstraintSpec("regex", regex)))
    if choice is not None:
        if (not isinstance(choice, (list, tuple)) or not choice
                or not all(isinstance(c, str) and c for c in choice)):
            raise GrammarError("guided_choice: expected a non-empty list of non-empty strings")
        found.append(("guided_choice", ConstraintSpec("choice", json.dumps(list(choice), ensure_ascii=False))))
    if json_schema is not None:
        found.append(("guided_json", _schema_spec(json_schema, "guided_json")))
    if not found:
        return None
    if len(found) > 1:
        raise GrammarError(f"at most one output constraint per request; got {', '.join(w for w, _ in found)}")
    where, spec = found[0]
    return _validate(spec, where)


class Matcher:
    """One request's grammar state. Not thread-safe; one decode loop drives it."""

    def __init__(self, ll: llguidance.LLMatcher, n_tokens: int, vocab_size: int, stop_ids: frozenset[int]):
        self._ll = ll
        self._stop_ids = stop_ids
        self._n = n_tokens
        self._vocab_size = vocab_size
        self._words = np.zeros((1, (n_tokens + 31) // 32), dtype=np.int32)  # reused every step
        self._bytes = self._words.view(np.uint8).reshape(-1)
        self._mask_fresh = False  # self._words holds the mask of the current step

    def fill_bitmask(self, words: np.ndarray) -> None:
        """Writes the mask as packed bits into `words` (int32, contiguous, >= ceil(n_tokens/32) entries):
        bit i % 32 of word i // 32 set = token i allowed. The form a device-side kernel would take."""
        if words.dtype != np.int32 or not words.flags["C_CONTIGUOUS"] or words.size * 32 < self._n:
            raise ValueError(f"need a contiguous int32 array of >= {(self._n + 31) // 32} words")
        self._ll.unsafe_compute_mask_ptr(words.ctypes.data, ((self._n + 31) // 32) * 4)

    def fill_mask(self, out: np.ndarray) -> None:
        """out: bool (vocab_size,); set True where the token may come next (the stop tokens where the
        grammar may end), False elsewhere (ids past the tokenizer's vocabulary included)."""
        if out.shape != (self._vocab_size,) or out.dtype != np.bool_:
            raise ValueError(f"out must be bool ({self._vocab_size},), got {out.dtype} {out.shape}")
        self._ll.unsafe_compute_mask_ptr(self._words.ctypes.data, self._words.nbytes)
        self._mask_fresh = True
        out[:self._n] = np.unpackbits(self._bytes, count=self._n, bitorder="little").view(np.bool_)
        out[self._n:] = False

    def accept(self, token_id: int) -> bool:
        """Advances past `token_id`; False (state unchanged) if it is not allowed here: not in the mask
        fill_mask() gave for this step or, when none was computed, not accepted by the grammar. (The mask
        offers forced text in one canonical tokenization, so it can be stricter than the grammar.)"""
        token_id = int(token_id)
        if not 0 <= token_id < self._n:
            return False
        if self._mask_fresh:
            allowed = bool((int(self._words[0, token_id >> 5]) >> (token_id & 31)) & 1)
        elif token_id in self._stop_ids:  # validate_tokens() never passes a stop token; the parser state does
            allowed = self._ll.is_accepting() and not self._ll.is_error()
        else:
            allowed = self._ll.validate_tokens([token_id]) == 1
        if not allowed or not self._ll.consume_token(token_id):
            return False
        self._mask_fresh = False
        return True

    def is_finished(self) -> bool:
        """True once no further token but a stop token is allowed (or a stop token was accepted); also
        after an engine error (a resource limit hit), which error() then describes."""
        return self._ll.is_stopped()

    def error(self) -> str:
        """The engine's error message ("" when none)."""
        return self._ll.get_error()


class GrammarCompiler:
    """Built once per tokenizer (~0.2 s for a 49k vocabulary) and shared; compiles specs into matchers,
    keeping the last `cache_size` compiled grammars (LRU by spec). Thread-safe."""

    def __init__(self, token_bytes: list[bytes], stop_ids: frozenset[int], special_ids: frozenset[int],
                 vocab_size: int, *, cache_size: int = 64):
        n = len(token_bytes)
        if vocab_size < n:
            raise ValueError(f"vocab_size {vocab_size} < {n} tokens")
        stops = sorted(int(i) for i in stop_ids)
        if not stops or not all(0 <= i < n for i in stops):
            raise ValueError(f"stop_ids must be non-empty ids below {n}, got {stops}")
        specials = sorted({int(i) for i in special_ids} | set(stops))
        self.vocab_size = vocab_size
        self.n_tokens = n
        self.stop_ids = frozenset(stops)
        tokens = [bytes(b) for b in token_bytes]
        # llguidance tokenizes forced text (e.g. the `{` a schema must start with) with a callback; a
        # greedy longest-match over the same vocabulary is all the mask computation needs.
        def vocab(encode):
            return llguidance.TokenizerWrapper(_Vocab(tokens, specials, stops[0], encode))

        bare = llguidance.LLTokenizer(vocab(lambda text: []), eos_token=stops, slices=[])
        self._tokenizer = llguidance.LLTokenizer(
            vocab(lambda text: bare.greedy_tokenize(text.decode("utf-8", "replace"))), eos_token=stops)
        self._cache: collections.OrderedDict[ConstraintSpec, llguidance.LLMatcher] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def from_tokenizer(cls, tok: Any, **kwargs) -> GrammarCompiler:
        """From an inference tokenizer: its `token_bytes()`, `stop_ids`, `special_ids` and `vocab_size`."""
        return cls(tok.token_bytes(), frozenset(tok.stop_ids), frozenset(tok.special_ids), tok.vocab_size,
                   **kwargs)

    def matcher(self, spec: ConstraintSpec) -> Matcher:
        """A fresh matcher for `spec` (compiled once, then copied from the cache). Raises GrammarError."""
        with self._lock:
            proto = self._cache.get(spec)
            if proto is not None:
                self._cache.move_to_end(spec)
        if proto is None:
            try:
                grammar = spec.grammar()
            except ValueError as e:
                raise GrammarError(_first_line(str(e))) from None
            proto = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
            if proto.is_error():
                raise GrammarError(_first_line(proto.get_error()))
            with self._lock:
                self._cache[spec] = proto
                self._cache.move_to_end(spec)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return Matcher(proto.deep_copy(), self.n_tokens, self.vocab_size, self.stop_ids)


class _Vocab:
    """The duck-typed tokenizer llguidance.TokenizerWrapper reads."""

    def __init__(self, tokens: list[bytes], special_ids: list[int], eos: int, encode):
        self.tokens = tokens
        self.special_token_ids = special_ids
        self.eos_token_id = eos
        self.bos_token_id = None
        self._encode = encode

    def __call__(self, text: bytes) -> list[int]:
        return self._encode(text)
