"""Inference tokenizers: the real SmolLM2 GGUF vocabulary (cross-checked against an independent tiktoken
construction split the llama.cpp way), tiny tokenizer.json / tiktoken / GGUF files built here, chat templates,
streaming detokenization, and one-line UserErrors on bad input. Nothing is downloaded."""

import base64
import json
import os

import gguf
import pytest
import regex
import tiktoken

from libs.inference.tokenizer import LLAMA3_PATTERN, Tokenizer
from libs.train.errors import UserError
from tests.inference.conftest import SMOLLM2_GGUF, needs_smollm2


SMOLLM2 = SMOLLM2_GGUF

ROUND_TRIP = [
    "What is the capital of France?",
    "12345",
    "The year  2024 had 366 days; pi ~ 3.14159.",
    "I'm 42 years old, isn't it? WE'LL SEE.",
    "def f(x):\n    return x**2  # square\n\n\n",
    "a  \n\n  b\t\tc   ",
    "   leading and trailing   ",
    "héllo wörld, 世界 你好, Привет, مرحبا 🎉👍🏽",
    "<|im_start|>user\nHi<|im_end|>\n",
    "",
]


@pytest.fixture(autouse=True)
def _tiktoken_cache(tmp_path, monkeypatch):
    """tiktoken copies files it loads into its cache directory: keep that inside the test's tmp_path."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))


@pytest.fixture(scope="module")
def smol_reader():
    return gguf.GGUFReader(SMOLLM2)  # ~3 s: parse once for the module


@pytest.fixture(scope="module")
def smol(smol_reader):
    return Tokenizer.from_gguf(smol_reader)


def _is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _gpt2_unicode_to_byte():
    """GPT-2's byte<->unicode table (openai/gpt-2 encoder.py), written out independently of the module."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _llama_cpp_smollm_pieces(text):
    """llama.cpp's unicode_regex_split for LLAMA_VOCAB_PRE_TYPE_SMOLLM: each regex splits the previous
    pieces, unmatched runs stay pieces."""
    pieces = [text]
    for pattern in (r"\p{N}", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"):
        out = []
        for piece in pieces:
            pos = 0
            for m in regex.finditer(pattern, piece):
                out += [piece[pos:m.start()]] if m.start() > pos else []
                out.append(m.group())
                pos = m.end()
            out += [piece[pos:]] if pos < len(piece) else []
        pieces = out
    return pieces


@pytest.fixture(scope="module")
def smol_reference(smol_reader):
    """The same vocabulary on tiktoken (rank = id; SmolLM2's ids follow its merge order) over llama.cpp-style
    pre-tokenized pieces: an encoder sharing no code with the module's."""
    tokens = smol_reader.fields["tokenizer.ggml.tokens"].contents()
    types = smol_reader.fields["tokenizer.ggml.token_type"].contents()
    table = _gpt2_unicode_to_byte()
    ranks = {bytes(table[c] for c in t): i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 1}
    enc = tiktoken.Encoding("smollm-ref", pat_str=r"[\s\S]+", mergeable_ranks=ranks, special_tokens={})
    return lambda text: [i for piece in _llama_cpp_smollm_pieces(text) for i in enc.encode_ordinary(piece)]


# ------------------------------------------------------------------------------------------- SmolLM2 (GGUF)


@needs_smollm2
def test_smollm2_metadata(smol):
    assert smol.name == "gguf:smollm" and smol.template_source.endswith(".gguf (tokenizer.chat_template)")
    assert smol.vocab_size == 49152
    assert (smol.bos_id, smol.add_bos) == (1, False)
    assert smol.stop_ids == frozenset({2})  # eos = <|im_end|>
    assert smol.special_ids == frozenset(range(17))  # the 17 control tokens


@needs_smollm2
@pytest.mark.parametrize("text", ROUND_TRIP)
def test_smollm2_round_trip(smol, text):
    assert smol.decode(smol.encode(text), skip_special=False) == text


@needs_smollm2
def test_smollm2_known_ids(smol, smol_reference):
    assert smol.encode("<|im_start|>") == [1]
    assert smol.encode("<|im_end|>") == [2]
    assert smol.encode("12345") == [33, 34, 35, 36, 37]  # every digit its own token, no bos
    assert [smol.decode([i]) for i in smol.encode("x 2024")] == ["x", " ", "2", "0", "2", "4"]
    france = smol.encode("What is the capital of France?")
    assert france == [1780, 314, 260, 3575, 282, 4649, 47]
    assert france == smol_reference("What is the capital of France?")
    # Special-token text as plain text when not allowed.
    plain = smol.encode("<|im_start|>", allow_special=False)
    assert 1 not in plain and smol.decode(plain) == "<|im_start|>"


@needs_smollm2
@pytest.mark.parametrize("text", [t for t in ROUND_TRIP if "<|" not in t])
def test_smollm2_matches_independent_construction(smol, smol_reference, text):
    assert smol.encode(text) == smol_reference(text)


@needs_smollm2
def test_smollm2_chat_template(smol):
    text = smol.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    own_system = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    text = smol.apply_chat_template(own_system, add_generation_prompt=False)
    assert "SmolLM" not in text and not text.endswith("<|im_start|>assistant\n")
    ids = smol.encode_chat([{"role": "user", "content": "Hi"}])
    assert ids[0] == 1 and ids[-4:] == smol.encode("<|im_start|>assistant\n")
    assert ids.count(1) == 3 and ids.count(2) == 2  # three turns opened, two closed; no bos added


@needs_smollm2
def test_smollm2_token_bytes(smol):
    tb = smol.token_bytes()
    assert len(tb) == smol.vocab_size
    assert tb[1] == b"<|im_start|>" and tb[33] == b"1"
    for text in ROUND_TRIP:
        assert b"".join(tb[i] for i in smol.encode(text)) == text.encode("utf-8")


@needs_smollm2
def test_smollm2_detokenizer_streams_whole_characters(smol):
    text = "héllo 世界 🎉 <|im_end|> done"
    ids = smol.encode(text)
    assert any(not _is_utf8(smol.token_bytes()[i]) for i in ids)  # some characters span tokens
    for skip in (True, False):
        detok = smol.detokenizer(skip_special=skip)
        parts = [detok.add(i) for i in ids]
        assert all("\ufffd" not in p for p in parts)
        assert "".join(parts) + detok.flush() == smol.decode(ids, skip_special=skip)
    # An unfinished character at the end comes out as U+FFFD on flush, as decode() does.
    cut = smol.encode("世")[:-1]
    detok = smol.detokenizer()
    assert "".join(detok.add(i) for i in cut) == "" and detok.flush() == smol.decode(cut) == "\ufffd"


# ------------------------------------------------------------------------------------------------ from_hf


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    d = tmp_path_factory.mktemp("hf")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    specials = ["<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(["the quick brown fox jumps over the lazy dog", "hello world, héllo wörld 世界"] * 50,
                           trainer)
    hf.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", 0)])
    hf.save(str(d / "tokenizer.json"))
    template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": {"content": "<|bos|>"}, "eos_token": "<|eos|>", "chat_template": template}))
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 3]}))
    return d


