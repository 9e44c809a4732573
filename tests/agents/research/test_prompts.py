"""Every operator prompt renders from a full context, states the task's contract, and misses no field; a
multi-file task's prompts show and ask for every editable file, a single-file task's are as before."""

import asyncio
from types import SimpleNamespace

import jinja2
import pytest

from libs.agents.research import prompts, replies
from libs.agents.research.proposers import ModelProposer
from libs.envs import research_tasks
from libs.envs.speedrun_bench import tasks as speedrun_tasks
from libs.search.tree import Tree
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


class _Gateway:
    """Answers every request with `reply`: enough of a gateway for ModelProposer, without a model."""

    config = SimpleNamespace(model="scripted")
    structured_outputs = False

    def __init__(self, reply: str = ""):
        self.reply = reply

    async def complete(self, messages, **kwargs):
        del messages, kwargs
        return SimpleNamespace(text=self.reply)


@pytest.fixture(scope="module")
def speedrun_task(tmp_path_factory):
    return speedrun_tasks.load_task("speedrun.record_03__record_04.hint_none", speedrun_tasks.Proxy(),
                                    root=tmp_path_factory.mktemp("tasks"))


def _proposer(task, tmp_path, operator_set="aide", reply=""):
    (tmp_path / "public").mkdir(exist_ok=True)
    data = research_tasks.TaskData(tmp_path / "public", tmp_path / "private")
    return ModelProposer(_Gateway(reply), operator_set, task, data)


def _tree_with_candidate(sources, editable):
    tree = Tree()
    root = tree.add({"plan": "task"})
    node = tree.add({"plan": "The starter.", "code": replies.program_text(sources, editable), "sources": sources,
                     "output": "loss 3.2", "metric": 12.5, "summary": "ran", "evaluation": ""}, [root.id])
    return tree, node


@pytest.mark.parametrize("operator_set", prompts.OPERATOR_SETS)
@pytest.mark.parametrize("operator", ["draft", "improve"])
def test_a_multi_file_prompt_shows_every_file_and_asks_for_marked_files(speedrun_task, tmp_path, operator_set,
                                                                        operator):
    assert len(speedrun_task.editable) > 1
    proposer = _proposer(speedrun_task, tmp_path, operator_set)
    tree, node = _tree_with_candidate(speedrun_task.starter_sources(), speedrun_task.editable)
    fields = {"parent": proposer._view(node)} if operator == "improve" else {}
    text = proposer._prompt(tree, operator, node if fields else None, **fields)
    for name in speedrun_task.editable:
        assert replies.FILE_MARKER.format(name=name) in text
    assert "GPTConfig.num_layers" in text  # record.gin's contents
    assert "for each file you change, the marker line `# ==== file: NAME ====`" in text
    assert "gpt.py, optim.py, losses.py, record.gin" in text and "prints the validation score" not in text


def test_a_multi_file_reply_replaces_only_the_files_it_gives(speedrun_task, tmp_path):
    starter = speedrun_task.starter_sources()
    optim = starter["optim.py"].replace("def ", "def _unused():\n    pass\n\n\ndef ", 1)
    reply = f"Add a helper.\n```python\n{replies.bundle({'optim.py': optim}, ['optim.py'])}```\n"
    proposer = _proposer(speedrun_task, tmp_path, reply=reply)
    tree, node = _tree_with_candidate(starter, speedrun_task.editable)
    proposal = asyncio.run(proposer.improve(tree, node))
    assert proposal.plan == "Add a helper." and proposal.sources == {**starter, "optim.py": optim}


@pytest.mark.parametrize("operator", ["draft", "improve"])
def test_a_single_file_prompt_is_unchanged(tmp_path, monkeypatch, operator):
    task = research_tasks.load_task("prisoners_dilemma")
    contexts = []
    render = prompts.render
    monkeypatch.setattr(prompts, "render", lambda *a, **context: contexts.append(context) or render(*a, **context))
    proposer = _proposer(task, tmp_path)
    tree, node = _tree_with_candidate(task.starter_sources(), task.editable)
    fields = {"parent": proposer._view(node)} if operator == "improve" else {}
    text = proposer._prompt(tree, operator, node if fields else None, **fields)
    context = contexts[-1]
    assert context["multi_file"] is False and context["files"] == []
    assert context["starter_code"] == task.starter_sources()[task.editable[0]]
    assert node.state["code"] == task.starter_sources()[task.editable[0]]
    rest = {k: v for k, v in context.items() if k not in ("multi_file", "files", "file_marker")}
    assert text == render("aide", operator, **rest)
    assert "holding the complete program (not a diff)" in text and "==== file:" not in text
