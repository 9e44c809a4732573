"""Generated SQL, checked and run safely against a run's SQLite database.

`validate` parses a model's SQL with sqlglot and checks it against the schema (one SELECT, known tables and
columns); `execute` runs it read-only with a time limit; `format_result` and `results_match` turn results into
answer text and compare them. Every way a query can be unusable is an `SQLRejected` with a reason from REASONS.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import time
import urllib.parse
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify

REASONS = ("sql_parse", "sql_not_select", "sql_unknown_table", "sql_unknown_column", "sql_timeout", "sql_error",
           "empty_result")
INTERNAL_TABLE_PREFIX = "_source2synth_"
_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_PROGRESS_STEPS = 1000
# Nodes that write or change the database; never allowed anywhere in a query.
_FORBIDDEN_NODES = tuple(getattr(exp, name) for name in (
    "Insert", "Update", "Delete", "Merge", "Drop", "Create", "Alter", "Command", "Pragma", "Attach", "Detach",
    "TruncateTable", "Transaction", "Commit", "Rollback") if hasattr(exp, name))


class SQLRejected(Exception):
    """Generated SQL that cannot be used. `reason` is one of REASONS; str(e) is one line of detail."""

    def __init__(self, reason: str, detail: str):
        if reason not in REASONS:
            raise ValueError(f"unknown SQLRejected reason {reason!r}; expected one of {REASONS}")
        self.reason = reason
        self.detail = _one_line(detail)
        super().__init__(self.detail)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def open_read_only(db_path: str) -> sqlite3.Connection:
    """A read-only connection (`mode=ro` URI plus `PRAGMA query_only`)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(db_path)) + "?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    connection.execute("PRAGMA query_only=ON")
    return connection


def read_schema(db_path: str) -> dict[str, dict[str, str]]:
    """{table: {column: declared type}} of the db (tables and views, excluding _source2synth_* tables)."""
    connection = open_read_only(db_path)
    try:
        names = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY rowid")]
        schema = {}
        for name in names:
            if name.startswith((INTERNAL_TABLE_PREFIX, "sqlite_")):
                continue
            quoted = '"' + name.replace('"', '""') + '"'
            schema[name] = {row[1]: row[2] for row in connection.execute(f"PRAGMA table_info({quoted})")}
        return schema
    finally:
        connection.close()


def strip_markup(sql: str) -> str:
    """The SQL without markdown code fences, surrounding whitespace and trailing ';'."""
    fenced = _FENCE_RE.search(sql)
    text = fenced.group(1) if fenced else sql
    text = text.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def validate(sql: str, schema: dict[str, dict[str, str]]) -> str:
    """Checks that `sql` is one SELECT over known tables and columns; returns it stripped. Raises SQLRejected."""
    text = strip_markup(sql)
    if not text:
        raise SQLRejected("sql_parse", "empty SQL")
    try:
        statements = [s for s in sqlglot.parse(text, read="sqlite") if s is not None]
    except SqlglotError as e:
        raise SQLRejected("sql_parse", str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if len(statements) != 1:
        raise SQLRejected("sql_not_select", f"expected one statement, got {len(statements)}")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise SQLRejected("sql_not_select", f"not a SELECT: {type(statement).__name__.upper()} statement")
    forbidden = next((node for node in statement.walk() if isinstance(node, _FORBIDDEN_NODES)), None)
    if forbidden is not None:
        raise SQLRejected("sql_not_select", f"{type(forbidden).__name__.upper()} inside the query")

    lower_schema = {table.lower(): {col.lower(): typ for col, typ in cols.items()} for table, cols in schema.items()}
    _check_tables(statement, lower_schema)
    _check_columns(statement, lower_schema)
    return text


def _check_tables(statement: exp.Expr, schema: dict[str, dict[str, str]]) -> None:
    cte_names = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):  # a table-valued function such as json_each(...)
            continue
        name = table.name.lower()
        if table.db and table.db.lower() not in ("main", ""):
            raise SQLRejected("sql_unknown_table", f"unknown table {table.db}.{table.name}")
        if name not in schema and name not in cte_names:
            known = ", ".join(sorted(schema)) or "none"
            raise SQLRejected("sql_unknown_table", f"unknown table {table.name!r} (known: {known})")