def test_from_hf(hf_dir):
    tok = Tokenizer.from_hf(hf_dir)
    assert tok.name == f"hf:{hf_dir.name}"
    assert (tok.bos_id, tok.add_bos) == (0, True)  # add_bos read off the post-processor
    assert tok.stop_ids == frozenset({1, 3}) and tok.special_ids == frozenset({0, 1, 2, 3})
    for text in ["the quick brown fox", "héllo 世界 !?", "  two  spaces\n"]:
        ids = tok.encode(text)
        assert ids[0] == 0 and tok.encode(text, add_bos=False) == ids[1:]
        assert tok.decode(ids) == text
        assert b"".join(tok.token_bytes()[i] for i in ids[1:]) == text.encode("utf-8")
    ids = tok.encode_chat([{"role": "user", "content": "hello"}])
    assert ids[:2] == [0, 2] and ids.count(0) == 1
    assert tok.decode(ids, skip_special=False) == "<|bos|><|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    trained = json.loads((hf_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(tok.token_bytes()) == tok.vocab_size == len(trained)


def test_from_hf_config_add_bos_and_chat_template_file(hf_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_bytes((hf_dir / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "add_bos_token": False}))
    (tmp_path / "chat_template.jinja").write_text("{{ bos_token }}{{ messages[0]['content'] }}")
    tok = Tokenizer.from_hf(tmp_path)
    assert tok.add_bos is False and tok.stop_ids == frozenset({1, 3})  # eos + <|im_end|>
    assert tok.encode_chat([{"role": "user", "content": "hi"}])[0] == 0


