"""MaestroMotif's skills and the programs that drive them (call-and-return over five skill policies).

A *skill program* is the source of one Python module (stdlib only) that defines three functions over the
*skill context* (below); the defaults are hand-written (`default_skills.py`), later versions are LLM-written
and checked (`skill_code.py`):

    initiation(skill: str, ctx: dict) -> bool        may `skill` start now?
    termination(skill: str, ctx: dict, start_ctx: dict, steps: int) -> bool
                                                     does the running `skill` (started at `start_ctx`, `steps`
                                                     env steps ago) end now?
    select_skill(ctx: dict, memory: dict) -> str     the policy over skills: the next skill when the running one
                                                     has ended (and at the start of an episode, memory == {} or
                                                     {"episode_seed": int}); it may update `memory` (a JSON dict
                                                     kept per env and episode) in place

Programs run behind a `SkillRunner`, one call per vector-env step and batch (`initiation_batch`,
`termination_batch`, `select_batch`): `InProcessRunner` for the project's own trusted defaults,
`SandboxedRunner` for LLM-written code (a persistent bubblewrap process, `libs/sandbox/service.py`). Both load
the program through the same harness (`HARNESS_SOURCE`), so both check the same things: initiation and
termination return a bool, select_skill a name in SKILLS, memory stays a JSON object. `SkillScheduler` does
the call-and-return bookkeeping for N envs on top of a runner.

The skill context is the dict the NetHack env gives per env and step (`CONTEXT_KEYS`; all values JSON types):
  depth, dlevel, dnum      blstats depth, level number within the branch, branch (0 Dungeons of Doom, 2 Mines)
  xp_level, gold, hp, hp_max, turn   blstats
  hunger                   blstats hunger state in NetHack's numbering: 0 satiated, 1 not hungry, 2 hungry,
                           3 weak, 4 fainting, 5 fainted, 6 starved
  step                     env steps so far in this episode
  message                  the decoded current message, stripped
  shopkeeper_in_view, altar_in_view, stairs_down_in_view, stairs_up_in_view   seen on the current map
  num_items                inventory slots in use
  in_shop                  best effort: the agent is inside a shop (the env documents its rule)
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self

import gin

from libs.sandbox import Limits, Sandbox
from libs.sandbox.service import SandboxService, ServiceError
from libs.train.errors import UserError

SKILLS = ("discoverer", "descender", "ascender", "merchant", "worshipper")

# The reference's skill descriptions (mklissa/maestromotif code_generation/*/initial.txt).
SKILL_DESCRIPTIONS = {
    "discoverer": "fully explores the current dungeon level, while fighting off enemies",
    "descender": "makes its way to a staircase and goes down",
    "ascender": "makes its way to a staircase and goes up",
    "merchant": "interacts with shopkeepers by selling its items",
    "worshipper": "interacts with altars by identifying its items",
}

CONTEXT_KEYS: dict[str, type] = {
    "depth": int, "dlevel": int, "dnum": int, "xp_level": int, "gold": int, "hp": int, "hp_max": int,
    "hunger": int, "turn": int, "step": int, "message": str, "shopkeeper_in_view": bool, "altar_in_view": bool,
    "stairs_down_in_view": bool, "stairs_up_in_view": bool, "num_items": int, "in_shop": bool,
}

DEFAULT_SKILLS_PATH = Path(__file__).with_name("default_skills.py")


def base_context(**overrides: Any) -> dict[str, Any]:
    """A plausible skill context at the start of a game (depth 1, nothing special in view), with overrides."""
    ctx = {"depth": 1, "dlevel": 1, "dnum": 0, "xp_level": 1, "gold": 0, "hp": 14, "hp_max": 14, "hunger": 1,
           "turn": 1, "step": 0, "message": "", "shopkeeper_in_view": False, "altar_in_view": False,
           "stairs_down_in_view": False, "stairs_up_in_view": False, "num_items": 5, "in_shop": False}
    unknown = set(overrides) - set(ctx)
    if unknown:
        raise KeyError(f"not skill context keys: {sorted(unknown)}")
    ctx.update(overrides)
    return ctx


def context_problems(ctx: Any) -> list[str]:
    """What makes `ctx` not a skill context (missing or extra keys, wrong types); [] when it is one."""
    if not isinstance(ctx, dict):
        return [f"a skill context is a dict, not {type(ctx).__name__}"]
    problems = [f"missing key {k!r}" for k in CONTEXT_KEYS if k not in ctx]
    problems += [f"unknown key {k!r}" for k in ctx if k not in CONTEXT_KEYS]
    for key, kind in CONTEXT_KEYS.items():
        value = ctx.get(key)
        if key in ctx and (type(value) is not kind):  # exact: no numpy scalars, no bool for int
            problems.append(f"{key} is {type(value).__name__}, not {kind.__name__}")
    return problems


def default_program_source(task: str | None = None) -> str:
    """The hand-written program: the training policy over skills (task None) or a task's evaluation policy
    (the same text with `TASK = "<task>"`)."""
    from libs.agents.maestromotif import default_skills

    source = DEFAULT_SKILLS_PATH.read_text()
    if task is None:
        return source
    if task not in default_skills.TASKS:
        raise UserError(f"skill task {task!r}: unknown; tasks are {', '.join(default_skills.TASKS)}")
    source, count = re.subn(r"^TASK = None\b", f"TASK = {task!r}", source, flags=re.MULTILINE)
    if count != 1:
        raise RuntimeError(f"{DEFAULT_SKILLS_PATH} must assign TASK = None exactly once")
    return source


class SkillProgram(Protocol):
    """What a skill program module defines (see the module docstring)."""

    def initiation(self, skill: str, ctx: dict) -> bool: ...

    def termination(self, skill: str, ctx: dict, start_ctx: dict, steps: int) -> bool: ...

    def select_skill(self, ctx: dict, memory: dict) -> str: ...


class SkillProgramError(RuntimeError):
    """A skill program failed at run time (raised, wrong type, timed out, crashed); one line."""


class SkillRunner(Protocol):
    """Runs one skill program over batches (one call per vector-env step, not per env)."""

    def initiation_batch(self, skills: Sequence[str], ctxs: Sequence[dict]) -> list[bool]: ...

    def termination_batch(self, skills: Sequence[str], ctxs: Sequence[dict], start_ctxs: Sequence[dict],
                          steps: Sequence[int]) -> list[bool]: ...

    def select_batch(self, ctxs: Sequence[dict], memories: Sequence[dict]) -> list[tuple[str, dict]]: ...

    def close(self) -> None: ...


# -- the harness: loads a program and calls it, the same in-process and in the sandbox (stdlib only) --------

_HARNESS_TEMPLATE = r'''"""Skill-program harness: `python harness.py serve` answers JSON-lines requests on stdin;
`python harness.py check cases.json` runs check cases and prints one JSON report. Stdlib only; what the program prints goes to stderr."""
import json
import signal
import sys

SKILLS = __SKILLS__
SIGNATURES = {"initiation": 2, "termination": 4, "select_skill": 2}


class ProgramError(Exception):
    """The program misbehaved; the message names the function."""


class CallTimeout(BaseException):  # BaseException: a program's `except Exception` does not swallow it
    pass


def load(source):
    namespace = {"__name__": "skill_program"}
    try:
        exec(compile(source, "skill_program.py", "exec"), namespace)
    except CallTimeout:
        raise
    except BaseException as e:
        raise ProgramError(f"loading the program raised {describe(e)}")
    missing = [name for name in SIGNATURES if not callable(namespace.get(name))]
    if missing:
        raise ProgramError(f"the program does not define {', '.join(missing)}")
    return namespace


def describe(e):
    text = str(e).strip().splitlines()
    return type(e).__name__ + (f": {text[0][:200]}" if text else "")


def call(program, name, *args):
    try:
        return program[name](*args)
    except (CallTimeout, ProgramError):
        raise
    except BaseException as e:
        raise ProgramError(f"{name} raised {describe(e)}")


def as_bool(value, name):
    if type(value) is not bool:
        raise ProgramError(f"{name} returned {type(value).__name__} {str(value)[:40]!r}, not a bool")
    return value


def select(program, ctx, memory):
    memory = json.loads(json.dumps(memory))  # the program's own copy
    skill = call(program, "select_skill", dict(ctx), memory)
    if not isinstance(skill, str) or skill not in SKILLS:
        raise ProgramError(f"select_skill returned {str(skill)[:40]!r}, not one of {', '.join(SKILLS)}")
    if not isinstance(memory, dict):
        raise ProgramError("select_skill left memory as something other than a dict")
    try:
        memory = json.loads(json.dumps(memory))
    except (TypeError, ValueError) as e:
        raise ProgramError(f"select_skill left memory that is not JSON ({describe(e)})")
    return [skill, memory]


def run(program, op, items):
    """The results of one batched request."""
    if op == "initiation":
        return [as_bool(call(program, "initiation", skill, dict(ctx)), "initiation") for skill, ctx in items]
    if op == "termination":
        return [as_bool(call(program, "termination", skill, dict(ctx), dict(start), steps), "termination")
                for skill, ctx, start, steps in items]
    if op == "select":
        return [select(program, ctx, memory) for ctx, memory in items]
    raise ValueError(f"unknown op {op!r}")


def simulate(program, case):
    """A toy dungeon: each selected skill is taken to run to completion; returns the trace of
    [skill, depth, dnum] per call (and ["exit", 0, 0] when the ascender leaves from depth 1)."""
    world = case.get("world", {})
    branch, into_mines = world.get("branch_depth", 3), world.get("mines", False)
    ctx, memory, trace = dict(case["ctx"]), dict(case.get("memory", {})), []
    for _ in range(case.get("turns", 30)):
        skill, memory = select(program, ctx, memory)
        trace.append([skill, ctx["depth"], ctx["dnum"]])
        ctx = dict(ctx, step=ctx["step"] + 50, turn=ctx["turn"] + 50, message="")
        if skill == "descender":
            if ctx["dnum"] == 0 and ctx["depth"] == branch and into_mines:
                ctx["dnum"] = 2
            ctx["depth"] += 1
        elif skill == "ascender":
            if ctx["depth"] == 1:
                trace.append(["exit", 0, 0])
                break
            ctx["depth"] -= 1
            if ctx["dnum"] == 2 and ctx["depth"] == branch:
                ctx["dnum"] = 0
        elif skill == "discoverer":
            for key, delta in world.get("per_discovery", {}).items():
                ctx[key] += delta
        ctx["dlevel"] = ctx["depth"] - branch if ctx["dnum"] == 2 else ctx["depth"]
    return trace


def run_case(program, case):
    function = case["function"]
    if function == "scenario":
        return simulate(program, case)
    if function == "select_skill":
        memory = {}
        for ctx in case["contexts"]:
            skill, memory = select(program, ctx, memory)
        return skill
    return run(program, {"initiation": "initiation", "termination": "termination"}[function],
               [case["args"]])[0]


def _alarm(signum, frame):
    raise CallTimeout()


def timed(seconds, fn, *args):
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check(source, cases, seconds):
    """{"outcomes": [{"value": ...} | {"error": str}, ...]} or {"load_error": str}."""
    try:
        program = timed(seconds, load, source)
    except CallTimeout:
        return {"load_error": f"loading the program took over {seconds:g} s"}
    except ProgramError as e:
        return {"load_error": str(e)}
    outcomes, stuck = [], False
    for case in cases:
        if stuck:
            outcomes.append({"error": "not run (an earlier case timed out)"})
            continue
        try:
            outcomes.append({"value": timed(seconds, run_case, program, case)})
        except CallTimeout:
            stuck = True
            outcomes.append({"error": f"took over {seconds:g} s (an endless loop?)"})
        except ProgramError as e:
            outcomes.append({"error": str(e)})
    return {"outcomes": outcomes}


def serve(source, stdin, stdout):
    program, load_error = None, None
    try:
        program = load(source)
    except ProgramError as e:
        load_error = str(e)
    for line in stdin:
        request = json.loads(line)
        try:
            if load_error is not None:
                raise ProgramError(load_error)
            reply = {"ok": True, "results": run(program, request["op"], request["items"])}
        except ProgramError as e:
            reply = {"ok": False, "error": str(e)}
        stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
        stdout.flush()


if __name__ == "__main__":
    replies, sys.stdout = sys.stdout, sys.stderr  # what the program prints goes to stderr, not into replies
    with open("program.py", encoding="utf-8") as f:
        source_text = f.read()
    if sys.argv[1] == "serve":
        serve(source_text, sys.stdin, replies)
    else:
        with open(sys.argv[2], encoding="utf-8") as f:
            spec = json.load(f)
        replies.write(json.dumps(check(source_text, spec["cases"], spec["seconds"])) + "\n")
'''

HARNESS_SOURCE = _HARNESS_TEMPLATE.replace("__SKILLS__", repr(SKILLS))


def harness_namespace() -> dict[str, Any]:
    """The harness's functions, for running trusted programs in this process."""
    namespace: dict[str, Any] = {"__name__": "skill_harness"}
    exec(compile(HARNESS_SOURCE, "skill_harness.py", "exec"), namespace)  # noqa: S102 (our own harness)
    return namespace


