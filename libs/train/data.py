"""Deterministic, multi-process token loader over FineWeb-format shards.

All shards matching a glob pattern (sorted by path) form one token stream.
Step `i` of training consumes `global_batch_size * seq_len` consecutive
tokens of the stream; each process reads only its own rows, so `batch(step)`
is a pure function of the step and resuming reproduces the data exactly.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from libs.train import shards

Batch = tuple[np.ndarray, np.ndarray]


def match_shards(pattern: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expands a glob pattern (or a list of them) to a sorted list of paths."""
    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    paths = sorted(
        {Path(p) for pat in patterns for p in glob.glob(os.path.expanduser(str(pat)))}
    )
    if not paths:
        raise FileNotFoundError(f"no shard files match {pattern!r}")
    return paths


class TokenStream:
    """The concatenation of all shards matching `pattern`, read lazily."""

    def __init__(self, pattern: str | os.PathLike | Sequence[str | os.PathLike]):
        self.pattern = pattern
        self.paths = match_shards(pattern)
        self.shard_sizes = np.array([shards.read_header(p) for p in self.paths], np.int64)
        self.shard_starts = np.concatenate([[0], np.cumsum(self.shard_sizes)])
        self.total_tokens = int(self.shard_starts[-1])
        self._files: dict[int, int] = {}

    def __len__(self) -> int:
        return self.total_tokens

    def _read_shard(self, index: int, local: int, take: int) -> np.ndarray:
        """Tokens [local, local + take) of one shard, read with pread (not a memmap: a file truncated
        underneath a memmap kills the process with SIGBUS; here it is a clear ShardError)."""
        if index not in self._files:
            shards.read_header(self.paths[index])  # Validates the shard before its first use.
            self._files[index] = os.open(self.paths[index], os.O_RDONLY)
        nbytes = take * shards.TOKEN_DTYPE.itemsize
        raw = os.pread(self._files[index], nbytes, shards.HEADER_BYTES + local * shards.TOKEN_DTYPE.itemsize)
        if len(raw) < nbytes:
            raise shards.ShardError(f"{self.paths[index]}: the shard was truncated or replaced while in use "
                                    f"(tokens {local}..{local + take} of {int(self.shard_sizes[index])} unreadable)")
        return np.frombuffer(raw, dtype=shards.TOKEN_DTYPE)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def read(self, offset: int, n: int) -> np.ndarray:
        """Returns a uint16 copy of tokens [offset, offset + n) across shards."""
        if offset < 0 or n < 0 or offset + n > self.total_tokens:
            raise IndexError(
                f"read of [{offset}, {offset + n}) is outside the stream of "
                f"{self.total_tokens} tokens ({self.pattern!r})"
            )
        out = np.empty((n,), dtype=np.uint16)
        shard = int(np.searchsorted(self.shard_starts, offset, side="right")) - 1
        done = 0
        while done < n:
            local = offset + done - int(self.shard_starts[shard])
            take = min(n - done, int(self.shard_sizes[shard]) - local)
            if take > 0:
                out[done:done + take] = self._read_shard(shard, local, take)
                done += take
            shard += 1
        return out


def _local_rows(batch_size: int, process_index: int, process_count: int) -> int:
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index must be in [0, process_count), got {process_index} "
            f"and process_count {process_count}"
        )
    if batch_size <= 0 or batch_size % process_count:
        raise ValueError(
            f"batch size {batch_size} must be positive and divisible by "
            f"process_count {process_count}"
        )
    return batch_size // process_count


def _read_rows(stream: TokenStream, offset: int, rows: int, seq_len: int) -> Batch:
    buf = stream.read(offset, rows * seq_len + 1).astype(np.int32)
    return buf[:-1].reshape(rows, seq_len), buf[1:].reshape(rows, seq_len)


class Loader:
    """Per-process training batches; `batch(step)` depends only on `step`."""

    def __init__(
        self,
        pattern: str | os.PathLike | Sequence[str | os.PathLike],
        seq_len: int,
        global_batch_size: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if seq_len <= 0:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        self.local_batch_size = _local_rows(global_batch_size, process_index, process_count)
        self.stream = TokenStream(pattern)
        self.seq_len = seq_len
        self.global_batch_size = global_batch_size
        self.process_index = process_index
        self.process_count = process_count
        self.tokens_per_step = global_batch_size * seq_len
        self.steps_per_epoch = (self.stream.total_tokens - 1) // self.tokens_per_step
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"corpus {pattern!r} has {self.stream.total_tokens} tokens, too small "
                f"for one batch of {global_batch_size} x {seq_len} "
                f"(needs {self.tokens_per_step + 1})"
            )

    def close(self) -> None:
        self.stream.close()

    def epoch(self, step: int) -> int:
        """Number of full passes over the stream completed before `step`."""
        return step // self.steps_per_epoch

    def batch(self, step: int) -> Batch:
        """Returns int32 (inputs, targets) of shape (local_batch_size, seq_len)."""
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        offset = (step % self.steps_per_epoch) * self.tokens_per_step
        offset += self.process_index * self.local_batch_size * self.seq_len
        return _read_rows(self.stream, offset, self.local_batch_size, self.seq_len)

    def __iter__(self) -> Iterator[Batch]:
        step = 0
        while True:
            yield self.batch(step)
            step += 1


class ValidationBatches(Sequence):
    """Lazy sequence of this process's rows of each validation batch."""

    def __init__(
        self,
        stream: TokenStream,
        seq_len: int,
        batch_size: int,
        num_batches: int,
        process_index: int,
        local_rows: int,
    ):
        self._stream = stream
        self._seq_len = seq_len
        self._tokens_per_batch = batch_size * seq_len
        self._num_batches = num_batches
        self._row_offset = process_index * local_rows * seq_len
        self._local_rows = local_rows

    def __len__(self) -> int:
        return self._num_batches

    def __getitem__(self, index: int) -> Batch:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += self._num_batches
        if not 0 <= index < self._num_batches:
            raise IndexError(f"validation batch {index} out of range [0, {len(self)})")
        offset = index * self._tokens_per_batch + self._row_offset
        return _read_rows(self._stream, offset, self._local_rows, self._seq_len)


def validation_batches(
    pattern: str | os.PathLike | Sequence[str | os.PathLike],
    seq_len: int,
    batch_size: int,
    num_tokens: int | None,
    process_index: int = 0,
    process_count: int = 1,
) -> ValidationBatches:
    """Batches covering the first `num_tokens` tokens of the validation stream.

    `num_tokens` is rounded down to a multiple of batch_size * seq_len (None
    means as much of the stream as fits). Every process gets the same number
    of batches, each holding its rows of the global batch.
    """
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    local_rows = _local_rows(batch_size, process_index, process_count)
    stream = TokenStream(pattern)
    tokens_per_batch = batch_size * seq_len
    available = (stream.total_tokens - 1) // tokens_per_batch
    if num_tokens is None:
        num_batches = available
    else:
        num_batches = num_tokens // tokens_per_batch
        if num_batches == 0:
            raise ValueError(
                f"val num_tokens {num_tokens} is smaller than one batch of "
                f"{batch_size} x {seq_len} = {tokens_per_batch} tokens"
            )
    if num_batches == 0 or num_batches > available:
        raise ValueError(
            f"validation stream {pattern!r} has {stream.total_tokens} tokens, too few "
            f"for {max(num_batches, 1)} batches of {batch_size} x {seq_len} "
            f"(needs {max(num_batches, 1) * tokens_per_batch + 1})"
        )
    return ValidationBatches(stream, seq_len, batch_size, num_batches, process_index, local_rows)
