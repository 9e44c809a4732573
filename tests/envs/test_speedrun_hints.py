"""Speedrunning-benchmark hints: every ladder step has its three levels, each level-2 text names a gin binding
that the step really changes, level 1 lists every changed binding, every gin name mentioned is real, and
`load_hint` returns the levels under their headings in order (and rejects unknown steps and levels)."""

import ast
import dataclasses
import inspect
import os
import re

import pytest

from libs.envs.speedrun_bench import hints
from libs.models.gpt import GPTConfig
from libs.train import optim, trainer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs", "speedrun")
_BINDING = re.compile(r"^([A-Za-z_]\w*\.[A-Za-z_]\w*)\s*=\s*(.+)$")
_INCLUDE = re.compile(r'^include\s+"([^"]+)"')
_CONFIGURABLES = {
    "GPTConfig": {f.name for f in dataclasses.fields(GPTConfig)},
    "make_optimizer": set(inspect.signature(optim.make_optimizer).parameters),
    "lr_schedule": set(inspect.signature(optim.lr_schedule).parameters),
    "momentum_warmup": set(inspect.signature(optim.momentum_warmup).parameters),
    "window_schedule": set(inspect.signature(optim.window_schedule).parameters),
    "train": set(inspect.signature(trainer.train).parameters),
}
_MENTION = re.compile(r"\b(" + "|".join(_CONFIGURABLES) + r")\.([A-Za-z_]\w*)")


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i].strip()
    return line.strip()


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def own_bindings(path: str) -> dict:
    """The `Name.param = value` lines of one gin file (its includes not followed)."""
    out = {}
    with open(path) as f:
        for raw in f:
            m = _BINDING.match(_strip_comment(raw))
            if m:
                out[m.group(1)] = _value(m.group(2).strip())
    return out


def effective_bindings(path: str) -> dict:
    """The bindings of a gin file with its include chain resolved (later lines win)."""
    out = {}
    with open(path) as f:
        for raw in f:
            m = _INCLUDE.match(_strip_comment(raw))
            if m:
                out.update(effective_bindings(os.path.join(REPO_ROOT, m.group(1))))
    out.update(own_bindings(path))
    return out


def changed_bindings(step) -> set:
    """Bindings of the later file whose value differs from the earlier file's (restated values excluded)."""
    before = effective_bindings(os.path.join(CONFIG_DIR, f"{step[0]}.gin"))
    after = own_bindings(os.path.join(CONFIG_DIR, f"{step[1]}.gin"))
    return {name for name, value in after.items() if before.get(name, object()) != value}


def _read(step, level) -> str:
    with open(hints.hint_path(step, level)) as f:
        return f.read()


def test_ladder_steps_are_the_record_configs_in_order():
    assert len(hints.LADDER_STEPS) == 18
    assert hints.PACKED_RECORDS[0] == "record_12" and hints.RECORDS[-1] == "record_21"
    assert hints.LEVELS == ("1", "2", "3")
    for a, b in hints.LADDER_STEPS:
        assert os.path.exists(os.path.join(CONFIG_DIR, f"{a}.gin"))
        assert os.path.exists(os.path.join(CONFIG_DIR, f"{b}.gin"))
    assert [b for _, b in hints.LADDER_STEPS[:-1]] == [a for a, _ in hints.LADDER_STEPS[1:]]


@pytest.mark.parametrize("step", hints.LADDER_STEPS, ids=hints.step_name)
def test_every_level_file_exists_and_is_ascii(step):
    for level in hints.LEVELS:
        text = _read(step, level)
        assert text.strip(), (step, level)
        assert text.isascii(), (step, level)
        assert not re.search(r"</?[A-Za-z][^>]*>", text), (step, level)  # no HTML tags


@pytest.mark.parametrize("step", hints.LADDER_STEPS, ids=hints.step_name)
def test_level_2_names_a_binding_the_step_changes(step):
    changed = changed_bindings(step)
    assert changed, step
    text = _read(step, "2")
    assert any(name in text for name in changed), (step, sorted(changed))


@pytest.mark.parametrize("step", hints.LADDER_STEPS, ids=hints.step_name)
def test_level_1_lists_every_changed_binding(step):
    text = _read(step, "1")
    missing = sorted(name for name in changed_bindings(step) if name not in text)
    assert not missing, (step, missing)


@pytest.mark.parametrize("step", hints.LADDER_STEPS, ids=hints.step_name)
def test_every_mentioned_gin_name_exists(step):
    for level in hints.LEVELS:
        for configurable, param in _MENTION.findall(_read(step, level)):
            assert param in _CONFIGURABLES[configurable], (step, level, f"{configurable}.{param}")


@pytest.mark.parametrize("step", hints.LADDER_STEPS, ids=hints.step_name)
def test_level_3_has_the_mini_paper_sections(step):
    text = _read(step, "3")
    positions = [text.find(f"### {s}") for s in ("Motivation", "Method", "Details as implemented here",
                                                  "Expected effect")]
    assert -1 not in positions and positions == sorted(positions), (step, positions)
    assert 300 <= len(text.split()) <= 650, (step, len(text.split()))


@pytest.mark.parametrize("levels", ["1", "2", "3", "1+2", "1+2+3"])
def test_load_hint_headings_in_order(levels):
    step = hints.LADDER_STEPS[0]
    text = hints.load_hint(step, levels)
    wanted = levels.split("+")
    found = re.findall(r"^# Hint level (\d) ", text, flags=re.MULTILINE)
    assert found == wanted
    for level in wanted:
        assert hints.heading(step, level) in text
        assert _read(step, level).strip() in text


def test_load_hint_none_is_empty():
    for step in hints.LADDER_STEPS:
        assert hints.load_hint(step, "none") == ""


@pytest.mark.parametrize("step", [("gpt2_124m", "record_03"), ("record_05", "record_06"), "record_02", None,
                                  ("record_02", "gpt2_124m")])
def test_unknown_step_raises(step):
    with pytest.raises(ValueError, match="unknown ladder step") as info:
        hints.load_hint(step, "1")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("levels", ["", "0", "4", "2+3", "1+3", "2+1", "z", "5", "1,2", None])
def test_unknown_levels_raise(levels):
    with pytest.raises(ValueError, match="unknown hint levels") as info:
        hints.load_hint(hints.LADDER_STEPS[0], levels)
    assert "\n" not in str(info.value)


def test_list_step_is_accepted():
    assert hints.load_hint(list(hints.LADDER_STEPS[2]), "2") == hints.load_hint(hints.LADDER_STEPS[2], "2")
