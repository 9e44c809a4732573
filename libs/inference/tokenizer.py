"""Tokenizers built from a checkpoint's own metadata, through maintained libraries.

    tok = Tokenizer.from_gguf("model.gguf")             # GGUF "gpt2" vocab + merges -> HF `tokenizers` BPE
    tok = Tokenizer.from_hf("hf_dir")   # tokenizer.json (+ tokenizer_config.json, generation_config.json)
    tok = Tokenizer.from_tiktoken_model("tokenizer.model")  # Meta Llama 3 tiktoken file -> tiktoken.Encoding
    ids = tok.encode_chat([{"role": "user", "content": "Hi"}])
    detok = tok.detokenizer(); text = "".join(detok.add(i) for i in ids) + detok.flush()

No BPE is implemented here: GGUF and tokenizer.json vocabularies run on Hugging Face `tokenizers`, Meta's
tiktoken files on `tiktoken`. GGUF pre-tokenizers follow llama.cpp's table in llama-vocab.cpp (by
`tokenizer.ggml.pre`); Meta's special-token layout follows llama-models' models/llama3/tokenizer.py. Chat
templates render as HF transformers renders them (sandboxed jinja2, trim_blocks, lstrip_blocks, loopcontrols,
a `tojson` that does not escape HTML, `raise_exception`, `strftime_now`).

Bad inputs (missing files, unknown formats, malformed files, templates that fail) raise
`libs.train.errors.UserError` with one line.
"""

from __future__ import annotations

import codecs
import datetime
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from libs.train.errors import UserError

# Tokens that end a turn in the common chat formats; each stops generation when the vocabulary has it.
STOP_TOKEN_TEXTS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")

# Llama 3's pre-tokenizer regex (Meta's tokenizer.py `pat_str`; llama.cpp's LLAMA3 pre-type).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Meta's llama3 tokenizer.py: 256 special ids right after the base ranks, these first, then reserved ones.
LLAMA3_NUM_SPECIAL = 256
LLAMA3_NAMED_SPECIALS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>",
)
# tiktoken's limits (Meta's tokenizer.py, openai/tiktoken#195): chunk length and longest (non-)space run.
_TIKTOKEN_MAX_CHARS = 400_000
_TIKTOKEN_MAX_RUN = 25_000
_LONG_RUN = re.compile(rf"\s{{{_TIKTOKEN_MAX_RUN + 1},}}|\S{{{_TIKTOKEN_MAX_RUN + 1},}}")

# Meta's chat format (llama-models chat_format.py; HF's Llama 3 template): bos, then per message
# header + stripped content + <|eot_id|>, then the assistant header as the generation prompt.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# GGUF token types (gguf.TokenType): 3 = control, 4 = user-defined.
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted: the character a byte-level vocabulary uses -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def _byte_level_bytes(piece: str) -> bytes:
    table = _byte_decoder()
    if all(c in table for c in piece):
        return bytes(table[c] for c in piece)
    return piece.encode("utf-8")  # what tokenizers' ByteLevel decoder does with such a piece


_SP_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _sentencepiece_bytes(piece: str) -> bytes:
    m = _SP_BYTE.fullmatch(piece)
    return bytes([int(m.group(1), 16)]) if m else piece.replace("\u2581", " ").encode("utf-8")


class _HFBackend:
    """Encodes/decodes with a Hugging Face `tokenizers.Tokenizer` (bos handled by `Tokenizer`)."""

    def __init__(self, hf):
        self.hf = hf
        self._plain = None  # a copy that reads special-token text as ordinary text

    def encode(self, text: str, allow_special: bool) -> list[int]:
        if allow_special:
            return self.hf.encode(text, add_special_tokens=False).ids
        if self._plain is None:
            import tokenizers

            plain = tokenizers.Tokenizer.from_str(self.hf.to_str())
            plain.encode_special_tokens = True
            self._plain = plain
        return self._plain.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special: bool) -> str:
        return self.hf.decode(ids, skip_special_tokens=skip_special)

    def added_tokens(self) -> dict[int, Any]:
        return self.hf.get_added_tokens_decoder()

    def vocab_size(self) -> int:
        return max(self.hf.get_vocab(with_added_tokens=True).values(), default=-1) + 1  # ids may have gaps

    def token_bytes(self, n: int) -> list[bytes]:
        decoder = json.dumps(json.loads(self.hf.to_str()).get("decoder"))
        if '"ByteLevel"' in decoder:
            convert = _byte_level_bytes
        elif '"ByteFallback"' in decoder or '"Metaspace"' in decoder:
            convert = _sentencepiece_bytes
        else:
            def convert(piece):
                return piece.encode("utf-8")
        added = self.added_tokens()
        out = []
        for i in range(n):
            if i in added:
                out.append(added[i].content.encode("utf-8"))
            else:
                piece = self.hf.id_to_token(i)
                out.append(b"" if piece is None else convert(piece))
        return out


