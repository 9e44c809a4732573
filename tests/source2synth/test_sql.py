"""Tests for libs/source2synth/sql.py: validating, running and comparing generated SQL."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time

import pytest

from libs.source2synth import sql
from libs.source2synth.sql import SQLRejected


@pytest.fixture
def db_path(tmp_path):
    path = str(tmp_path / "sources.sqlite")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE cities (id INTEGER, name TEXT, pop REAL)")
    db.execute("CREATE TABLE people (id INTEGER, name TEXT, city_id INTEGER, age INTEGER)")
    db.execute("CREATE TABLE _source2synth_manifest (kind TEXT)")
    db.executemany("INSERT INTO cities VALUES (?, ?, ?)", [(1, "Paris", 2.1), (2, "Lyon", 0.5), (3, "Nice", None)])
    db.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", [(1, "Ada", 1, 36), (2, "Alan", 1, 41),
                                                              (3, "Grace", 2, None)])
    db.commit()
    db.close()
    return path


@pytest.fixture
def schema(db_path):
    return sql.read_schema(db_path)


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_read_schema_skips_internal_tables(schema):
    assert schema == {"cities": {"id": "INTEGER", "name": "TEXT", "pop": "REAL"},
                      "people": {"id": "INTEGER", "name": "TEXT", "city_id": "INTEGER", "age": "INTEGER"}}


@pytest.mark.parametrize("query", [
    "SELECT name FROM cities WHERE pop > 1",
    "SELECT p.name, c.name FROM people p JOIN cities c ON p.city_id = c.id",
    "SELECT city_id, COUNT(*) AS n, AVG(age) FROM people GROUP BY city_id HAVING n > 1 ORDER BY n DESC",
    "WITH big AS (SELECT id, pop FROM cities WHERE pop > 1) SELECT COUNT(*) FROM big",
    "SELECT name AS city FROM cities ORDER BY city",
    "SELECT NAME FROM CITIES",
    "SELECT name FROM cities UNION SELECT name FROM people",
    "SELECT name FROM people WHERE city_id IN (SELECT id FROM cities WHERE pop > (SELECT AVG(pop) FROM cities))",
    "SELECT * FROM cities",
])
def test_validate_accepts(query, schema, db_path):
    assert sql.validate(query, schema) == query
    assert sql.execute(db_path, query)


def test_validate_strips_fences_and_semicolon(schema):
    assert sql.validate("```sql\nSELECT name FROM cities;\n```", schema) == "SELECT name FROM cities"
    assert sql.validate("Here it is:\n```\nSELECT id FROM people ;;\n```\n", schema) == "SELECT id FROM people"
    assert sql.validate("  SELECT 1;  ", schema) == "SELECT 1"


@pytest.mark.parametrize("query, reason", [
    ("SELECT name FROM cities WHERE", "sql_parse"),
    ("SELECT (1", "sql_parse"),
    ("", "sql_parse"),
    ("DROP TABLE cities", "sql_not_select"),
    ("INSERT INTO cities VALUES (4, 'Lille', 0.2)", "sql_not_select"),
    ("UPDATE cities SET pop = 0", "sql_not_select"),
    ("DELETE FROM cities", "sql_not_select"),
    ("SELECT 1; DROP TABLE cities", "sql_not_select"),
    ("SELECT 1; SELECT 2", "sql_not_select"),
    ("ATTACH DATABASE 'other.db' AS other", "sql_not_select"),
    ("PRAGMA table_info(cities)", "sql_not_select"),
    ("WITH a AS (SELECT 1) INSERT INTO cities SELECT * FROM a", "sql_not_select"),
    ("SELECT * FROM towns", "sql_unknown_table"),
    ("SELECT COUNT(*) FROM towns", "sql_unknown_table"),
    ("SELECT c.name FROM cities c JOIN towns t ON t.id = c.id", "sql_unknown_table"),
    ("SELECT * FROM other.cities", "sql_unknown_table"),
    ("SELECT * FROM _source2synth_manifest", "sql_unknown_table"),
    ("SELECT population FROM cities", "sql_unknown_column"),
    ("SELECT name FROM cities WHERE name = \"Paris\"", "sql_unknown_column"),
    ("WITH big AS (SELECT id FROM cities) SELECT pop FROM big", "sql_unknown_column"),
    ("SELECT name FROM cities ORDER BY population", "sql_unknown_column"),
])
def test_validate_rejects(query, reason, schema):
    with pytest.raises(SQLRejected) as info:
        sql.validate(query, schema)
    assert info.value.reason == reason
    assert "\n" not in str(info.value) and str(info.value)


def test_unknown_table_message_names_it(schema):
    with pytest.raises(SQLRejected, match="unknown table 'towns'"):
        sql.validate("SELECT * FROM towns", schema)


def test_sqlrejected_reason_must_be_known():
    with pytest.raises(ValueError):
        SQLRejected("oops", "detail")


def test_execute_rows_and_max_rows(db_path):
    assert sql.execute(db_path, "SELECT name, pop FROM cities WHERE pop IS NOT NULL ORDER BY id") == [
        ("Paris", 2.1), ("Lyon", 0.5)]
    assert sql.execute(db_path, "SELECT id FROM people ORDER BY id", max_rows=2) == [(1,), (2,)]


def test_execute_is_read_only(db_path):
    before = _digest(db_path)
    for statement in ("UPDATE cities SET pop = 0", "DELETE FROM people", "DROP TABLE cities",
                      "CREATE TABLE x (a)", "SELECT 1; DELETE FROM people"):
        with pytest.raises(SQLRejected) as info:
            sql.execute(db_path, statement)
        assert info.value.reason == "sql_error"
    assert _digest(db_path) == before
    assert sql.execute(db_path, "SELECT COUNT(*) FROM people") == [(3,)]


def test_execute_timeout(db_path):
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c"
    outcome = {}

    def run():  # in a thread, so that a missing timeout fails the test instead of hanging it
        try:
            sql.execute(db_path, forever, timeout_s=0.2)
        except SQLRejected as e:
            outcome["reason"] = e.reason

    start = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "the query was not interrupted"
    assert outcome == {"reason": "sql_timeout"}
    assert time.monotonic() - start < 1.0


def test_execute_empty_and_error(db_path):
    for query in ("SELECT name FROM cities WHERE pop > 100", "SELECT pop FROM cities WHERE name = 'Nice'",
                  "SELECT MAX(age), NULL FROM people WHERE id > 5"):
        with pytest.raises(SQLRejected) as info:
            sql.execute(db_path, query)
        assert info.value.reason == "empty_result"
    with pytest.raises(SQLRejected, match="no such column") as info:
        sql.execute(db_path, "SELECT nope FROM cities")
    assert info.value.reason == "sql_error"


def test_format_result():
    assert sql.format_result([(2.50,), (3.0,)]) == "2.5, 3"
    assert sql.format_result([("Paris", 2.123456), ("Lyon", None)]) == "Paris, 2.1235, Lyon, NULL"
    assert sql.format_result([(7, -0.0, 1e-7, 1234567.0)]) == "7, 0, 1e-07, 1234567"
    assert sql.format_result([]) == ""


def test_results_match():
    assert sql.results_match([(1, "Paris"), (2, "Lyon")], [(2.0, " lyon"), (1, "PARIS ")])
    assert sql.results_match([(3,)], [(3.00001,)])
    assert sql.results_match([(3,)], [("3",)])
    assert sql.results_match([(None,)], [(None,)])
    assert not sql.results_match([(3,)], [(3.1,)])
    assert not sql.results_match([(3,)], [(3.001,)], rel_tol=1e-4)
    assert not sql.results_match([(1,), (1,)], [(1,), (2,)])  # multisets, not sets
    assert not sql.results_match([(1,)], [(1,), (1,)])
    assert not sql.results_match([(1, 2)], [(1,)])
    assert not sql.results_match([("Paris",)], [("Lyon",)])
    assert not sql.results_match([(None,)], [(0,)])
    a = [(i, i * 1.5) for i in range(500)]
    b = [(i, i * 1.5 * (1 + 1e-6)) for i in reversed(range(500))]
    assert sql.results_match(a, b)
