"""The embedded default corpus: the running interpreter's standard library.

Every fresh machine has it, so training works with no download. Each `*.py`
file under `sysconfig.get_paths()["stdlib"]` (excluding site-packages) is one
document, prefixed with the end-of-text token as modded-nanogpt does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import logging

from libs.train import shards
from libs.train import tokenizers

MANIFEST_NAME = "manifest.json"
PREFIX = "stdlib"
_FORMAT_VERSION = 1
_LOG_EVERY_FILES = 250


@dataclasses.dataclass(frozen=True)
class CorpusPaths:
    """Glob patterns of the built shards and the manifest path."""

    train_pattern: str
    val_pattern: str
    manifest: str


def default_data_dir() -> Path:
    """Returns `$JAX_MONOREPO_DATA` if set, else `<repo root>/data`."""
    env = os.environ.get("JAX_MONOREPO_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


def is_validation(key: str, val_fraction: float) -> bool:
    """Deterministic split: sha1(key) mod 1000 < val_fraction * 1000."""
    return _hash_bucket(key) < val_fraction * 1000


def _hash_bucket(key: str) -> int:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % 1000


def split_keys(keys: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Splits keys into (train, val), keeping order.

    If val_fraction > 0 and the hash rule picks no validation key, the key
    with the smallest hash bucket goes to validation (when there are >= 2
    keys), so a small corpus still has a validation split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    val = {k for k in keys if is_validation(k, val_fraction)}
    if not val and val_fraction > 0 and len(keys) >= 2:
        val = {min(keys, key=lambda k: (_hash_bucket(k), k))}
    return [k for k in keys if k not in val], [k for k in keys if k in val]


def stdlib_files(stdlib_dir: Path | None = None) -> list[str]:
    """Relative posix paths of the stdlib's `*.py` files, sorted."""
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if "site-packages" in rel.parts or "dist-packages" in rel.parts:
            continue
        if path.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def read_text(path: Path) -> str | None:
    """Reads a file as UTF-8 (errors replaced); None if unreadable."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        logging.warning("skipping unreadable file %s: %s", path, e)
        return None


def write_documents(
    root: Path,
    rel_paths: Sequence[str],
    tokenizer: tokenizers.Tokenizer,
    writer: shards.ShardWriter,
    split: str,
) -> int:
    """Tokenizes each file as `[eot] + tokens` into `writer`; returns files written."""
    written = 0
    for i, rel in enumerate(rel_paths):
        text = read_text(root / rel)
        if text is None:
            continue
        writer.add([tokenizer.eot_id])
        writer.add(tokenizer.encode_array(text))
        written += 1
        if (i + 1) % _LOG_EVERY_FILES == 0 or i + 1 == len(rel_paths):
            logging.info("%s: %d/%d files tokenized", split, i + 1, len(rel_paths))
    return written


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path):
    """Serializes concurrent builds of the same corpus (e.g. several processes)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _manifest_matches(manifest_path: Path, settings: dict) -> bool:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    if any(manifest.get(k) != v for k, v in settings.items()):
        return False
    listed = manifest.get("train_shards", []) + manifest.get("val_shards", [])
    return all((manifest_path.parent / name).is_file() for name in listed)


def _remove_stale(out_dir: Path, prefix: str) -> None:
    for split in ("train", "val"):
        for path in out_dir.glob(f"{prefix}_{split}_*.bin"):
            path.unlink()