class _TiktokenBackend:
    """Encodes/decodes with a `tiktoken.Encoding`, chunked as Meta's llama3 tokenizer.py does."""

    def __init__(self, enc, special_ids: frozenset[int]):
        self.enc = enc
        self.special_ids = special_ids

    @staticmethod
    def _chunks(text: str) -> Iterable[str]:
        for start in range(0, max(len(text), 1), _TIKTOKEN_MAX_CHARS):
            chunk, cut = text[start:start + _TIKTOKEN_MAX_CHARS], 0
            for m in _LONG_RUN.finditer(chunk):
                for pos in range(m.start() + _TIKTOKEN_MAX_RUN, m.end(), _TIKTOKEN_MAX_RUN):
                    yield chunk[cut:pos]
                    cut = pos
            yield chunk[cut:]

    def encode(self, text: str, allow_special: bool) -> list[int]:
        out = []
        for chunk in self._chunks(text):
            if allow_special:
                out.extend(self.enc.encode(chunk, allowed_special="all"))
            else:
                out.extend(self.enc.encode_ordinary(chunk))
        return out

    def decode(self, ids: list[int], skip_special: bool) -> str:
        if skip_special:
            ids = [i for i in ids if i not in self.special_ids]
        return self.enc.decode(ids)

    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def token_bytes(self, n: int) -> list[bytes]:
        out = []
        for i in range(n):
            try:
                out.append(self.enc.decode_single_token_bytes(i))
            except KeyError:  # a gap in the ranks
                out.append(b"")
        return out


def _generation_extension():
    """transformers' `{% generation %}...{% endgeneration %}` block: renders its body (tracks nothing)."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationBlock(Extension):
        tags = frozenset({"generation"})

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    return GenerationBlock


@functools.cache
def _jinja_env():
    """The environment transformers' `_compile_jinja_template` builds."""
    import jinja2
    import jinja2.ext
    import jinja2.sandbox

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_generation_extension(), jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


class Detokenizer:
    """Streaming detokenization: `add(id)` returns the text new since the last call and holds back an
    incomplete UTF-8 sequence until the bytes that finish it arrive; `flush()` returns what is left
    (an unfinished sequence as U+FFFD). The concatenation equals `Tokenizer.decode` of all ids."""

    def __init__(self, token_bytes: list[bytes], special_ids: frozenset[int], skip_special: bool = True):
        self._bytes = token_bytes
        self._skip = special_ids if skip_special else frozenset()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token_id: int) -> str:
        token_id = int(token_id)
        if not 0 <= token_id < len(self._bytes):
            raise ValueError(f"token id {token_id} is outside the vocabulary [0, {len(self._bytes)})")
        if token_id in self._skip:
            return ""
        return self._utf8.decode(self._bytes[token_id], final=False)

    def flush(self) -> str:
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text


