"""Tests for libs/source2synth/{sources,documents}.py: tables into one SQLite db, documents and their links, text splitting."""

from __future__ import annotations

import os
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from libs.source2synth import documents, sources
from libs.source2synth.documents import Document
from libs.source2synth.sources import Skipped
from libs.train.errors import ConfigError, UserError


def _write(path, text: str | bytes) -> str:
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode, **({} if isinstance(text, bytes) else {"encoding": "utf-8"})) as f:
        f.write(text)
    return str(path)


@pytest.fixture
def table_dir(tmp_path):
    d = tmp_path / "tables"
    d.mkdir()
    _write(d / "Cities 2020.csv", "City Name,Population,Area (km2),Zip\nParis,2100000,105.4,75001\n"
                                  "Lyon,,47.87,69001\nNice,340000,71.9,\n")
    _write(d / "people.tsv", "id\tname\tage\n1\tAda\t36\n2\tAlan\t41\n")
    _write(d / "ragged.csv", "a,b,c,d\n1,2,3,4\n5,6,7\n")
    _write(d / "empty.csv", "")
    _write(d / "header_only.csv", "a,b\n")
    _write(d / "latin1.csv", "name\ncaf\xe9\n".encode("latin-1"))
    _write(d / "dupcols.csv", "Price ($),price\n1,2\n")
    _write(d / "notes.txt", "ignored: not a table extension")
    pq.write_table(pa.table({"year": pa.array([2019, 2020], pa.int64()), "score": [1.5, 2.25],
                             "label": ["x", None], "tags": [["a", "b"], []], "ok": [True, False]}),
                   str(d / "metrics.parquet"))
    _write(d / "broken.parquet", b"PAR1 definitely not parquet")
    db = sqlite3.connect(str(d / "shop.sqlite"))
    db.execute("CREATE TABLE Orders (id INTEGER, Amount REAL, item TEXT)")
    db.executemany("INSERT INTO Orders VALUES (?, ?, ?)", [(1, 9.5, "pen"), (2, 20.0, "book")])
    db.execute("CREATE TABLE people (id INTEGER, nick TEXT)")  # clashes with people.tsv's table
    db.execute("INSERT INTO people VALUES (7, 'x')")
    db.execute("CREATE TABLE empty_one (id INTEGER)")
    db.commit()
    db.close()
    return d


def test_load_tables_types_and_skips(table_dir, tmp_path):
    db_path = str(tmp_path / "run" / "sources.sqlite")
    tables, skipped = sources.load_tables([str(table_dir)], db_path)
    by_name = {t.name: t for t in tables}
    assert set(by_name) == {"cities_2020", "people", "metrics", "orders", "people_2"}
    cities = by_name["cities_2020"]
    assert cities.columns == (("city_name", "TEXT"), ("population", "INTEGER"), ("area_km2", "REAL"),
                              ("zip", "INTEGER"))
    assert cities.num_rows == 3 and cities.source.endswith("Cities 2020.csv")
    assert by_name["people"].source.endswith("people.tsv")  # files are loaded in sorted order
    assert by_name["people_2"].source.endswith("shop.sqlite:people")
    assert by_name["orders"].columns == (("id", "INTEGER"), ("amount", "REAL"), ("item", "TEXT"))
    assert dict(by_name["metrics"].columns) == {"year": "INTEGER", "score": "REAL", "label": "TEXT",
                                                 "tags": "TEXT", "ok": "INTEGER"}

    reasons = {os.path.basename(s.path): s.reason for s in skipped}
    assert reasons["ragged.csv"] == "line 3 has 3 fields, header has 4"
    assert "no header" in reasons["empty.csv"]
    assert "no data rows" in reasons["header_only.csv"]
    assert "not UTF-8" in reasons["latin1.csv"]
    assert "'Price ($)' and 'price' both become 'price'" in reasons["dupcols.csv"]
    assert "Parquet" in reasons["broken.parquet"]
    assert reasons["shop.sqlite:empty_one"] == "no rows"
    assert "notes.txt" not in reasons  # other extensions in a directory are ignored

    rows = sources.table_rows(db_path, "cities_2020")
    assert rows[1] == {"city_name": "Lyon", "population": None, "area_km2": 47.87, "zip": 69001}
    assert rows[2]["zip"] is None
    assert sources.table_rows(db_path, "cities_2020", limit=1, offset=2) == [rows[2]]
    metrics = sources.table_rows(db_path, "metrics")
    assert metrics[0] == {"year": 2019, "score": 1.5, "label": "x", "tags": '["a", "b"]', "ok": 1}
    assert metrics[1]["label"] is None
    with pytest.raises(UserError, match="no table 'nope'"):
        sources.table_rows(db_path, "nope")