def _check_columns(statement: exp.Expr, schema: dict[str, dict[str, str]]) -> None:
    try:
        qualify(statement.copy(), schema=schema, dialect="sqlite", validate_qualify_columns=True)
    except OptimizeError as e:
        message = str(e).splitlines()[0] if str(e) else "cannot resolve the query's columns"
        if message.startswith("Unknown table"):
            raise SQLRejected("sql_unknown_table", message) from None
        if any(key in message for key in ("column", "Column", "Cannot resolve")):
            raise SQLRejected("sql_unknown_column", message) from None
        raise SQLRejected("sql_error", message) from None
    except Exception:  # noqa: BLE001 - sqlglot cannot analyse this query; execute() still checks it
        return


def execute(db_path: str, sql: str, timeout_s: float = 2.0, max_rows: int = 1000) -> list[tuple]:
    """Runs the query read-only within timeout_s; at most max_rows rows. Raises SQLRejected."""
    connection = open_read_only(db_path)
    deadline = time.monotonic() + timeout_s
    timed_out = False

    def past_deadline() -> int:
        nonlocal timed_out
        timed_out = time.monotonic() > deadline
        return int(timed_out)

    connection.set_progress_handler(past_deadline, _PROGRESS_STEPS)
    try:
        rows = connection.execute(sql).fetchmany(max_rows)
    except (sqlite3.Error, sqlite3.Warning) as e:  # Warning: several statements (Python < 3.12)
        if timed_out:
            raise SQLRejected("sql_timeout", f"query ran past {timeout_s:g} s") from None
        raise SQLRejected("sql_error", str(e) or type(e).__name__) from None
    finally:
        connection.close()
    if not rows or all(value is None for row in rows for value in row):
        raise SQLRejected("empty_result", "no rows" if not rows else "only NULL values")
    return rows


def format_value(value: Any) -> str:
    """One value as answer text (see format_result)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        if text in ("0", "-0") and value != 0:
            text = f"{value:.4g}"  # keeps tiny values from becoming 0
        return "0" if text == "-0" else text
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def format_result(rows: list[tuple]) -> str:
    """Values joined with ", " across rows and columns; floats to 4 decimals without trailing zeros; NULL."""
    return ", ".join(format_value(value) for row in rows for value in row)


def _as_number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _exact_key(value: Any) -> Any:
    number = _as_number(value)
    if number is not None:
        return ("nan",) if math.isnan(number) else ("number", number)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return ("text", value.strip().casefold())
    return ("other", value)


def _values_match(a: Any, b: Any, rel_tol: float) -> bool:
    number_a, number_b = _as_number(a), _as_number(b)
    if number_a is not None and number_b is not None:
        if math.isnan(number_a) or math.isnan(number_b):
            return math.isnan(number_a) and math.isnan(number_b)
        return math.isclose(number_a, number_b, rel_tol=rel_tol, abs_tol=1e-9)
    return _exact_key(a) == _exact_key(b)


def results_match(a: list[tuple], b: list[tuple], rel_tol: float = 1e-4) -> bool:
    """Whether a and b hold the same multiset of rows (order ignored; numbers within rel_tol; 3 == 3.0 == "3";
    text compared case-insensitively after stripping)."""
    if len(a) != len(b):
        return False
    unmatched_b: dict[tuple, list[tuple]] = {}
    for row in b:
        unmatched_b.setdefault(tuple(_exact_key(v) for v in row), []).append(row)
    leftover_a = []
    for row in a:  # exact matches first, then the rest pairwise with the tolerance
        bucket = unmatched_b.get(tuple(_exact_key(v) for v in row))
        if bucket:
            bucket.pop()
        else:
            leftover_a.append(row)
    leftover_b = [row for bucket in unmatched_b.values() for row in bucket]
    for row in leftover_a:
        match = next((i for i, other in enumerate(leftover_b) if len(other) == len(row)
                      and all(_values_match(x, y, rel_tol) for x, y in zip(row, other))), None)
        if match is None:
            return False
        leftover_b.pop(match)
    return not leftover_b