class Tokenizer:
    """A checkpoint's tokenizer: encode/decode, special and stop ids, chat template, raw token bytes."""

    IncrementalDecoder = Detokenizer

    def __init__(self, backend, *, name: str, bos_id: int | None, add_bos: bool, stop_ids: Iterable[int],
                 special_ids: Iterable[int], chat_template: str | None = None, template_source: str = "",
                 bos_token: str | None = None, eos_token: str | None = None):
        self._backend = backend
        self.name = name
        self.vocab_size = int(backend.vocab_size())
        self.bos_id = None if bos_id is None else int(bos_id)
        self.add_bos = bool(add_bos) and self.bos_id is not None
        self.stop_ids = frozenset(int(i) for i in stop_ids if i is not None and 0 <= int(i) < self.vocab_size)
        self.special_ids = frozenset(int(i) for i in special_ids)
        self.chat_template = chat_template
        self.template_source = template_source or name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._token_bytes: list[bytes] | None = None
        self._template = None

    def __repr__(self):
        return (f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, bos_id={self.bos_id}, "
                f"add_bos={self.add_bos}, stop_ids={sorted(self.stop_ids)})")

    # ----------------------------------------------------------------------------------------- encode/decode

    def encode(self, text: str, *, add_bos: bool | None = None, allow_special: bool = True) -> list[int]:
        """Token ids of `text`; special-token text becomes its id unless `allow_special=False`. Prepends
        bos when `add_bos` (default: the checkpoint's setting) unless the text already starts with it."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        ids = list(self._backend.encode(text, allow_special))
        wants_bos = self.add_bos if add_bos is None else add_bos
        if wants_bos and self.bos_id is not None and ids[:1] != [self.bos_id]:
            ids.insert(0, self.bos_id)
        return ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.vocab_size})")
        return self._backend.decode(ids, skip_special)

    def token_bytes(self) -> list[bytes]:
        """Raw bytes of every id (special tokens: their text as UTF-8), for grammar engines."""
        if self._token_bytes is None:
            self._token_bytes = self._backend.token_bytes(self.vocab_size)
        return list(self._token_bytes)

    def detokenizer(self, *, skip_special: bool = True) -> Detokenizer:
        if self._token_bytes is None:
            self.token_bytes()
        return Detokenizer(self._token_bytes, self.special_ids, skip_special)

    # ------------------------------------------------------------------------------------------------- chat

    def apply_chat_template(self, messages: list[dict], *, add_generation_prompt: bool = True, **kwargs) -> str:
        """Renders the chat template as HF transformers does; extra kwargs (tools=..., etc.) reach it."""
        import jinja2

        if not self.chat_template:
            raise UserError(f"{self.template_source}: the tokenizer has no chat template")
        try:
            if self._template is None:
                self._template = _jinja_env().from_string(self.chat_template)
            variables = {"bos_token": self.bos_token or "", "eos_token": self.eos_token or "",
                         "tools": None, "documents": None, **kwargs}
            return self._template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                         **variables)
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise UserError(f"chat template from {self.template_source} failed: {_one_line(e)}") from None

    def encode_chat(self, messages: list[dict], *, add_bos: bool | None = None, **kwargs) -> list[int]:
        """The rendered template's ids (special-token text parsed); bos as `encode`, never twice."""
        return self.encode(self.apply_chat_template(messages, **kwargs), add_bos=add_bos, allow_special=True)

    # ---------------------------------------------------------------------------------------------- loaders

    @classmethod
    def from_gguf(cls, path_or_reader) -> Tokenizer:
        """From a GGUF file's `tokenizer.*` metadata (model "gpt2": byte-level BPE)."""
        import gguf
        import tokenizers
        from tokenizers import AddedToken, decoders, models, pre_tokenizers

        if isinstance(path_or_reader, gguf.GGUFReader):
            reader = path_or_reader
            source = str(getattr(getattr(reader, "data", None), "filename", None) or "GGUF reader")
        else:
            source = os.fspath(path_or_reader)
            if not os.path.isfile(source):
                raise UserError(f"GGUF file not found: {source}")
            try:
                reader = gguf.GGUFReader(source)
            except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
                raise UserError(f"{source}: not a readable GGUF file ({_one_line(e)})") from None

        def field(key, default=None):
            f = reader.fields.get(key)
            if f is None:
                return default
            try:
                return f.contents()
            except (UnicodeDecodeError, ValueError, IndexError) as e:
                raise UserError(f"{source}: unreadable metadata {key} ({_one_line(e)})") from None

        model = field("tokenizer.ggml.model")
        if model is None:
            raise UserError(f"{source}: no tokenizer metadata (tokenizer.ggml.model is missing)")
        if model != "gpt2":
            raise UserError(f"{source}: unsupported GGUF tokenizer model {model!r} (supported: 'gpt2' byte-level BPE)")
        pre = field("tokenizer.ggml.pre") or "default"
        if pre not in _GGUF_PRE:
            raise UserError(f"{source}: unknown GGUF pre-tokenizer {pre!r} "
                            f"(supported: {', '.join(sorted(_GGUF_PRE))})")
        tokens = field("tokenizer.ggml.tokens")
        merges = field("tokenizer.ggml.merges")
        if not tokens or merges is None:
            raise UserError(f"{source}: tokenizer.ggml.tokens or tokenizer.ggml.merges is missing")
        types = field("tokenizer.ggml.token_type") or [1] * len(tokens)
        if len(types) != len(tokens):
            raise UserError(f"{source}: {len(types)} token types for {len(tokens)} tokens")
        build_pre, ignore_merges, default_add_bos = _GGUF_PRE[pre]
        vocab = {t: i for i, t in enumerate(tokens)}
        try:
            pairs = [tuple(m.split(" ", 1)) for m in merges]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("a merge without a space")
            bpe = models.BPE(vocab, pairs, fuse_unk=False, byte_fallback=False, ignore_merges=ignore_merges)
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception on bad vocab/merges
            raise UserError(f"{source}: bad BPE vocabulary/merges ({_one_line(e)})") from None
        hf = tokenizers.Tokenizer(bpe)
        hf.pre_tokenizer = build_pre(pre_tokenizers)
        hf.decoder = decoders.ByteLevel()
        control = [i for i, t in enumerate(types) if t == _GGUF_CONTROL]
        user = [i for i, t in enumerate(types) if t == _GGUF_USER_DEFINED]
        hf.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in control])
        hf.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i in user])

        bos_id, eos_id = field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")
        stops = {eos_id, field("tokenizer.ggml.eot_token_id"), field("tokenizer.ggml.eom_token_id"),
                 *(vocab.get(t) for t in STOP_TOKEN_TEXTS)}

        def text_of(i):
            return tokens[i] if i is not None and 0 <= i < len(tokens) else None

        return cls(_HFBackend(hf), name=f"gguf:{pre}", bos_id=bos_id,
                   add_bos=bool(field("tokenizer.ggml.add_bos_token", default_add_bos)), stop_ids=stops,
                   special_ids=control, chat_template=field("tokenizer.chat_template"),
                   template_source=f"{source} (tokenizer.chat_template)", bos_token=text_of(bos_id),
                   eos_token=text_of(eos_id))

    @classmethod
    def from_hf(cls, directory) -> Tokenizer:
        """From a Hugging Face model directory: tokenizer.json, plus tokenizer_config.json (chat_template,
        bos/eos tokens, add_bos_token) and generation_config.json (eos_token_id) when present."""
        import tokenizers

        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise UserError(f"tokenizer directory not found: {directory}")
        path = os.path.join(directory, "tokenizer.json")
        if not os.path.isfile(path):
            raise UserError(f"{directory}: no tokenizer.json")
        try:
            hf = tokenizers.Tokenizer.from_file(path)
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception on a malformed file
            raise UserError(f"{path}: malformed tokenizer.json ({_one_line(e)})") from None
        config = _read_json(os.path.join(directory, "tokenizer_config.json"))
        generation = _read_json(os.path.join(directory, "generation_config.json"))

        def token_text(key):
            value = config.get(key)
            return value.get("content") if isinstance(value, dict) else value

        bos_token, eos_token = token_text("bos_token"), token_text("eos_token")
        bos_id = hf.token_to_id(bos_token) if bos_token else None
        eos_id = hf.token_to_id(eos_token) if eos_token else None
        if "add_bos_token" in config:
            add_bos = bool(config["add_bos_token"])
        else:  # whatever the tokenizer.json post-processor does
            add_bos = bos_id is not None and hf.encode("a", add_special_tokens=True).ids[:1] == [bos_id]
        gen_eos = generation.get("eos_token_id")
        gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
        stops = {eos_id, *gen_eos, *(hf.token_to_id(t) for t in STOP_TOKEN_TEXTS)}
        template, template_source = config.get("chat_template"), os.path.join(directory, "tokenizer_config.json")
        if isinstance(template, list):  # [{"name": ..., "template": ...}]: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default", next(iter(named.values()), None))
        jinja_file = os.path.join(directory, "chat_template.jinja")
        if not template and os.path.isfile(jinja_file):
            with open(jinja_file, encoding="utf-8") as f:
                template, template_source = f.read(), jinja_file
        specials = [i for i, t in hf.get_added_tokens_decoder().items() if t.special]
        return cls(_HFBackend(hf), name=f"hf:{os.path.basename(os.path.normpath(directory))}", bos_id=bos_id,
                   add_bos=add_bos, stop_ids=stops, special_ids=specials, chat_template=template,
                   template_source=template_source, bos_token=bos_token, eos_token=eos_token)

    @classmethod
    def from_tiktoken_model(cls, path) -> Tokenizer:
        """From Meta's Llama 3 `tokenizer.model` (base64 token + rank per line), with Meta's 256 special
        tokens after the base ranks and the Llama 3 chat format as the template."""
        import tiktoken
        import tiktoken.load

        path = os.fspath(path)
        if "://" in path or not os.path.isfile(path):  # a URL would make tiktoken download
            raise UserError(f"tiktoken model file not found: {path}")
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        try:
            # expected_hash: tiktoken caches files by path; the hash makes a stale cached copy a miss.
            ranks = tiktoken.load.load_tiktoken_bpe(path, expected_hash=digest)
        except ValueError as e:
            raise UserError(f"{path}: not a tiktoken BPE file ({_one_line(e.__cause__ or e)})") from None
        if not ranks:
            raise UserError(f"{path}: not a tiktoken BPE file (no ranks)")
        n_base = len(ranks)
        names = list(LLAMA3_NAMED_SPECIALS) + [
            f"<|reserved_special_token_{2 + i}|>" for i in range(LLAMA3_NUM_SPECIAL - len(LLAMA3_NAMED_SPECIALS))]
        specials = {t: n_base + i for i, t in enumerate(names)}
        try:
            enc = tiktoken.Encoding(name=os.path.basename(path), pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                    special_tokens=specials)
        except Exception as e:  # noqa: BLE001 - tiktoken's core raises plain errors on bad ranks
            raise UserError(f"{path}: bad tiktoken ranks ({_one_line(e)})") from None
        return cls(_TiktokenBackend(enc, frozenset(specials.values())), name=f"tiktoken:{os.path.basename(path)}",
                   bos_id=specials["<|begin_of_text|>"], add_bos=True,
                   stop_ids=[specials[t] for t in STOP_TOKEN_TEXTS if t in specials],
                   special_ids=specials.values(), chat_template=LLAMA3_CHAT_TEMPLATE,
                   template_source="the built-in Llama 3 chat template", bos_token="<|begin_of_text|>",
                   eos_token="<|end_of_text|>")


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: malformed JSON ({_one_line(e)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


# llama.cpp's pre-tokenizers (llama-vocab.cpp) as `tokenizers` pre-tokenizers, by tokenizer.ggml.pre.
def _smollm(pt):  # "\p{N}" isolated, then the GPT-2 regex
    return pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])


def _llama3(pt):
    from tokenizers import Regex

    return pt.Sequence([pt.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
                        pt.ByteLevel(add_prefix_space=False, use_regex=False)])


def _gpt2(pt):
    return pt.ByteLevel(add_prefix_space=False, use_regex=True)


# tokenizer.ggml.pre -> (pre-tokenizer, ignore_merges, add_bos when the metadata does not say), as
# llama.cpp sets them: Llama 3 takes a whole pre-token found in the vocabulary without merging, and adds bos.
_GGUF_PRE = {
    "smollm": (_smollm, False, False),
    "llama-bpe": (_llama3, True, True), "llama3": (_llama3, True, True), "llama-v3": (_llama3, True, True),
    "gpt-2": (_gpt2, False, False), "default": (_gpt2, False, False),
}
