"""FineWeb token-shard format (as used by llm.c and modded-nanogpt).

Layout of one shard file:

  bytes [0, 1024):  256 little-endian int32 header words
                    header[0] = 20240520 (magic)
                    header[1] = 1        (version)
                    header[2] = number of tokens
  bytes [1024, ...): the tokens, little-endian uint16

Shards written here can be read by modded-nanogpt and vice versa.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKEN_ID = 65535

PathLike = str | os.PathLike


class ShardError(ValueError):
    """A shard file is missing, malformed or truncated."""


def _as_token_array(tokens: Iterable[int] | np.ndarray, where: str) -> np.ndarray:
    """Converts tokens to uint16, raising ShardError if any id is out of range."""
    array = np.asarray(tokens if isinstance(tokens, np.ndarray) else list(tokens))
    if array.ndim != 1:
        raise ShardError(f"{where}: tokens must be 1-D, got shape {array.shape}")
    if array.size == 0:
        return np.zeros((0,), dtype=TOKEN_DTYPE)
    if array.dtype == TOKEN_DTYPE:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise ShardError(f"{where}: tokens must be integers, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > MAX_TOKEN_ID:
        raise ShardError(
            f"{where}: token ids must be in [0, {MAX_TOKEN_ID}], got range [{low}, {high}]"
        )
    return array.astype(TOKEN_DTYPE)


def write_shard(path: PathLike, tokens: Iterable[int] | np.ndarray) -> Path:
    """Writes `tokens` to `path` atomically (temp file + os.replace)."""
    path = Path(path)
    array = _as_token_array(tokens, str(path))
    header = np.zeros((HEADER_INTS,), dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, array.size
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp_path, "wb") as f:
            f.write(header.tobytes())
            f.write(array.tobytes())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def read_header(path: PathLike) -> int:
    """Validates the shard at `path` and returns its token count."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise ShardError(f"{path}: shard file does not exist") from None
    except OSError as e:
        raise ShardError(f"{path}: cannot read shard file ({e.strerror})") from None
    if len(raw) < HEADER_BYTES:
        raise ShardError(
            f"{path}: file is {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte header"
        )
    header = np.frombuffer(raw, dtype="<i4")
    if header[0] != MAGIC:
        raise ShardError(
            f"{path}: bad magic number {int(header[0])}, expected {MAGIC} "
            "(not a token shard?)"
        )
    if header[1] != VERSION:
        raise ShardError(
            f"{path}: unsupported shard version {int(header[1])}, expected {VERSION}"
        )
    count = int(header[2])
    if count < 0:
        raise ShardError(f"{path}: header claims a negative token count {count}")
    present = (size - HEADER_BYTES) // TOKEN_DTYPE.itemsize
    if present < count:
        raise ShardError(
            f"{path}: truncated shard: header claims {count} tokens "
            f"but only {present} are present"
        )
    return count


def load_shard(path: PathLike) -> np.ndarray:
    """Returns the shard's tokens as a read-only uint16 memmap (validated)."""
    count = read_header(path)
    if count == 0:
        empty = np.zeros((0,), dtype=TOKEN_DTYPE)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(count,))


def shard_name(prefix: str, split: str, index: int) -> str:
    """Returns the conventional file name, e.g. `fineweb_train_000001.bin`."""
    return f"{prefix}_{split}_{index:06d}.bin"


class ShardWriter:
    """Packs a stream of token arrays into shards of at most `shard_tokens` tokens.

    Documents are split across shard boundaries (as modded-nanogpt does), so
    the concatenation of all shards is exactly the concatenation of `add` calls.
    """

    def __init__(
        self,
        out_dir: PathLike,
        prefix: str,
        split: str,
        shard_tokens: int = 10_000_000,
        first_index: int = 0,
    ):
        if shard_tokens <= 0:
            raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
        self._out_dir = Path(out_dir)
        self._prefix = prefix
        self._split = split
        self._shard_tokens = shard_tokens
        self._next_index = first_index
        self._pending: list[np.ndarray] = []
        self._pending_tokens = 0
        self.paths: list[Path] = []
        self.total_tokens = 0

    def add(self, tokens: Iterable[int] | np.ndarray) -> None:
        """Appends tokens, writing full shards as they fill up."""
        array = _as_token_array(tokens, f"{self._prefix}_{self._split}")
        self.total_tokens += array.size
        while array.size:
            room = self._shard_tokens - self._pending_tokens
            self._pending.append(array[:room])
            self._pending_tokens += min(room, array.size)
            array = array[room:]
            if self._pending_tokens == self._shard_tokens:
                self._flush()

    def _flush(self) -> None:
        if not self._pending_tokens:
            return
        path = self._out_dir / shard_name(self._prefix, self._split, self._next_index)
        write_shard(path, np.concatenate(self._pending))
        self.paths.append(path)
        self._next_index += 1
        self._pending, self._pending_tokens = [], 0

    def close(self) -> list[Path]:
        """Writes the last partial shard and returns all paths written."""
        self._flush()
        return list(self.paths)
