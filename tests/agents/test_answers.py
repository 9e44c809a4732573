"""Tests for parsing the model's boxed JSON answers (libs/agents/answers.py)."""

import pytest

from libs.agents.answers import ParseError, extract_boxed_json, parse_answer


def test_extract_nested_and_whitespace():
    text = 'Reasoning...\n\\boxed{\n  {\n"operation_values": {"0": 0.3, "2": 0.9}\n}\n}\nDone.'
    assert extract_boxed_json(text) == {"operation_values": {"0": 0.3, "2": 0.9}}
    assert extract_boxed_json('\\boxed{{"a": {"b": {"c": {"d": 1}}}}}') == {"a": {"b": {"c": {"d": 1}}}}


def test_extract_braces_inside_strings():
    assert extract_boxed_json('\\boxed{{"note": "a } brace", "x": 1}}') == {"note": "a } brace", "x": 1}


def test_last_box_wins_and_unparseable_last_falls_back():
    text = '\\boxed{{"explore": true}} then \\boxed{{"explore": false}}'
    assert extract_boxed_json(text) == {"explore": False}
    text = '\\boxed{{"explore": true}} then \\boxed{{explore: ???}}'
    assert extract_boxed_json(text) == {"explore": True}


def test_json5_leniency():
    assert extract_boxed_json("\\boxed{{'a': 1, b: [1, 2,],}}") == {"a": 1, "b": [1, 2]}
    assert extract_boxed_json("\\boxed{{move_values: {0: 0.5, 3: 0.1}}}") == {"move_values": {"0": 0.5, "3": 0.1}}
    assert extract_boxed_json('\\boxed{"explore": false}') == {"explore": False}  # box braces as the object's


@pytest.mark.parametrize("text", ["", "no box here", "\\boxed{0.7}", "\\boxed{{not json at all",
                                  "\\boxed{{'a': }}", "\\boxed{\\text{it's}}", None])
def test_garbage_raises(text):
    with pytest.raises(ParseError):
        extract_boxed_json(text)
    with pytest.raises(ParseError):
        parse_answer("value", "countdown", text, [])


def test_child_values_dict_and_game_key():
    text = '\\boxed{{"operation_values": {"0": 0.2, "3": "0.75", "7": 0.9, "x": 5}}}'
    assert parse_answer("child_values", "countdown", text, [0, 3, 5]) == {0: 0.2, 3: 0.75}  # 7, x ignored; 5 absent
    sudoku = '\\boxed{{"move_values": {"1": 1, "2": 0}}}'
    assert parse_answer("child_values", "sudoku", sudoku, [1, 2]) == {1: 1.0, 2: 0.0}
    with pytest.raises(ParseError, match="move_values"):
        parse_answer("child_values", "sudoku", text, [0, 3])
    with pytest.raises(ParseError, match="operation_values"):
        parse_answer("child_values", "countdown", sudoku, [1, 2])


def test_child_values_list_form():
    text = '\\boxed{{"operation_values": [0.1, 0.5, 0.9]}}'
    assert parse_answer("child_values", "countdown", text, [0, 2, 5]) == {0: 0.1, 2: 0.5, 5: 0.9}
    with pytest.raises(ParseError, match="list"):
        parse_answer("child_values", "countdown", text, [0, 2])


@pytest.mark.parametrize("value", ["1.5", "-0.1", "true", "false", '"high"', "NaN", "Infinity", "null", "[0.5]"])
def test_child_values_bad_numbers(value):
    text = f'\\boxed{{{{"operation_values": {{"0": 0.5, "1": {value}}}}}}}'
    with pytest.raises(ParseError):
        parse_answer("child_values", "countdown", text, [0, 1])


def test_child_values_no_listed_key_or_not_a_mapping():
    with pytest.raises(ParseError, match="none of the listed keys"):
        parse_answer("child_values", "countdown", '\\boxed{{"operation_values": {"9": 0.5}}}', [0, 1])
    with pytest.raises(ParseError):
        parse_answer("child_values", "countdown", '\\boxed{{"operation_values": 0.5}}', [0, 1])


def test_value():
    assert parse_answer("value", "sudoku", 'x \\boxed{{"state_value_estimation": 0.7}}', []) == 0.7
    assert parse_answer("value", "countdown", '\\boxed{{"state_value_estimation": 1}}', []) == 1.0
    assert parse_answer("value", "countdown", '\\boxed{{"state_value_estimation": " 0.25 "}}', []) == 0.25
    for bad in ["1.01", "-1", "true", "NaN", "1e999", '"abc"', "{}"]:
        with pytest.raises(ParseError):
            parse_answer("value", "countdown", f'\\boxed{{{{"state_value_estimation": {bad}}}}}', [])
    with pytest.raises(ParseError, match="state_value_estimation"):
        parse_answer("value", "countdown", '\\boxed{{"value": 0.5}}', [])


@pytest.mark.parametrize("answer,expected", [("true", True), ("false", False), ('"True"', True),
                                             ('"FALSE"', False), ("' true '", True)])
def test_explore_forms(answer, expected):
    assert parse_answer("explore", "countdown", f'\\boxed{{{{"explore": {answer}}}}}', []) is expected


@pytest.mark.parametrize("answer", ["1", "0", '"yes"', "null", "[true]"])
def test_explore_rejects_other_forms(answer):
    with pytest.raises(ParseError, match="explore"):
        parse_answer("explore", "sudoku", f'\\boxed{{{{"explore": {answer}}}}}', [])


def test_priors_not_normalised_and_validated():
    text = '\\boxed{{"operation_scores": {"0": 2, "1": 0, "4": 1.5, "9": 3}}}'
    assert parse_answer("priors", "sudoku", text, [0, 1, 4, 6]) == {0: 2.0, 1: 0.0, 4: 1.5}
    assert parse_answer("priors", "countdown", '\\boxed{{"operation_scores": [0.7, 0.3]}}', [2, 3]) == {2: 0.7, 3: 0.3}
    for bad in ["-0.1", "true", "Infinity", "NaN"]:
        with pytest.raises(ParseError):
            parse_answer("priors", "countdown", f'\\boxed{{{{"operation_scores": {{"0": {bad}}}}}}}', [0])
    with pytest.raises(ParseError, match="operation_scores"):
        parse_answer("priors", "countdown", '\\boxed{{"operation_values": {"0": 1}}}', [0])


def test_unknown_kind_or_game_is_a_programming_error():
    with pytest.raises(ValueError) as err:
        parse_answer("best", "countdown", '\\boxed{{"x": 1}}', [])
    assert not isinstance(err.value, ParseError)
    with pytest.raises(ValueError) as err:
        parse_answer("value", "chess", '\\boxed{{"x": 1}}', [])
    assert not isinstance(err.value, ParseError)
