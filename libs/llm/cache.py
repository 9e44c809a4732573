"""An on-disk sqlite cache of LLM replies, so reruns are free and reproducible.

A request's key is the sha256 of its canonical JSON (model, api_base, messages, sampling parameters,
extra litellm kwargs; sorted keys). API keys are never part of a request, a key or a row. One connection
per `ResponseCache`, guarded by a lock, serves concurrent asyncio tasks (and threads) of a process; sqlite's
file locking (WAL, busy timeout) serves several processes sharing one file.

A reply without text is never stored, and never served: a row with empty text (written before that rule)
reads as a miss and is replaced by the next reply stored under its key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
from typing import Any

from libs.train.errors import UserError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
  key TEXT PRIMARY KEY,
  model TEXT NOT NULL,
  text TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cost_usd REAL NOT NULL,
  created REAL NOT NULL
)
"""


class CacheError(UserError, RuntimeError):
    """The cache file cannot be opened, read or written: a UserError (one line; the message names the file)."""


class CacheMiss(UserError, RuntimeError):
    """replay_only is set and the request is not in the cache: a UserError (one line)."""


@dataclasses.dataclass(frozen=True)
class CachedReply:
    """One stored reply."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str
    created: float


def request_key(request: dict[str, Any]) -> str:
    """sha256 hex digest of the request's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """A sqlite table of replies keyed by `request_key`.

    Args:
      path: the sqlite file; its folder is created if needed.
      busy_timeout_s: how long to wait for another process's write lock.
    """

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 60.0):
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False,
                                         isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise CacheError(f"cannot open LLM cache {self.path}: {e}") from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(_SCHEMA)
            self._conn.execute("SELECT key, model, text, prompt_tokens, completion_tokens, cost_usd, created "
                               "FROM replies LIMIT 1").fetchall()
        except sqlite3.Error as e:
            self._conn.close()
            raise CacheError(f"LLM cache {self.path} is unreadable (corrupt or not a cache file?): {e}; move it "
                             "away or delete it to start an empty cache") from None

    def get(self, key: str) -> CachedReply | None:
        """The stored reply for `key`, or None (also for a stored reply without text)."""
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT text, prompt_tokens, completion_tokens, cost_usd, model, created "
                    "FROM replies WHERE key = ? AND text != ''", (key,)).fetchone()
        except sqlite3.Error as e:
            raise CacheError(f"cannot read LLM cache {self.path}: {e}") from None
        return None if row is None else CachedReply(*row)

    def put(self, key: str, reply: CachedReply) -> None:
        """Stores `reply` under `key` (the first stored reply with text wins). An empty text is refused."""
        if not isinstance(reply.text, str) or not reply.text:
            raise ValueError("refusing to cache a reply without text")
        row = (key, reply.model, reply.text, int(reply.prompt_tokens), int(reply.completion_tokens),
               float(reply.cost_usd), float(reply.created or time.time()))
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT INTO replies VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "model = excluded.model, text = excluded.text, prompt_tokens = excluded.prompt_tokens, "
                    "completion_tokens = excluded.completion_tokens, cost_usd = excluded.cost_usd, "
                    "created = excluded.created WHERE replies.text = ''", row)
        except sqlite3.Error as e:
            raise CacheError(f"cannot write LLM cache {self.path}: {e}") from None

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
