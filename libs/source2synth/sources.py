"""Source2Synth's table sources: CSV/TSV, Parquet and SQLite files loaded into one SQLite database.

`load_tables` copies the files into a run's own SQLite database (rebuilt only when a source file changes). A
malformed file is reported as `Skipped` and the rest still load. (Documents: `libs.source2synth.documents`.)
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import decimal
import hashlib
import io
import json
import os
import re
import sqlite3
import tempfile
import unicodedata
from collections.abc import Sequence
from typing import Any

from libs.source2synth.sql import INTERNAL_TABLE_PREFIX, open_read_only
from libs.train.errors import UserError

TABLE_FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".sqlite": "sqlite", ".db": "sqlite",
                 ".sqlite3": "sqlite"}
MANIFEST_TABLE = INTERNAL_TABLE_PREFIX + "manifest"
_MANIFEST_VERSION = "1"
# Names that SQLite or sqlglot cannot take unquoted (or that SQLite reads as values, like current_date);
# a sanitised name equal to one of them gets a trailing "_".
SQL_KEYWORDS = frozenset((
    "add", "all", "alter", "and", "as", "autoincrement", "between", "case", "cast", "check", "collate", "commit",
    "constraint", "create", "cross", "cube", "current_date", "current_time", "current_timestamp", "default",
    "deferrable", "delete", "describe", "distinct", "drop", "else", "escape", "except", "exists", "fetch", "for",
    "foreign", "from", "glob", "group", "having", "if", "in", "index", "inner", "insert", "intersect", "into", "is",
    "isnull", "join", "lateral", "like", "limit", "not", "notnull", "null", "offset", "on", "or", "order", "outer",
    "primary", "qualify", "raise", "references", "regexp", "returning", "rollback", "rollup", "select", "set",
    "table", "tablesample", "then", "to", "transaction", "union", "unique", "update", "using", "values", "when",
    "where", "window", "with",
))
_INT_RE = re.compile(r"[+-]?(?:0|[1-9]\d*)")  # zero-padded codes ("02134") stay TEXT
_FLOAT_RE = re.compile(r"[+-]?(?:(?:0|[1-9]\d*)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT64 = 2**63


@dataclasses.dataclass(frozen=True)
class Skipped:
    path: str
    reason: str  # one line, e.g. "line 7 has 3 fields, header has 4"


@dataclasses.dataclass(frozen=True)
class Table:
    name: str  # SQL table name in the run db (sanitised, unique)
    columns: tuple[tuple[str, str], ...]  # (column name, "INTEGER" | "REAL" | "TEXT")
    num_rows: int
    source: str  # the file it came from ("x.sqlite:tablename" for SQLite sources)


class SkipFile(Exception):
    """A source file (or one table of it) that cannot be loaded; the message is the one-line reason."""


@dataclasses.dataclass
class _RawTable:
    source: str
    stem: str
    column_names: list[str]
    column_types: list[str]
    rows: list[tuple]


def sanitize_name(raw: str, prefix: str, fallback: str) -> str:
    """A lower-case SQL identifier [a-z_][a-z0-9_]* for `raw` (accents dropped, other characters as "_")."""
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9_]+", "_", ascii_text.lower()).strip("_") or fallback
    if name[0].isdigit():
        name = prefix + name
    return name + "_" if name in SQL_KEYWORDS else name


def expand_paths(paths: Sequence[str], extensions: Sequence[str]) -> list[str]:
    files, seen = [], set()
    for path in paths:
        if not os.path.exists(path):
            raise UserError(f"{path}: no such file or directory")
        if os.path.isdir(path):
            found = [os.path.join(path, name) for name in sorted(os.listdir(path))
                     if os.path.splitext(name)[1].lower() in extensions and os.path.isfile(os.path.join(path, name))]
        else:
            found = [path]
        for file in found:
            if os.path.abspath(file) not in seen:
                seen.add(os.path.abspath(file))
                files.append(file)
    return files


def _fingerprint(path: str) -> tuple[str, int, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return os.path.abspath(path), os.path.getsize(path), digest.hexdigest()


def _infer_type(values: Sequence[str]) -> str:
    present = [v.strip() for v in values if v.strip()]
    if present and all(_INT_RE.fullmatch(v) and abs(int(v)) < _INT64 for v in present):
        return "INTEGER"
    if present and all(_FLOAT_RE.fullmatch(v) for v in present):
        return "REAL"
    return "TEXT"


def _read_csv(path: str) -> list[_RawTable]:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SkipFile(f"not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if path.lower().endswith(".tsv") else ",")
    header, rows = None, []
    try:
        for fields in reader:
            if not fields:
                continue
            if header is None:
                header = fields
            elif len(fields) != len(header):
                raise SkipFile(f"line {reader.line_num} has {len(fields)} fields, header has {len(header)}")
            else:
                rows.append(fields)
    except csv.Error as e:
        raise SkipFile(f"line {reader.line_num}: {e}") from None
    if header is None:
        raise SkipFile("empty file (no header)")
    if all(_FLOAT_RE.fullmatch(h.strip()) or not h.strip() for h in header):
        raise SkipFile("no header (the first row has no column names)")
    if not rows:
        raise SkipFile("no data rows (header only)")
    types = [_infer_type(column) for column in zip(*rows)]
    convert = {"INTEGER": int, "REAL": float, "TEXT": str}
    values = [tuple(convert[t](v.strip() if t != "TEXT" else v) if v.strip() else None for v, t in zip(row, types))
              for row in rows]
    return [_RawTable(path, file_stem(path), header, types, values)]


def _sql_value(value: Any) -> Any:
    """A value SQLite can store: bool -> 0/1, dates -> ISO text, nested values -> JSON text, bytes -> text."""
    if isinstance(value, (bool, decimal.Decimal)) or (isinstance(value, int) and not -_INT64 <= value < _INT64):
        return float(value) if not isinstance(value, bool) else int(value)
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _read_parquet(path: str) -> list[_RawTable]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise SkipFile(f"unreadable Parquet: {_first_line(e)}") from None
    if table.num_columns == 0 or table.num_rows == 0:
        raise SkipFile("no rows" if table.num_columns else "no columns")
    types, columns = [], []
    for column in table.columns:
        arrow_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
            types.append("INTEGER")
        elif pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
            types.append("REAL")
        else:
            types.append("TEXT")  # strings, dates (ISO text), nested values (JSON text), ...
        columns.append([_sql_value(v) for v in column.to_pylist()])
    return [_RawTable(path, file_stem(path), list(table.column_names), types, list(zip(*columns)))]


def _affinity(declared: str, values: Sequence[Any]) -> str:
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(key in upper for key in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if any(key in upper for key in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    present = [v for v in values if v is not None]  # NUMERIC, BLOB or no type: from the values
    if present and all(isinstance(v, int) for v in present):
        return "INTEGER"
    return "REAL" if present and all(isinstance(v, (int, float)) for v in present) else "TEXT"


def _read_sqlite(path: str, skipped: list[Skipped]) -> list[_RawTable]:
    try:
        connection = open_read_only(path)
    except sqlite3.Error as e:
        raise SkipFile(f"unreadable SQLite: {_first_line(e)}") from None
    tables = []
    try:
        names = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
        for name in names:
            if name.startswith(("sqlite_", INTERNAL_TABLE_PREFIX)):
                continue
            quoted = '"' + name.replace('"', '""') + '"'
            info = connection.execute(f"PRAGMA table_info({quoted})").fetchall()
            rows = [tuple(_sql_value(v) for v in row) for row in connection.execute(f"SELECT * FROM {quoted}")]
            if not rows:
                skipped.append(Skipped(f"{path}:{name}", "no rows"))
                continue
            types = [_affinity(col[2], column) for col, column in zip(info, zip(*rows))]
            tables.append(_RawTable(f"{path}:{name}", name, [col[1] for col in info], types, rows))
    except sqlite3.Error as e:
        raise SkipFile(f"unreadable SQLite: {_first_line(e)}") from None
    finally:
        connection.close()
    if not tables and not any(s.path.startswith(f"{path}:") for s in skipped):
        raise SkipFile("no tables")
    return tables


def file_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _store(connection: sqlite3.Connection, raw: _RawTable, used_names: set[str]) -> Table:
    columns = [sanitize_name(name, "c_", f"column_{i + 1}") for i, name in enumerate(raw.column_names)]
    first_of: dict[str, str] = {}
    for original, name in zip(raw.column_names, columns):
        if name in first_of:
            raise SkipFile(f"columns {first_of[name]!r} and {original!r} both become {name!r}")
        first_of[name] = original
    base = sanitize_name(raw.stem, "t_", "table")
    name, n = base, 1
    while name in used_names:
        n += 1
        name = f"{base}_{n}"
    definition = ", ".join(f'"{c}" {t}' for c, t in zip(columns, raw.column_types))
    connection.execute("SAVEPOINT load_table")
    try:
        connection.execute(f'CREATE TABLE "{name}" ({definition})')
        connection.executemany(f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(columns))})', raw.rows)
    except (sqlite3.Error, OverflowError, ValueError) as e:
        connection.execute("ROLLBACK TO load_table")
        connection.execute("RELEASE load_table")
        raise SkipFile(f"cannot store: {_first_line(e)}") from None
    connection.execute("RELEASE load_table")
    used_names.add(name)
    return Table(name, tuple(zip(columns, raw.column_types)), len(raw.rows), raw.source)


def _describe(connection: sqlite3.Connection, name: str, source: str) -> Table:
    columns = tuple((row[1], row[2]) for row in connection.execute(f'PRAGMA table_info("{name}")'))
    (num_rows,) = connection.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()
    return Table(name, columns, num_rows, source)


def _reuse(db_path: str, files: list[tuple[str, int, str]]) -> tuple[list[Table], list[Skipped]] | None:
    """The (tables, skipped) of an existing db built from exactly these files, else None."""
    if not os.path.isfile(db_path):
        return None
    try:
        connection = open_read_only(db_path)
        try:
            rows = connection.execute(
                f"SELECT kind, path, size, sha256, detail FROM {MANIFEST_TABLE} ORDER BY rowid").fetchall()
            if ("version", None, None, None, _MANIFEST_VERSION) not in rows:
                return None
            if [(p, s, h) for kind, p, s, h, _ in rows if kind == "file"] != files:
                return None
            tables = [_describe(connection, detail, p) for kind, p, _, _, detail in rows if kind == "table"]
            return tables, [Skipped(p, detail) for kind, p, _, _, detail in rows if kind == "skipped"]
        finally:
            connection.close()
    except sqlite3.Error:
        return None


def load_tables(paths: Sequence[str], db_path: str) -> tuple[list[Table], list[Skipped]]:
    """Loads CSV/TSV, Parquet and SQLite files (or directories of them, sorted, non-recursive) into ONE SQLite db
    at db_path; malformed files are Skipped. Reuses db_path as is when its manifest shows the same files
    (path, size, sha256); otherwise builds it in a temp file next to it and renames it into place."""
    files = expand_paths(paths, tuple(TABLE_FORMATS))
    fingerprints = [_fingerprint(file) for file in files]
    reused = _reuse(db_path, fingerprints)
    if reused is not None:
        return reused
    directory = os.path.dirname(os.path.abspath(db_path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=os.path.basename(db_path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        connection = sqlite3.connect(tmp_path, isolation_level=None)
        try:
            tables, skipped = _build(connection, files)
            if not tables:
                reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3]) or "no table files found"
                raise UserError(f"no table could be loaded from {', '.join(map(str, paths))}: {reasons}")
            connection.execute(f"CREATE TABLE {MANIFEST_TABLE} (kind TEXT, path TEXT, size INTEGER, sha256 TEXT, "
                               "detail TEXT)")
            manifest = [("version", None, None, None, _MANIFEST_VERSION)]
            manifest += [("file", p, s, h, None) for p, s, h in fingerprints]
            manifest += [("table", t.source, None, None, t.name) for t in tables]
            manifest += [("skipped", s.path, None, None, s.reason) for s in skipped]
            connection.executemany(f"INSERT INTO {MANIFEST_TABLE} VALUES (?, ?, ?, ?, ?)", manifest)
            connection.execute("COMMIT")
        finally:
            connection.close()
        os.replace(tmp_path, db_path)
    finally:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
    return tables, skipped


def _build(connection: sqlite3.Connection, files: list[str]) -> tuple[list[Table], list[Skipped]]:
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("BEGIN")
    tables: list[Table] = []
    skipped: list[Skipped] = []
    used_names: set[str] = set()
    for file in files:
        kind = TABLE_FORMATS.get(os.path.splitext(file)[1].lower())
        try:
            if kind is None:
                raise SkipFile(f"unsupported extension (expected one of {', '.join(TABLE_FORMATS)})")
            raw_tables = (_read_csv(file) if kind == "csv" else _read_parquet(file) if kind == "parquet"
                          else _read_sqlite(file, skipped))
        except SkipFile as e:
            skipped.append(Skipped(file, str(e)))
            continue
        for raw in raw_tables:
            try:
                tables.append(_store(connection, raw, used_names))
            except SkipFile as e:
                skipped.append(Skipped(raw.source, str(e)))
    return tables, skipped


def table_rows(db_path: str, table: str, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Rows as dicts (column -> value), in rowid order."""
    connection = open_read_only(db_path)
    try:
        if not connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (table,)).fetchone():
            raise UserError(f"{db_path}: no table {table!r}")
        cursor = connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid LIMIT ? OFFSET ?',
                                    (-1 if limit is None else limit, offset))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]
    finally:
        connection.close()