def test_zero_padded_codes_stay_text_and_big_ints_real(tmp_path):
    path = _write(tmp_path / "codes.csv", "code,big,mixed\n02134,99999999999999999999,1\n10001,1,x\n")
    tables, _ = sources.load_tables([path], str(tmp_path / "db.sqlite"))
    assert tables[0].columns == (("code", "TEXT"), ("big", "REAL"), ("mixed", "TEXT"))
    rows = sources.table_rows(str(tmp_path / "db.sqlite"), "codes")
    assert rows[0]["code"] == "02134" and rows[1]["mixed"] == "x"


def test_sanitize_name():
    assert sources.sanitize_name("Café Sales (2020)", "t_", "table") == "cafe_sales_2020"
    assert sources.sanitize_name("2020 sales", "t_", "table") == "t_2020_sales"
    assert sources.sanitize_name("Order", "c_", "column_1") == "order_"
    assert sources.sanitize_name("???", "c_", "column_3") == "column_3"


def test_manifest_reuse_and_rebuild(table_dir, tmp_path):
    db_path = str(tmp_path / "sources.sqlite")
    first = sources.load_tables([str(table_dir)], db_path)
    stat = os.stat(db_path)
    second = sources.load_tables([str(table_dir)], db_path)
    assert second == first
    assert os.stat(db_path).st_mtime_ns == stat.st_mtime_ns and os.stat(db_path).st_ino == stat.st_ino
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]

    _write(table_dir / "people.tsv", "id\tname\tage\n1\tAda\t36\n2\tAlan\t41\n3\tGrace\t45\n")
    tables, _ = sources.load_tables([str(table_dir)], db_path)
    assert os.stat(db_path).st_ino != stat.st_ino  # rebuilt and renamed into place
    assert {t.name: t.num_rows for t in tables}["people"] == 3
    assert len(sources.table_rows(db_path, "people")) == 3


def test_manifest_is_internal(table_dir, tmp_path):
    db_path = str(tmp_path / "sources.sqlite")
    sources.load_tables([str(table_dir / "people.tsv")], db_path)
    with sqlite3.connect(db_path) as db:
        kinds = [row[0] for row in db.execute(f"SELECT kind FROM {sources.MANIFEST_TABLE}")]
    assert kinds == ["version", "file", "table"]


def test_load_tables_errors(table_dir, tmp_path):
    with pytest.raises(UserError, match="missing.csv"):
        sources.load_tables([str(table_dir / "missing.csv")], str(tmp_path / "db.sqlite"))
    with pytest.raises(UserError, match=r"no table could be loaded from .*ragged.csv: line 3 has 3 fields"):
        sources.load_tables([str(table_dir / "ragged.csv"), str(table_dir / "empty.csv")],
                            str(tmp_path / "db.sqlite"))
    assert not os.path.exists(tmp_path / "db.sqlite") and not [n for n in os.listdir(tmp_path) if ".tmp" in n]
    tables, skipped = sources.load_tables([str(table_dir / "people.tsv"), str(table_dir / "notes.txt")],
                                          str(tmp_path / "db2.sqlite"))
    assert [t.name for t in tables] == ["people"]
    assert "unsupported extension" in skipped[0].reason


def test_unreadable_sqlite_is_skipped(table_dir, tmp_path):
    bad = _write(tmp_path / "bad.db", b"this is not a database, just bytes" * 20)
    tables, skipped = sources.load_tables([bad, str(table_dir / "people.tsv")], str(tmp_path / "db.sqlite"))
    assert [t.name for t in tables] == ["people"]
    assert skipped == [Skipped(bad, skipped[0].reason)] and "SQLite" in skipped[0].reason


# ---------------------------------------------------------------------------------------------- documents

