"""libs/agents/maestromotif/skills.py: the skill context, the runners (in-process and sandboxed give the same
answers; failures are one-line SkillProgramErrors) and call-and-return scheduling."""

from __future__ import annotations

import pytest

from libs.agents.maestromotif import default_skills
from libs.agents.maestromotif import skills as sk
from libs.sandbox import process as sandbox_process
from libs.train.errors import UserError

needs_bwrap = pytest.mark.skipif(sandbox_process.bwrap_problem() is not None, reason="bubblewrap is missing")

FAST = sk.SkillSandboxSettings(call_timeout_s=0.5, start_timeout_s=10.0, max_restarts=1)

MISBEHAVING = '''
import time

def initiation(skill, ctx):
    if skill == "merchant":
        return 1  # not a bool
    return True

def termination(skill, ctx, start_ctx, steps):
    if skill == "ascender":
        while True:
            pass
    if skill == "merchant":
        return ctx["no such key"]
    return ctx["depth"] > start_ctx["depth"]

def select_skill(ctx, memory):
    print("thinking about depth", ctx["depth"])  # must not garble the replies
    memory["calls"] = memory.get("calls", 0) + 1
    if ctx["depth"] == 7:
        return "dancer"
    if ctx["depth"] == 8:
        memory["bad"] = {1, 2}
    return "descender"
'''


def test_the_context_interface_and_its_checks():
    ctx = sk.base_context(depth=3, shopkeeper_in_view=True)
    assert set(ctx) == set(sk.CONTEXT_KEYS) and sk.context_problems(ctx) == []
    assert sk.context_problems({**ctx, "depth": 3.0, "gold": True, "extra": 1}) == [
        "unknown key 'extra'", "depth is float, not int", "gold is bool, not int"]
    assert "missing key 'message'" in sk.context_problems({k: v for k, v in ctx.items() if k != "message"})
    with pytest.raises(KeyError):
        sk.base_context(dungeon=1)
    assert sk.SKILLS == default_skills.SKILLS and set(sk.SKILL_DESCRIPTIONS) == set(sk.SKILLS)


def test_default_program_sources_set_the_task():
    assert sk.default_program_source() == sk.DEFAULT_SKILLS_PATH.read_text()
    delphi = sk.default_program_source("delphi")
    assert "\nTASK = 'delphi'  #" in delphi and "\nTASK = None" not in delphi
    with pytest.raises(UserError, match="skill task 'moria': unknown"):
        sk.default_program_source("moria")


def _runners(source: str):
    return [sk.InProcessRunner(source), sk.SandboxedRunner(source, FAST)]


@needs_bwrap
def test_in_process_and_sandboxed_runners_agree_on_a_batch():
    ctxs = [sk.base_context(depth=1 + i % 3, dlevel=1 + i % 3, shopkeeper_in_view=i % 4 == 0, step=i)
            for i in range(32)]
    starts = [sk.base_context(depth=2, dlevel=2) for _ in ctxs]
    answers = []
    for runner in _runners(sk.default_program_source()):
        with runner:
            answers.append((runner.initiation_batch(["merchant"] * 32, ctxs),
                            runner.termination_batch(["descender"] * 32, ctxs, starts, [5] * 32),
                            runner.select_batch(ctxs, [{"episode_seed": i} for i in range(32)]),
                            runner.select_batch([], [])))
    assert answers[0] == answers[1]
    initiated, ended, selected, empty = answers[0]
    assert initiated == [i % 4 == 0 for i in range(32)] and empty == []
    assert ended == [i % 4 == 0 or ctxs[i]["depth"] > 2 for i in range(32)]
    assert all(skill == "discoverer" and memory["episode_seed"] == i for i, (skill, memory) in enumerate(selected))