def write_workspace(directory: str, source: str, check_spec: dict | None = None) -> None:
    """Fills `directory` with what the sandboxed harness reads: harness.py, program.py[, cases.json]."""
    Path(directory, "harness.py").write_text(HARNESS_SOURCE, encoding="utf-8")
    Path(directory, "program.py").write_text(source, encoding="utf-8")
    if check_spec is not None:
        Path(directory, "cases.json").write_text(json.dumps(check_spec), encoding="utf-8")


def harness_argv(mode: str) -> list[str]:
    """The sandboxed interpreter: isolated (-I) and without site-packages (-S): programs get the stdlib only."""
    return [sys.executable, "-I", "-S", "harness.py", mode, *(["cases.json"] if mode == "check" else [])]


# -- runners ------------------------------------------------------------------------------------------------


class _BatchedRunner:
    """The batched calls of a `SkillRunner` over one `_run(op, items)`: one harness call per vector-env step."""

    def _run(self, op: str, items: list) -> list:
        raise NotImplementedError

    def initiation_batch(self, skills: Sequence[str], ctxs: Sequence[dict]) -> list[bool]:
        return self._run("initiation", [list(x) for x in zip(skills, ctxs, strict=True)])

    def termination_batch(self, skills, ctxs, start_ctxs, steps) -> list[bool]:
        return self._run("termination", [list(x) for x in zip(skills, ctxs, start_ctxs, steps, strict=True)])

    def select_batch(self, ctxs: Sequence[dict], memories: Sequence[dict]) -> list[tuple[str, dict]]:
        return [tuple(r) for r in self._run("select", [list(x) for x in zip(ctxs, memories, strict=True)])]

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessRunner(_BatchedRunner):
    """Runs trusted code (the project's own defaults) in this process: no isolation, no timeouts."""

    def __init__(self, source: str):
        self._harness = harness_namespace()
        try:
            self._program = self._harness["load"](source)
        except self._harness["ProgramError"] as e:
            raise SkillProgramError(f"skill program: {e}") from None

    def _run(self, op: str, items: list) -> list:
        try:
            return self._harness["run"](self._program, op, items)
        except self._harness["ProgramError"] as e:
            raise SkillProgramError(f"skill program: {e}") from None