@pytest.fixture
def doc_dir(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    _write(d / "paris.md", "# Paris\naliases: City of Light\n\nParis is the capital of [[France]]. It lies on "
                           "the [river Seine](seine.md).\n\n## History\nThe [[Louvre|Louvre museum]] opened in "
                           "1793. Paris hosted [[Nowhere]].\n")
    _write(d / "france.md", "# France\n\nFrance is a country. Its capital is the city of light, see [x](paris.md)."
                            " See also [site](https://example.com/seine.md).\n")
    _write(d / "seine.md", "# Seine\n\nThe Seine flows through Paris and France.\n")
    _write(d / "louvre_museum.txt", "The Louvre is a museum in paris.\n")
    _write(d / "z_dup.md", "# paris\n\nAnother Paris.\n")
    _write(d / "empty.md", "# Empty\n\n   \n")
    _write(d / "latin.txt", "caf\xe9".encode("latin-1"))
    return d


def test_load_documents_links(doc_dir):
    docs, skipped = documents.load_documents([str(doc_dir)], matcher="links")
    assert set(docs) == {"Paris", "France", "Seine", "louvre museum"}
    paris = docs["Paris"]
    assert paris.links == ("France", "Seine")  # [[Louvre|...]] and [[Nowhere]] are not loaded titles
    assert paris.text.startswith("Paris is the capital") and "aliases" not in paris.text
    assert docs["France"].links == ("Paris",)  # external URLs never resolve
    assert docs["Seine"].links == ()
    reasons = {os.path.basename(s.path): s.reason for s in skipped}
    assert "already used" in reasons["z_dup.md"] and "paris.md" in reasons["z_dup.md"]
    assert reasons["empty.md"] == "empty body"
    assert "not UTF-8" in reasons["latin.txt"]


def test_load_documents_names_and_both(doc_dir):
    names, _ = documents.load_documents([str(doc_dir)], matcher="names")
    assert names["Seine"].links == ("Paris", "France")
    assert names["France"].links == ("Paris",)  # the alias "city of light", case-insensitive
    assert names["louvre museum"].links == ("Paris",)
    assert names["Paris"].links == ("France", "Seine", "louvre museum")  # names in the plain text
    both, _ = documents.load_documents([str(doc_dir)], matcher="links+names")
    assert both["Seine"].links == ("Paris", "France")
    assert both["Paris"].links == ("France", "Seine", "louvre museum")


def test_wiki_link_to_alias_and_whole_words(tmp_path):
    _write(tmp_path / "a.md", "# Art\n\nSee [[city of light]]. Also Artemis and art.\n")
    _write(tmp_path / "b.md", "# Paris\naliases: City of Light, Lutetia\n\nLutetia was its name. Parisian food.\n")
    docs, _ = documents.load_documents([str(tmp_path)], matcher="links+names")
    assert docs["Art"].links == ("Paris",)
    assert docs["Paris"].links == ()  # "Parisian" is not the whole word, own names never count


def test_unknown_matcher_and_missing_path(doc_dir):
    with pytest.raises(ConfigError, match="fuzzy"):
        documents.load_documents([str(doc_dir)], matcher="fuzzy")
    with pytest.raises(UserError, match="nope.md"):
        documents.load_documents([str(doc_dir / "nope.md")])


def test_plain_text_and_passages():
    text = "Intro [[France|the country]] and [[Seine]].\n\n## Section\nSee [the river](seine.md)\n  here.\n\n\n"
    assert documents.plain_text(text) == "Intro the country and Seine.\n\n## Section\nSee the river\n  here.\n\n\n"
    doc = Document("T", "t.md", text, ())
    assert documents.passages(doc) == ["Intro the country and Seine.", "See the river here."]


@pytest.mark.parametrize("text, expected", [
    ("Paris is big. It has 2 million people! Is it old? Yes.",
     ["Paris is big.", "It has 2 million people!", "Is it old?", "Yes."]),
    ("Dr. Smith moved to the U.S. in 1990. He met J. R. R. Tolkien at St. Mary's.",
     ["Dr. Smith moved to the U.S. in 1990.", "He met J. R. R. Tolkien at St. Mary's."]),
    ("It cost 3.5 dollars. 2020 was odd. e.g. this stays.", ["It cost 3.5 dollars.", "2020 was odd. e.g. this stays."]),
    ("He said \"Stop.\" Then left.", ["He said \"Stop.\"", "Then left."]),
    ("  no capital after. here  ", ["no capital after. here"]),
])
def test_sentences(text, expected):
    assert documents.sentences(text) == expected