@needs_bwrap
@pytest.mark.parametrize("kind", ["in_process", "sandboxed"])
def test_program_misbehaviour_is_a_one_line_error(kind):
    runner = sk.InProcessRunner(MISBEHAVING) if kind == "in_process" else sk.SandboxedRunner(MISBEHAVING, FAST)
    ctx = sk.base_context(depth=2)
    with runner:
        with pytest.raises(sk.SkillProgramError, match="initiation returned int '1', not a bool"):
            runner.initiation_batch(["discoverer", "merchant"], [ctx, ctx])
        with pytest.raises(sk.SkillProgramError, match="termination raised KeyError: 'no such key'"):
            runner.termination_batch(["merchant"], [ctx], [ctx], [1])
        with pytest.raises(sk.SkillProgramError, match="select_skill returned 'dancer', not one of discoverer"):
            runner.select_batch([sk.base_context(depth=7)], [{}])
        with pytest.raises(sk.SkillProgramError, match="memory that is not JSON"):
            runner.select_batch([sk.base_context(depth=8)], [{}])
        # After errors inside the program the same process (and its answers) carry on.
        assert runner.select_batch([ctx], [{"calls": 4}]) == [("descender", {"calls": 5})]


@needs_bwrap
def test_a_sandboxed_call_that_hangs_is_killed_then_restarted_until_the_runner_gives_up():
    ctx = sk.base_context(depth=2)
    with sk.SandboxedRunner(MISBEHAVING, FAST) as runner:
        assert runner.termination_batch(["descender"], [ctx], [ctx], [1]) == [False]
        with pytest.raises(sk.SkillProgramError, match=r"termination: .*did not answer within 0.5 s \(killed\)"):
            runner.termination_batch(["ascender"], [ctx], [ctx], [1])
        assert runner.termination_batch(["descender"], [sk.base_context(depth=3)], [ctx], [1]) == [True]  # restarted
        with pytest.raises(sk.SkillProgramError, match="killed"):
            runner.termination_batch(["ascender"], [ctx], [ctx], [1])
        with pytest.raises(sk.SkillProgramError, match="gave up after 1 restarts"):
            runner.termination_batch(["descender"], [ctx], [ctx], [1])


def test_a_program_that_does_not_load_is_refused_in_process():
    with pytest.raises(sk.SkillProgramError, match="does not define termination, select_skill"):
        sk.InProcessRunner("def initiation(skill, ctx):\n    return True\n")


def test_the_scheduler_calls_and_returns():
    scheduler = sk.SkillScheduler(sk.InProcessRunner(sk.default_program_source("delphi")), num_envs=2, seed=1)
    start = sk.base_context()
    skills, changed = scheduler.update([start, start], [True, True])
    assert skills == ["discoverer", "discoverer"] and changed == [True, True]
    assert scheduler.memories[0]["episode_seed"] != scheduler.memories[1]["episode_seed"]
    assert "delphi" in default_skills.SHORT_DISCOVERER_TASKS
    short = 50  # delphi's discoverer runs 50 steps
    for step in range(1, short):
        skills, changed = scheduler.update([sk.base_context(step=step)] * 2, [False, False])
        assert skills == ["discoverer", "discoverer"] and changed == [False, False]
    skills, changed = scheduler.update([sk.base_context(step=short)] * 2, [False, False])
    assert skills == ["descender", "descender"] and changed == [True, True]
    # env 0 reaches depth 2 (the descender ends, delphi descends again); env 1 is reset.
    deeper = sk.base_context(depth=2, dlevel=2, step=short + 1)
    skills, changed = scheduler.update([deeper, start], [False, True])
    assert skills == ["descender", "discoverer"] and changed == [True, True]
    assert scheduler.start_ctxs[0] == deeper and scheduler.steps == [0, 0]


@needs_bwrap
def test_the_sandbox_not_the_static_check_is_the_boundary(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    reader = sk.default_program_source().replace(
        '    first = "skill" not in memory', f'    memory["leak"] = open({str(secret)!r}).read()\n'
                                            '    first = "skill" not in memory')
    assert sk.InProcessRunner(reader).select_batch([sk.base_context()], [{}])[0][1]["leak"] == "host secret"
    with sk.SandboxedRunner(reader, FAST) as runner, \
            pytest.raises(sk.SkillProgramError, match="select_skill raised FileNotFoundError"):
        runner.select_batch([sk.base_context()], [{}])