@gin.configurable("skill_sandbox")
@dataclasses.dataclass(frozen=True)
class SkillSandboxSettings:
    """How LLM-written skill programs run during rollouts.

    Attributes:
      backend: the Sandbox backend ("auto", "bwrap", "rlimits").
      call_timeout_s: the most one batched call may take; past it the process is killed.
      start_timeout_s: the first call's limit (it includes starting the interpreter).
      memory_mb, processes: caps of the sandboxed process tree.
      max_restarts: how many times a crashed or killed process is replaced before every call fails.
    """

    backend: str = "auto"
    call_timeout_s: float = 2.0
    start_timeout_s: float = 20.0
    memory_mb: int = 256
    processes: int = 8
    max_restarts: int = 3


class SandboxedRunner(_BatchedRunner):
    """Runs an LLM-written program in a persistent sandboxed process (bubblewrap), one JSON line per batch.

    Failures raise `SkillProgramError` with one line: an exception in the program or a wrong return type
    (the process lives on), or a timeout, crash or bad reply (the process is killed). After a kill the NEXT
    call starts a fresh process (module-level state is lost; per-episode state belongs in `memory`), at most
    `settings.max_restarts` times; after that every call raises, and the caller should fall back to a trusted
    program (e.g. the store's previous version). The runner does not reject programs; `skill_code` does that
    before a program is accepted.
    """

    def __init__(self, source: str, settings: SkillSandboxSettings = SkillSandboxSettings(),
                 sandbox: Sandbox | None = None):
        self.settings = settings
        self.sandbox = sandbox if sandbox is not None else Sandbox(settings.backend)
        self._dir = tempfile.mkdtemp(prefix="skill-program-")
        write_workspace(self._dir, source)
        self._service: SandboxService | None = None
        self._starts = 0
        self._fresh = False

    def _ensure(self) -> SandboxService:
        if self._service is None:
            if self._starts > self.settings.max_restarts:
                raise SkillProgramError(f"skill program: gave up after {self.settings.max_restarts} restarts "
                                        "of its sandboxed process")
            limits = Limits(wall_s=self.settings.call_timeout_s, memory_mb=self.settings.memory_mb,
                            processes=self.settings.processes, output_bytes=16 << 20, file_bytes=1 << 20)
            self._service = SandboxService(harness_argv("serve"), self._dir, limits, self.sandbox,
                                           name="skill program")
            self._starts += 1
            self._fresh = True
        return self._service

    def _run(self, op: str, items: list) -> list:
        if not items:
            return []
        service = self._ensure()
        timeout = self.settings.start_timeout_s if self._fresh else self.settings.call_timeout_s
        try:
            reply = service.request({"op": op, "items": items}, timeout_s=timeout)
        except ServiceError as e:
            self._service = None
            raise SkillProgramError(f"skill program {op}: {e}") from None
        self._fresh = False
        if not isinstance(reply, dict) or not reply.get("ok") or len(reply.get("results", ())) != len(items):
            error = reply.get("error") if isinstance(reply, dict) else None
            raise SkillProgramError(f"skill program: {error or 'a malformed reply from the harness'}")
        return reply["results"]

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None
        if os.path.isdir(self._dir):
            shutil.rmtree(self._dir, ignore_errors=True)


