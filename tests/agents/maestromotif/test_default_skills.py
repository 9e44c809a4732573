"""libs/agents/maestromotif/default_skills.py: the hand-written program follows the reference's rules
(mklissa/maestromotif meta_policies/*/seed42/execution.py) for initiation, termination and each policy."""

from __future__ import annotations

import ast

import pytest

from libs.agents.maestromotif import default_skills
from libs.agents.maestromotif.skills import (
    base_context,
    default_program_source,
    harness_namespace,
)

HARNESS = harness_namespace()


def program(task: str | None = None) -> dict:
    """The default program for `task`, loaded as the runners load it."""
    return HARNESS["load"](default_program_source(task))


def play(prog: dict, contexts: list[dict], memory: dict | None = None) -> tuple[list[str], dict]:
    """select_skill on each context in turn (memory threaded); the skills and the final memory."""
    memory = {"episode_seed": 0} if memory is None else memory
    chosen = []
    for ctx in contexts:
        skill, memory = HARNESS["select"](prog, ctx, memory)
        chosen.append(skill)
    return chosen, memory


def at(depth: int, dnum: int = 0, branch: int = 3, **kw) -> dict:
    return base_context(depth=depth, dnum=dnum, dlevel=depth - branch if dnum == 2 else depth, **kw)


def test_the_program_is_a_standalone_stdlib_module():
    tree = ast.parse(default_program_source())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"random"} and not any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    assert default_skills.TASK is None and len(default_skills.TASKS) == 9


def test_initiation_needs_the_shopkeeper_or_altar_and_items():
    prog = program()
    init = prog["initiation"]
    assert init("merchant", base_context(shopkeeper_in_view=True, num_items=1))
    assert not init("merchant", base_context(shopkeeper_in_view=True, num_items=0))
    assert not init("merchant", base_context(altar_in_view=True, num_items=4))
    assert init("worshipper", base_context(altar_in_view=True, num_items=1))
    assert all(init(s, base_context(num_items=0)) for s in ("discoverer", "descender", "ascender"))
    assert not init("juggler", base_context())


@pytest.mark.parametrize("task, discoverer_steps", [(None, 500), ("delphi", 50), ("buc_id", 500)])
def test_termination_follows_the_reference(task, discoverer_steps):
    term = program(task)["termination"]
    ctx, start = at(2), at(2)
    assert not term("discoverer", ctx, start, discoverer_steps - 1)
    assert term("discoverer", ctx, start, discoverer_steps)
    assert not term("merchant", ctx, start, 20 * discoverer_steps - 1)
    assert term("worshipper", ctx, start, 20 * discoverer_steps)
    assert term("descender", at(3), start, 3) and not term("descender", at(2), start, 10_000)
    assert term("ascender", at(1), start, 3) and not term("ascender", at(3), start, 10_000)
    # Any skill ends, the merchant included, while a merchant / worshipper precondition holds.
    for skill in default_skills.SKILLS:
        assert term(skill, at(2, shopkeeper_in_view=True, num_items=2), start, 1)
        assert term(skill, at(2, altar_in_view=True, num_items=2), start, 1)
        assert not term(skill, at(2, altar_in_view=True, num_items=0), start, 1)


def test_the_training_policy_alternates_down_and_up_and_takes_its_chances():
    prog = program()
    skills, memory = play(prog, [at(1)])
    assert skills == ["discoverer"] and 2 <= memory["max_depth"] <= 4
    assert play(prog, [at(1)], {"episode_seed": 5})[1] == play(prog, [at(1)], {"episode_seed": 5})[1]
    memory.update(max_depth=3, mines=False)
    depth_after = {"descender": 1, "ascender": -1}
    depth, trace = 1, []
    for _ in range(12):
        skill, memory = HARNESS["select"](prog, at(depth), memory)
        trace.append(f"{skill}@{depth}")
        depth += depth_after.get(skill, 0)
    assert trace == ["descender@1", "discoverer@2", "descender@2", "discoverer@3", "ascender@3", "discoverer@2",
                     "ascender@2", "discoverer@1", "descender@1", "discoverer@2", "descender@2", "discoverer@3"]
    assert HARNESS["select"](prog, at(2, shopkeeper_in_view=True, num_items=1), memory)[0] == "merchant"
    assert HARNESS["select"](prog, at(2, altar_in_view=True, num_items=1), memory)[0] == "worshipper"
    assert HARNESS["select"](prog, at(2, altar_in_view=True, num_items=0), memory)[0] != "worshipper"


def test_the_branch_level_is_learned_on_entering_the_mines():
    prog = program("gnomish_mines")
    _, memory = play(prog, [at(1), at(2), at(4, dnum=2, branch=3)])
    assert memory["branch_depth"] == 3
    memory["skill"] = "discoverer"
    assert HARNESS["select"](prog, at(3), memory)[0] == "descender"  # the branch level: down into the Mines
    assert HARNESS["select"](prog, at(4), memory)[0] == "ascender"  # main dungeon below it: back up


def test_navigation_task_policies():
    delphi = program("delphi")
    assert play(delphi, [at(1), at(1), at(5), at(8)])[0] == ["discoverer", "descender", "descender", "descender"]
    skills, _ = play(delphi, [at(1), at(4, dnum=2, branch=3)])
    assert skills[-1] == "ascender"  # out of the Mines first
    minetown = program("minetown")
    assert play(minetown, [at(1), at(5, dnum=2), at(7, dnum=2), at(8, dnum=2)])[0] == [
        "discoverer", "descender", "descender", "discoverer"]


def test_interaction_and_composite_task_policies():
    shop = {"shopkeeper_in_view": True, "num_items": 2}
    for task in ("transaction", "price_id"):
        assert play(program(task), [at(1), at(3, **shop)])[0][-1] == "merchant"
    assert play(program("buc_id"), [at(1), at(1, altar_in_view=True, num_items=2)])[0][-1] == "worshipper"
    assert play(program("buc_id"), [at(1), at(1, **shop)])[0][-1] == "merchant"  # the reference's select_skill
    level_up = program("level_up_sell")
    skills, memory = play(level_up, [at(1), at(1, xp_level=3, **shop), at(3, xp_level=4, **shop)])
    assert skills == ["discoverer", "discoverer", "merchant"] and memory["items_sold"]
    golden = program("golden_exit")
    assert play(golden, [at(1), at(2, gold=19, xp_level=9)])[0][-1] != "ascender"
    assert play(golden, [at(1), at(1, gold=20, xp_level=4)])[0][-1] == "ascender"  # at depth 1: leave


def test_discovery_hunger_explores_the_mines_eats_then_heads_for_the_oracle():
    prog = program("discovery_hunger")
    mines = {"dnum": 2, "branch": 3}
    skills, memory = play(prog, [at(1), at(3), at(4, **mines), at(4, **mines), at(5, hunger=2, **mines)])
    assert skills[2:] == ["discoverer", "discoverer", "discoverer"] and memory["was_hungry"]
    assert not memory["eaten_food"]
    skills, memory = play(prog, [at(5, hunger=1, **mines), at(4, **mines), at(3), at(5)], memory)
    assert memory["eaten_food"] and skills == ["ascender", "ascender", "descender", "descender"]
    _, by_message = play(prog, [at(1), at(4, **mines), at(4, message="You finish eating the food ration.", **mines)])
    assert by_message["eaten_food"]


def test_an_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="unknown task 'moria'"):
        default_skills.select_skill_for_task("moria", at(1), {})