def build_once(
    corpus_dir: str | os.PathLike,
    prefix: str,
    settings: dict,
    writers: dict[str, Callable[[shards.ShardWriter], int]],
    shard_tokens: int,
    force: bool = False,
    unit: str = "files",
) -> CorpusPaths:
    """Writes `<prefix>_{val,train}_*.bin` and a manifest into `corpus_dir` once.

    A manifest holding `settings` (and naming only shards that exist) means the
    build is done and is reused. Otherwise, under a lock file that serialises
    concurrent processes, stale shards are removed and `writers[split](writer)`
    writes each split's documents (val first at shard index 0, then train from
    index 1, as modded-nanogpt names them), returning how many it wrote; the
    manifest records `<split>_<unit>`, `<split>_tokens` and `<split>_shards`
    and is replaced atomically last.
    """
    corpus_dir = Path(corpus_dir)
    manifest_path = corpus_dir / MANIFEST_NAME
    paths = CorpusPaths(
        train_pattern=str(corpus_dir / f"{prefix}_train_*.bin"),
        val_pattern=str(corpus_dir / f"{prefix}_val_*.bin"),
        manifest=str(manifest_path),
    )
    if not force and _manifest_matches(manifest_path, settings):
        logging.info("%s shards up to date: %s", prefix, manifest_path)
        return paths

    with _exclusive_lock(corpus_dir / ".build.lock"):
        # Another process may have finished the build while we waited.
        if not force and _manifest_matches(manifest_path, settings):
            logging.info("%s shards built by another process: %s", prefix, manifest_path)
            return paths
        manifest_path.unlink(missing_ok=True)
        _remove_stale(corpus_dir, prefix)
        manifest = dict(settings)
        for split, first in (("val", 0), ("train", 1)):
            if split not in writers:
                continue
            writer = shards.ShardWriter(corpus_dir, prefix, split, shard_tokens, first)
            count = writers[split](writer)
            names = [p.name for p in writer.close()]
            manifest.update({f"{split}_{unit}": count, f"{split}_tokens": writer.total_tokens,
                             f"{split}_shards": names})
            logging.info("%s %s done: %d %s, %d tokens in %d shards",
                         prefix, split, count, unit, writer.total_tokens, len(names))
        tmp = manifest_path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, manifest_path)
    return paths


def build_stdlib_corpus(
    out_dir: str | os.PathLike | None = None,
    tokenizer: str = "bytes",
    val_fraction: float = 0.05,
    max_files: int | None = None,
    shard_tokens: int = 10_000_000,
    force: bool = False,
) -> CorpusPaths:
    """Builds (or reuses) stdlib shards under `<out_dir>/<tokenizer name>/`.

    Args:
      out_dir: root data directory; defaults to `default_data_dir()`.
      tokenizer: 'bytes', 'gpt2' or 'auto' (resolved before naming the dir).
      val_fraction: fraction of files (by path hash) held out for validation.
      max_files: only use the first `max_files` files (sorted), for tests.
      shard_tokens: maximum tokens per shard file.
      force: rebuild even if a matching manifest exists.

    Returns:
      CorpusPaths with train/val glob patterns and the manifest path.
    """
    tok = tokenizers.get_tokenizer(tokenizer)
    corpus_dir = Path(out_dir or default_data_dir()) / tok.name
    stdlib_dir = sysconfig.get_paths()["stdlib"]
    settings = {
        "format_version": _FORMAT_VERSION,
        "python_version": sys.version.split()[0],
        "stdlib": stdlib_dir,
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "val_fraction": val_fraction,
        "max_files": max_files,
        "shard_tokens": shard_tokens,
    }

    @functools.cache
    def split_files() -> dict[str, list[str]]:  # Listed only when a build is needed.
        files = stdlib_files(Path(stdlib_dir))
        if max_files is not None:
            files = files[:max_files]
        train_files, val_files = split_keys(files, val_fraction)
        if not train_files:
            raise ValueError(f"{stdlib_dir}: no stdlib *.py files for the train split")
        logging.info(
            "building stdlib corpus in %s: %d train files, %d val files, tokenizer %s",
            corpus_dir, len(train_files), len(val_files), tok.name,
        )
        return {"train": train_files, "val": val_files}

    def writer_of(split: str) -> Callable[[shards.ShardWriter], int]:
        return lambda writer: write_documents(Path(stdlib_dir), split_files()[split], tok, writer, split)

    writers = {split: writer_of(split) for split in ("val", "train")}
    return build_once(corpus_dir, PREFIX, settings, writers, shard_tokens, force)
