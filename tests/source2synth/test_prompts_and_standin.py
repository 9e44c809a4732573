"""The step prompts, reply parsing and the rule-based stand-in's templates."""

import asyncio
import json
import sqlite3

import pytest

from libs.source2synth import prompts, sql, standin

COLUMNS = [["name", "TEXT"], ["moons", "INTEGER"], ["radius_km", "REAL"]]
ROWS = [{"name": "Earth", "moons": 1, "radius_km": 6371.0}, {"name": "Mars", "moons": 2, "radius_km": 3389.5},
        {"name": "Jupiter", "moons": 95, "radius_km": 69911.0}]


def test_prompt_round_trip_and_schema():
    inputs = {"table": "planets", "columns": COLUMNS, "statement": "Mars has 2 moons."}
    messages = prompts.messages("sql", inputs)
    assert prompts.read_prompt(messages) == ("sql", inputs)
    assert prompts.read_prompt([{"role": "user", "content": "hello"}]) is None
    assert prompts.prompt_hash(messages) == prompts.prompt_hash(prompts.messages("sql", dict(inputs)))
    assert prompts.prompt_hash(messages) != prompts.prompt_hash(prompts.messages("sql", {**inputs, "table": "x"}))
    schema = prompts.reply_format("table_question")["json_schema"]["schema"]
    assert schema["required"] == ["question", "answer"] and schema["properties"]["answer"]["maxLength"] == 80


def test_parse_reply_takes_the_last_complete_object():
    text = 'Sure! ```json\n{"sql": "SELECT 1"}\n``` or rather {"sql": "SELECT name FROM planets"} done'
    assert prompts.parse_reply("sql", text) == {"sql": "SELECT name FROM planets"}
    assert prompts.parse_reply("table_question", '{"question": "How many?", "answer": 3}')["answer"] == "3"
    with pytest.raises(prompts.ReplyError, match="no JSON object"):
        prompts.parse_reply("sql", '{"query": "SELECT 1"}')
    with pytest.raises(prompts.ReplyError, match="empty question"):
        prompts.parse_reply("impute", '{"question": "  "}')
    with pytest.raises(prompts.ReplyError):
        prompts.parse_reply("statement", '{"statement": "cut off by max_tok')


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "p.sqlite")
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE planets (name TEXT, moons INTEGER, radius_km REAL)")
    con.executemany("INSERT INTO planets VALUES (?, ?, ?)", [tuple(r.values()) for r in ROWS])
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("column,value,row", [("moons", 2, 1), ("name", "Earth", 0), ("radius_km", 69911.0, 2),
                                              ("moons", 95, 2), ("radius_km", 6371.0, 0)])
def test_table_templates_round_trip_through_real_sql(db, column, value, row):
    schema = sql.read_schema(db)
    seed = {"column": column, "value": value, "row": ROWS[row]}
    statement = standin.statement({"table": "planets", "columns": COLUMNS, "rows": ROWS, "seed": seed})
    query = standin.sql({"table": "planets", "columns": COLUMNS, "statement": statement})
    rows = sql.execute(db, sql.validate(query, schema))
    result = sql.format_result(rows)
    for imputed in (False, True):
        question = standin.table_question({"statement": statement, "columns": COLUMNS}, imputed=imputed)
        assert question.endswith("?")
        again = standin.question_sql(question, "planets", COLUMNS)  # the stand-in curator parses it back
        assert sql.results_match(sql.execute(db, again), rows), (statement, question, again)
    assert result


def test_cloze_hops_merge_and_fill():
    passage_a = "Apollo 11 was commanded by Neil Armstrong. It landed in 1969."
    passage_b = "Neil Armstrong was born in Wapakoneta in 1930. He studied at Purdue University."
    hop1 = standin.hop1({"entity": "Apollo 11", "passage": passage_a, "bridge": "Neil Armstrong"})
    assert hop1["answer"] == "Neil Armstrong" and "Neil Armstrong" not in hop1["question"]
    hop2 = standin.hop2({"entity": "Neil Armstrong", "passage": passage_b})
    assert hop2["answer"] == "1930" and "about Neil Armstrong" in hop2["question"]  # a year first
    merged = standin.merge({"entity1": "Apollo 11", "question1": hop1["question"], "answer1": "Neil Armstrong",
                            "question2": hop2["question"], "answer2": hop2["answer"]})
    assert "Neil Armstrong" not in merged["question"] and "Step 2" in merged["reasoning"]
    passages = [{"title": "Apollo 11", "text": passage_a}, {"title": "Neil Armstrong", "text": passage_b}]
    assert standin.fill_cloze(merged["question"], passages) == "1930"
    assert standin.fill_cloze(merged["question"], passages[:1]) is None  # its sentence is not there
    assert standin.reply("text_answer", {"question": "What year?", "passages": passages}) == {"answer": "unknown"}


def test_standin_generator_raises_reply_error_where_templates_do_not_reach():
    gen = standin.StandInGenerator()
    with pytest.raises(prompts.ReplyError):
        asyncio.run(gen.ask("sql", {"table": "planets", "columns": COLUMNS, "statement": "Mars is red."}))
    fields = asyncio.run(gen.ask("statement", {"table": "planets", "columns": COLUMNS, "rows": ROWS,
                                               "seed": {"column": "moons", "value": 2, "row": ROWS[1]}}))
    assert json.dumps(fields) and gen.calls == 2