# -- call-and-return over N envs ----------------------------------------------------------------------------


class SkillScheduler:
    """Which skill each of N envs runs: at an episode's start `select_skill` picks one (fresh memory holding
    `episode_seed`); afterwards each step asks `termination` for every env and `select_skill` for those whose
    skill ended. Two batched runner calls per step at most."""

    def __init__(self, runner: SkillRunner, num_envs: int, seed: int = 0):
        self.runner = runner
        self.num_envs = num_envs
        self._rng = random.Random(seed)
        self.skills: list[str | None] = [None] * num_envs
        self.start_ctxs: list[dict | None] = [None] * num_envs
        self.steps = [0] * num_envs
        self.memories: list[dict] = [{} for _ in range(num_envs)]

    def update(self, ctxs: Sequence[dict], episode_starts: Sequence[bool]) -> tuple[list[str], list[bool]]:
        """Given each env's context after its step (`episode_starts[i]`: env i was just reset), returns the
        skill each env runs now and whether it changed (a new episode counts as a change)."""
        if len(ctxs) != self.num_envs or len(episode_starts) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} contexts and flags")
        running = [i for i in range(self.num_envs) if not episode_starts[i] and self.skills[i] is not None]
        for i in running:
            self.steps[i] += 1
        ended = self.runner.termination_batch([self.skills[i] for i in running], [ctxs[i] for i in running],
                                              [self.start_ctxs[i] for i in running],
                                              [self.steps[i] for i in running])
        choose = [i for i, done in zip(running, ended) if done]
        for i in range(self.num_envs):
            if episode_starts[i] or self.skills[i] is None:
                self.memories[i] = {"episode_seed": self._rng.randrange(1 << 31)}
                choose.append(i)
        changed = [False] * self.num_envs
        for i, (skill, memory) in zip(choose, self.runner.select_batch([ctxs[i] for i in choose],
                                                                       [self.memories[i] for i in choose])):
            self.skills[i], self.memories[i] = skill, memory
            self.start_ctxs[i], self.steps[i], changed[i] = ctxs[i], 0, True
        return list(self.skills), changed