# ---------------------------------------------------------------------------------------- from_tiktoken_model

TINY_MERGES = [b"th", b"he", b"the", b" t", b" the", b"in", b"ing", b" a", b"an", b"er", b"on", b"ll", b"llo",
               b"he" + b"llo", b"wo", b"or", b"ld", b" w", b" wor", b" world", b"\n\n", b"  ", b"12", b"123",
               "é".encode(), "世".encode()[:2]]


@pytest.fixture(scope="module")
def tiny_tiktoken(tmp_path_factory):
    ranks = [bytes([b]) for b in range(256)] + list(dict.fromkeys(TINY_MERGES))
    path = tmp_path_factory.mktemp("tiktoken") / "tokenizer.model"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(ranks)))
    return path, len(ranks)


def test_from_tiktoken_model_layout(tiny_tiktoken):
    path, n_base = tiny_tiktoken
    tok = Tokenizer.from_tiktoken_model(path)
    assert tok.vocab_size == n_base + 256
    expect = {"<|begin_of_text|>": 0, "<|end_of_text|>": 1, "<|reserved_special_token_0|>": 2,
              "<|finetune_right_pad_id|>": 4, "<|start_header_id|>": 6, "<|end_header_id|>": 7, "<|eom_id|>": 8,
              "<|eot_id|>": 9, "<|python_tag|>": 10, "<|reserved_special_token_2|>": 12,
              "<|reserved_special_token_245|>": 255}
    for text, k in expect.items():
        assert tok.encode(text, add_bos=False) == [n_base + k], text
    assert (tok.bos_id, tok.add_bos) == (n_base, True)
    assert tok.stop_ids == frozenset({n_base + 1, n_base + 8, n_base + 9})
    assert tok.special_ids == frozenset(range(n_base, n_base + 256))
    tb = tok.token_bytes()
    assert len(tb) == tok.vocab_size and tb[n_base + 9] == b"<|eot_id|>" and tb[ord("a")] == b"a"
    for text in ["the world, hello!", "héllo 世界 12345\n\n  x", "<|eot_id|> as text"]:
        ids = tok.encode(text, add_bos=False, allow_special=False)
        assert tok.decode(ids) == text
        assert b"".join(tb[i] for i in ids) == text.encode()
    # Llama 3's pre-tokenizer: digits in groups of up to three.
    assert [tok.decode([i]) for i in tok.encode("12345", add_bos=False)] == ["123", "4", "5"]


def test_tiktoken_long_runs_are_chunked_as_meta_does(tiny_tiktoken):
    from libs.inference.tokenizer import _TiktokenBackend

    text = "a" * 30_000 + " " * 60_000 + "b"
    chunks = list(_TiktokenBackend._chunks(text))
    assert [len(c) for c in chunks] == [25_000, 30_000, 25_000, 10_001]  # cut every 25k chars of one run
    tok = Tokenizer.from_tiktoken_model(tiny_tiktoken[0])
    assert tok.decode(tok.encode(text)) == text


