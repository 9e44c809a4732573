"""Every operator prompt renders from a full context, states the task's contract, and misses no field."""

import jinja2
import pytest

from libs.agents.research import prompts
from libs.train.errors import ConfigError

TASK = {"title": "Wine classification", "description": "Classify wines into 3 cultivars.", "command": ["python", "train.py"],
        "edit_files": ["train.py"], "submission": ["submission.csv"], "metric": "accuracy", "lower_is_better": False,
        "time_limit_s": 120, "memory_mb": 2048}
NODE = {"plan": "Fit a random forest.", "code": "print('hi')\n", "output": "accuracy 0.91", "metric": 0.91,
        "summary": "works", "evaluation": "{\"accuracy\": 0.9}"}
CONTEXT = {"task": TASK, "compute": "2 CPU cores, no GPU.", "data_overview": "data/train.csv: 142 rows x 14 columns",
           "memory": [{"label": "node 3", "plan": "A logistic regression.", "metric": 0.88, "summary": "fine"}],
           "starter_code": "print('baseline')", "plan_sentences": "3-5", "parent": NODE, "node": NODE,
           "parents": [NODE, {**NODE, "plan": "Gradient boosting.", "metric": None}]}


@pytest.mark.parametrize("operator_set", prompts.OPERATOR_SETS)
@pytest.mark.parametrize("operator", prompts.OPERATORS)
def test_every_prompt_renders_and_states_the_contract(operator_set, operator):
    text = prompts.render(operator_set, operator, **CONTEXT)
    assert "Wine classification" in text and "python train.py" in text and "submission.csv" in text
    assert "120 s of wall time" in text and "higher is better" in text
    if operator == "analyze":
        assert '"is_bug"' in text and "accuracy 0.91" in text
    else:
        assert "ONE markdown code block" in text
    if operator in ("improve", "debug"):
        assert "print('hi')" in text
    if operator == "crossover":
        assert "Gradient boosting." in text and "Fit a random forest." in text
    if operator_set == "aira" and operator in ("draft", "improve", "crossover"):
        assert "EXACTLY ONE IDEA" in text
    assert "{{" not in text and "{%" not in text


def test_memory_is_shown_and_omitted_when_empty():
    assert "A logistic regression." in prompts.render("aide", "improve", **CONTEXT)
    assert "# Memory" not in prompts.render("aide", "improve", **{**CONTEXT, "memory": []})
    assert "Previously explored ideas" in prompts.render("aira", "draft", **CONTEXT)


def test_a_missing_field_is_an_error_not_an_empty_string():
    context = dict(CONTEXT)
    del context["parent"]
    with pytest.raises(jinja2.UndefinedError):
        prompts.render("aide", "improve", **context)


def test_unknown_operator_or_set_is_a_config_error():
    with pytest.raises(ConfigError, match="operator set 'nope'"):
        prompts.render("nope", "draft", **CONTEXT)
    with pytest.raises(ConfigError, match="template missing"):
        prompts.render("aide", "draft", directory="/nonexistent", **CONTEXT)