def test_from_tiktoken_model_chat(tiny_tiktoken):
    path, n_base = tiny_tiktoken
    tok = Tokenizer.from_tiktoken_model(path)
    msgs = [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": "hello world"}]
    text = tok.apply_chat_template(msgs)
    assert text == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nhello world<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = tok.encode_chat(msgs)
    assert ids[0] == n_base and ids.count(n_base) == 1  # bos once: from the template, not added again
    assert ids[-2:] == tok.encode("<|end_header_id|>\n\n", add_bos=False)
    assert tok.decode(ids, skip_special=False) == text
    assert tok.decode(ids) == "system\n\nBe brief.user\n\nhello worldassistant\n\n"


def test_detokenizer_tiktoken(tiny_tiktoken):
    tok = Tokenizer.from_tiktoken_model(tiny_tiktoken[0])
    ids = tok.encode("<|start_header_id|>世界 héllo 🎉<|eot_id|>")
    detok = tok.detokenizer()
    parts = [detok.add(i) for i in ids]
    assert "" in parts and all("\ufffd" not in p for p in parts)
    assert "".join(parts) + detok.flush() == tok.decode(ids) == "世界 héllo 🎉"


# ------------------------------------------------------------------------------------------------ tiny GGUF


def _write_gguf(path, pre, model="gpt2", template=None, add_bos=True):
    """A metadata-only GGUF: byte-level vocabulary of 'a', 'b', ' ', 'ab', digits, 'bab' (no merge makes it),
    two control tokens and a user-defined one."""
    tokens = ["<|end_of_text|>", "<|eot_id|>", "a", "b", "Ġ", "ab", "1", "2", "3", "12", "123", "<tool>", "bab"]
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3, 3] + [1] * 9 + [4, 1])
    w.add_token_merges(["a b", "1 2", "12 3"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if template:
        w.add_chat_template(template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_llama_bpe_pre_tokenizer(tmp_path):
    tok = Tokenizer.from_gguf(_write_gguf(tmp_path / "t.gguf", "llama-bpe"))
    assert tok.name == "gguf:llama-bpe" and tok.stop_ids == frozenset({0, 1})
    assert tok.special_ids == frozenset({0, 1})  # the user-defined <tool> is matched but not special
    assert tok.encode("ab 1231<tool>") == [0, 5, 4, 10, 6, 11]
    assert tok.decode(tok.encode("ab 1231<tool>")) == "ab 1231<tool>"
    text = "Hello WORLD'S 1234567 x\n\n  y  z!?\r\n"
    pieces = [p for p, _ in tok._backend.hf.pre_tokenizer.pre_tokenize_str(text)]
    table = {v: k for k, v in _gpt2_unicode_to_byte().items()}
    assert pieces == ["".join(table[b] for b in p.encode()) for p in regex.findall(LLAMA3_PATTERN, text)]


def test_gguf_smollm_and_gpt2_pre_tokenizers(tmp_path):
    smollm = Tokenizer.from_gguf(_write_gguf(tmp_path / "s.gguf", "smollm"))
    assert smollm.encode("ab 123", add_bos=False) == [5, 4, 6, 7, 8]
    gpt2 = Tokenizer.from_gguf(_write_gguf(tmp_path / "g.gguf", None))
    assert gpt2.name == "gguf:default" and gpt2.encode("ab123", add_bos=False) == [5, 10]
    assert smollm.encode("bab", add_bos=False) == [3, 5]  # merges only


def test_gguf_llama3_defaults_as_llama_cpp(tmp_path):
    llama3 = Tokenizer.from_gguf(_write_gguf(tmp_path / "l.gguf", "llama-bpe", add_bos=None))
    assert llama3.add_bos is True and llama3.encode("bab") == [0, 12]  # ignore_merges: the whole piece
    gpt2 = Tokenizer.from_gguf(_write_gguf(tmp_path / "g.gguf", "gpt-2", add_bos=None))
    assert gpt2.add_bos is False and gpt2.encode("bab") == [3, 5]


def test_gguf_reader_argument(tmp_path):
    reader = gguf.GGUFReader(str(_write_gguf(tmp_path / "t.gguf", "gpt-2", template="{{ messages[0].content }}")))
    tok = Tokenizer.from_gguf(reader)
    assert tok.apply_chat_template([{"role": "user", "content": "ab"}]) == "ab"
    assert tok.encode_chat([{"role": "user", "content": "ab"}]) == [0, 5]


# ------------------------------------------------------------------------------------------- chat templates


def test_template_environment_matches_transformers(tiny_tiktoken):
    tok = Tokenizer.from_tiktoken_model(tiny_tiktoken[0])
    tok.chat_template = ("{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
                         "{{ m | tojson }}|{{ tools | tojson(indent=1) }}|{{ extra }}{% endfor %}"
                         "{% generation %}{{ strftime_now('%Y')|length }}{% endgeneration %}")
    out = tok.apply_chat_template([{"role": "user", "content": "<b>é</b>"}, {"role": "x", "content": ""}],
                                  tools=[1], extra="E")
    assert out == '{"role": "user", "content": "<b>é</b>"}|[\n 1\n]|E4'


def test_template_errors_are_user_errors(tiny_tiktoken):
    tok = Tokenizer.from_tiktoken_model(tiny_tiktoken[0])
    tok.chat_template = "{{ raise_exception('only user and assistant roles') }}"
    with pytest.raises(UserError, match="built-in Llama 3 chat template failed: only user and assistant roles"):
        tok.apply_chat_template([])
    tok.chat_template, tok._template = "{% for %}", None
    with pytest.raises(UserError, match="failed"):
        tok.apply_chat_template([])
    tok.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        tok.apply_chat_template([])


# ----------------------------------------------------------------------------------------------- bad inputs


def _one_line_user_error(fn, match):
    with pytest.raises(UserError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def test_bad_inputs(tmp_path):
    _one_line_user_error(lambda: Tokenizer.from_gguf(tmp_path / "missing.gguf"), "GGUF file not found")
    (tmp_path / "junk.gguf").write_text("not gguf at all\n")
    _one_line_user_error(lambda: Tokenizer.from_gguf(tmp_path / "junk.gguf"), "not a readable GGUF file")
    _one_line_user_error(lambda: Tokenizer.from_gguf(_write_gguf(tmp_path / "u.gguf", "mystery")),
                         "unknown GGUF pre-tokenizer 'mystery'")
    _one_line_user_error(lambda: Tokenizer.from_gguf(_write_gguf(tmp_path / "l.gguf", None, model="llama")),
                         "unsupported GGUF tokenizer model 'llama'")

    _one_line_user_error(lambda: Tokenizer.from_hf(tmp_path / "nodir"), "tokenizer directory not found")
    _one_line_user_error(lambda: Tokenizer.from_hf(tmp_path), "no tokenizer.json")
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": 3}}')
    _one_line_user_error(lambda: Tokenizer.from_hf(tmp_path), "malformed tokenizer.json")

    _one_line_user_error(lambda: Tokenizer.from_tiktoken_model(tmp_path / "none.model"), "not found")
    _one_line_user_error(lambda: Tokenizer.from_tiktoken_model("https://example.com/tokenizer.model"), "not found")
    (tmp_path / "bad.model").write_text("YQ== 0\nthis is not base64 rank\n")
    _one_line_user_error(lambda: Tokenizer.from_tiktoken_model(tmp_path / "bad.model"), "not a tiktoken BPE file")


def test_bad_config_json(hf_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_bytes((hf_dir / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    _one_line_user_error(lambda: Tokenizer.from_hf(tmp_path), "tokenizer_config.json: malformed JSON")


def test_decode_rejects_ids_outside_vocab(tiny_tiktoken):
    tok = Tokenizer.from_tiktoken_model(tiny_tiktoken[0])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.detokenizer().add(-1)
