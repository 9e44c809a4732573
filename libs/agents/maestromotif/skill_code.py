"""Checking, storing and generating skill programs (skills.py describes what a program is).

A program is accepted only when (1) `static_problems` finds nothing (syntax, the three functions, imports from
a small allow-list, no open/exec/eval/__import__/..., no dunder attributes: an early, readable reason, not the
security boundary) and (2) it passes its unit cases IN THE SANDBOX (`check_program`: `Sandbox.run` of the
skills harness with the cases as JSON, a per-case time limit and tight limits). `SkillCodeStore` keeps the
accepted versions (v0 = the hand-written defaults) and journals every attempt; `generate` asks an LLM for a
program (the reference's code-generation prompt, adapted to this interface) and retries once with the reason.

Cases are JSON dicts: {"name", "function": "initiation" | "termination" | "select_skill" | "scenario", ...,
"expect": {...}}. `select_skill` cases call the policy on each of "contexts" in turn (memory threaded, starting
from {}) and judge the last answer; `scenario` cases play a toy dungeon (each chosen skill runs to completion)
and judge the trace. DEFAULT_CASES hold for every program; TRAINING_CASES for the training policy over
skills; TASK_CASES[task] for a task's evaluation policy; `cases_for(task)` combines them.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gin

from libs.agents.maestromotif import default_skills
from libs.agents.maestromotif.skills import (
    CONTEXT_KEYS,
    SKILL_DESCRIPTIONS,
    SKILLS,
    base_context,
    default_program_source,
    harness_argv,
    harness_namespace,
    write_workspace,
)
from libs.agents.research import replies
from libs.sandbox import Limits, Sandbox
from libs.train.errors import UserError
from libs.train.rundir import append_jsonl, read_jsonl

ALLOWED_IMPORTS = frozenset({"__future__", "bisect", "collections", "dataclasses", "enum", "functools", "heapq",
                             "itertools", "json", "math", "random", "re", "statistics", "string", "typing"})
FORBIDDEN_NAMES = frozenset({"open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars",
                             "getattr", "setattr", "delattr", "input", "breakpoint", "exit", "quit", "help",
                             "memoryview", "__builtins__"})
REQUIRED_FUNCTIONS = {"initiation": 2, "termination": 4, "select_skill": 2}
MAX_SOURCE_CHARS = 100_000
CHECK_LIMITS = Limits(wall_s=20.0, memory_mb=256, processes=8, output_bytes=1 << 20, file_bytes=1 << 20)
SECONDS_PER_CASE = 1.0


@dataclasses.dataclass
class CheckResult:
    """Whether a program was accepted, why (one line), each failed case; `version` once stored."""

    ok: bool
    reason: str
    failures: list[str] = dataclasses.field(default_factory=list)
    version: int | None = None


# -- static check --------------------------------------------------------------------------------------------


def static_problems(source: str) -> list[str]:
    """Reasons to reject `source` without running it ([] when none)."""
    if not isinstance(source, str) or not source.strip():
        return ["the program is empty"]
    if len(source) > MAX_SOURCE_CHARS:
        return [f"the program has {len(source)} characters (at most {MAX_SOURCE_CHARS})"]
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"syntax error at line {e.lineno}: {e.msg}"]
    except ValueError as e:
        return [f"cannot parse the program: {e}"]
    problems = []
    defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for name, arity in REQUIRED_FUNCTIONS.items():
        node = defined.get(name)
        if node is None:
            problems.append(f"no top-level function {name}")
            continue
        positional = node.args.posonlyargs + node.args.args
        required = len(positional) - len(node.args.defaults)
        if not (required <= arity <= len(positional) or (node.args.vararg and required <= arity)):
            problems.append(f"line {node.lineno}: {name} must take {arity} positional arguments")
    for node in ast.walk(tree):
        line = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in ALLOWED_IMPORTS:
                    problems.append(f"{line}: import {alias.name} is not allowed (allowed: "
                                    f"{', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module.split(".")[0] not in ALLOWED_IMPORTS:
                problems.append(f"{line}: from {'.' * node.level}{module} import is not allowed")
        elif isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES or (_dunder(node.id) and node.id != "__name__"):
                problems.append(f"{line}: {node.id} is not allowed")
        elif isinstance(node, ast.Attribute) and _dunder(node.attr):
            problems.append(f"{line}: dunder attribute .{node.attr} is not allowed")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _dunder(node.name):
            problems.append(f"{line}: defining {node.name} is not allowed")
    return problems


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


# -- cases ---------------------------------------------------------------------------------------------------


def _initiation(name: str, skill: str, expect: bool, **ctx: Any) -> dict:
    return {"name": name, "function": "initiation", "args": [skill, base_context(**ctx)], "expect": {"equals": expect}}


def _termination(name: str, skill: str, expect: bool, start: dict, steps: int, **ctx: Any) -> dict:
    args = [skill, base_context(**ctx), base_context(**start), steps]
    return {"name": name, "function": "termination", "args": args, "expect": {"equals": expect}}


def _select(name: str, contexts: Sequence[dict], expect: dict) -> dict:
    return {"name": name, "function": "select_skill", "contexts": [base_context(**c) for c in contexts],
            "expect": expect}


def _scenario(name: str, expect: dict, turns: int = 30, **world: Any) -> dict:
    return {"name": name, "function": "scenario", "ctx": base_context(), "memory": {"episode_seed": 0},
            "turns": turns, "world": world, "expect": expect}


_SHOP = {"shopkeeper_in_view": True, "num_items": 3}
_ALTAR = {"altar_in_view": True, "num_items": 3}
_LONG = 1_000_000  # steps no sensible skill duration reaches

DEFAULT_CASES: tuple[dict, ...] = (
    _initiation("merchant may start with a shopkeeper in view and items", "merchant", True, **_SHOP),
    _initiation("merchant cannot start without a shopkeeper in view", "merchant", False, num_items=3),
    _initiation("merchant cannot start with an empty inventory", "merchant", False, shopkeeper_in_view=True,
                num_items=0),
    _initiation("worshipper may start with an altar in view and items", "worshipper", True, **_ALTAR),
    _initiation("worshipper cannot start without an altar in view", "worshipper", False, num_items=3),
    _initiation("discoverer may start anywhere", "discoverer", True),
    _termination("descender ends when depth grows", "descender", True, {"depth": 2, "dlevel": 2}, 40,
                 depth=3, dlevel=3),
    _termination("descender goes on at the same depth", "descender", False, {"depth": 2, "dlevel": 2}, 40,
                 depth=2, dlevel=2),
    _termination("ascender ends when depth shrinks", "ascender", True, {"depth": 3, "dlevel": 3}, 40,
                 depth=2, dlevel=2),
    _termination("ascender goes on at the same depth", "ascender", False, {"depth": 3, "dlevel": 3}, 40,
                 depth=3, dlevel=3),
    _termination("discoverer goes on after one step", "discoverer", False, {}, 1, step=1, turn=2),
    _termination("discoverer ends eventually", "discoverer", True, {}, _LONG, step=_LONG, turn=_LONG),
    _termination("discoverer ends when a shopkeeper comes into view", "discoverer", True, {}, 5, step=5,
                 turn=6, **_SHOP),
    _termination("descender ends when an altar comes into view", "descender", True, {"depth": 2}, 5, depth=2,
                 step=5, **_ALTAR),
    _termination("merchant ends eventually", "merchant", True, {}, _LONG, step=_LONG, turn=_LONG),
    _select("select_skill names a known skill at the start", [{}], {"one_of": list(SKILLS)}),
    _select("select_skill names a known skill later on", [{}, {"depth": 2, "dlevel": 2, "step": 600}],
            {"one_of": list(SKILLS)}),
)

TRAINING_CASES: tuple[dict, ...] = (
    _select("the merchant runs when a shopkeeper is in view", [{}, _SHOP], {"equals": "merchant"}),
    _select("the worshipper runs when an altar is in view", [{}, _ALTAR], {"equals": "worshipper"}),
    _scenario("explores down past depth 1 and comes back up, never selling without a shop",
              {"max_depth_at_least": 2, "returns_up": True, "includes": ["discoverer"],
               "never": ["merchant", "worshipper", "exit"]}),
)

TASK_CASES: dict[str, tuple[dict, ...]] = {
    "gnomish_mines": (_scenario("reaches the Gnomish Mines", {"reaches": {"dnum": 2}}, branch_depth=2,
                                mines=True),),
    "delphi": (_scenario("reaches depth 9 of the Dungeons of Doom", {"reaches": {"dnum": 0, "depth": 9}},
                         mines=False),),
    "minetown": (_scenario("reaches the Mines and goes down to Minetown's depths",
                           {"reaches": {"dnum": 2, "depth": 5}}, branch_depth=2, mines=True),),
    "transaction": (_select("the merchant runs when a shopkeeper is in view", [{}, _SHOP],
                            {"equals": "merchant"}),),
    "price_id": (_select("the merchant runs when a shopkeeper is in view", [{}, _SHOP], {"equals": "merchant"}),),
    "buc_id": (_select("the worshipper runs when an altar is in view", [{}, _ALTAR], {"equals": "worshipper"}),),
    "golden_exit": (_select("heads for the exit with the gold and the experience", [{}, {"gold": 40,
                            "xp_level": 6}], {"equals": "ascender"}),),
    "level_up_sell": (_select("stays to level up before selling", [{}, _SHOP], {"equals": "discoverer"}),
                      _select("sells once levelled up", [{}, {"xp_level": 5, **_SHOP}], {"equals": "merchant"})),
    "discovery_hunger": (_scenario("reaches the Gnomish Mines first", {"reaches": {"dnum": 2}}, branch_depth=2,
                                   mines=True),),
}


def cases_for(task: str | None = None) -> tuple[dict, ...]:
    """The cases a program for `task` (None: the training policy over skills) must pass."""
    if task is not None and task not in default_skills.TASKS:
        raise UserError(f"skill task {task!r}: unknown; tasks are {', '.join(default_skills.TASKS)}")
    return DEFAULT_CASES + (TRAINING_CASES if task is None else TASK_CASES[task])


def judge(case: dict, outcome: dict) -> str | None:
    """Why `outcome` ({"value"} or {"error"}) fails `case`, or None when it passes."""
    name = case["name"]
    if "error" in outcome:
        return f"{name}: {outcome['error']}"
    value, expect = outcome["value"], case["expect"]
    if "equals" in expect and value != expect["equals"]:
        return f"{name}: expected {expect['equals']!r}, got {value!r}"
    if "one_of" in expect and value not in expect["one_of"]:
        return f"{name}: got {value!r}, not one of {expect['one_of']}"
    if case["function"] == "scenario":
        return _judge_trace(name, value, expect)
    return None


def _judge_trace(name: str, trace: list, expect: dict) -> str | None:
    skills = [s for s, _, _ in trace]
    depths = [d for s, d, _ in trace if s != "exit"]
    short = " ".join(f"{s}@{d}" for s, d, _ in trace[:14]) + (" ..." if len(trace) > 14 else "")
    deepest = max(depths, default=0)
    if deepest < expect.get("max_depth_at_least", 0):
        return f"{name}: never went below depth {deepest} ({short})"
    if expect.get("returns_up") and not any(d < deepest for d in depths[depths.index(deepest):]):
        return f"{name}: never came back up from depth {deepest} ({short})"
    for skill in expect.get("includes", ()):
        if skill not in skills:
            return f"{name}: never selected the {skill} ({short})"
    for skill in expect.get("never", ()):
        if skill in skills:
            return f"{name}: selected {'to leave the dungeon' if skill == 'exit' else 'the ' + skill} ({short})"
    reach = expect.get("reaches")
    if reach and not any(dnum == reach.get("dnum", dnum) and d >= reach.get("depth", 0) for s, d, dnum in trace
                         if s != "exit"):
        return f"{name}: never reached {reach} in {len(trace)} selections ({short})"
    return None


def _result(cases: Sequence[dict], report: dict) -> CheckResult:
    if "load_error" in report:
        return CheckResult(False, report["load_error"], [report["load_error"]])
    outcomes = report.get("outcomes", [])
    if len(outcomes) != len(cases):
        return CheckResult(False, "the check harness returned a malformed report", [])
    failures = [f for f in (judge(c, o) for c, o in zip(cases, outcomes)) if f is not None]
    if failures:
        return CheckResult(False, f"{len(failures)} of {len(cases)} cases failed; first: {failures[0]}", failures)
    return CheckResult(True, f"passed {len(cases)} cases", [])


def run_cases_in_process(source: str, cases: Sequence[dict] = DEFAULT_CASES,
                         seconds: float = SECONDS_PER_CASE) -> CheckResult:
    """The cases run in THIS process: for the project's trusted programs (tests, sanity checks) only."""
    problems = static_problems(source)
    if problems:
        return CheckResult(False, f"static check: {problems[0]}", problems)
    return _result(cases, harness_namespace()["check"](source, list(cases), seconds))


def check_program(source: str, sandbox: Sandbox, cases: Sequence[dict] = DEFAULT_CASES,
                  seconds: float = SECONDS_PER_CASE, limits: Limits = CHECK_LIMITS) -> CheckResult:
    """Static problems first, then the cases in the sandbox (each within `seconds`; the whole run within
    `limits.wall_s`)."""
    problems = static_problems(source)
    if problems:
        return CheckResult(False, f"static check: {problems[0]}", problems)
    with tempfile.TemporaryDirectory(prefix="skill-check-") as directory:
        write_workspace(directory, source, {"cases": list(cases), "seconds": seconds})
        run = sandbox.run(harness_argv("check"), directory, limits=limits)
    if run.timed_out:
        return CheckResult(False, f"the checks took over {limits.wall_s:g} s and were killed (an endless loop?)")
    if run.returncode != 0:
        why = {"memory": " (memory limit)", "file_size": " (file-size limit)"}.get(run.killed or "", "")
        tail = (run.stderr.strip().splitlines() or [""])[-1][:200]
        return CheckResult(False, f"the checks exited with code {run.returncode}{why}" + (f": {tail}" if tail else ""))
    try:
        report = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return CheckResult(False, "the checks printed no report")
    return _result(cases, report)


# -- the store -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StoredProgram:
    version: int
    source: str


class SkillCodeStore:
    """Accepted skill programs of one policy (`task` None: training) as v0.py (the defaults), v1.py, ... in
    `directory`, and journal.jsonl with every attempt (origin, verdict, reason, failures, source)."""

    def __init__(self, directory: str | os.PathLike, task: str | None = None, sandbox: Sandbox | None = None):
        self.cases = cases_for(task)
        self.task = task
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.journal_path = str(self.directory / "journal.jsonl")
        self._sandbox = sandbox
        if not (self.directory / "v0.py").exists():
            self._write(0, default_program_source(task))
            self.record("defaults", CheckResult(True, "the hand-written defaults", [], 0), "")

    def versions(self) -> list[int]:
        return sorted(int(p.stem[1:]) for p in self.directory.glob("v*.py") if p.stem[1:].isdigit())

    def current(self) -> StoredProgram:
        """The newest accepted program."""
        version = self.versions()[-1]
        return StoredProgram(version, (self.directory / f"v{version}.py").read_text(encoding="utf-8"))

    def propose(self, source: str, origin: str, sandbox: Sandbox | None = None) -> CheckResult:
        """Checks `source` and stores it as the next version when it passes (else the current one stays);
        journals the attempt either way."""
        if sandbox is None:
            if self._sandbox is None:
                self._sandbox = Sandbox()
            sandbox = self._sandbox
        result = check_program(source, sandbox, self.cases)
        if result.ok:
            result.version = self.versions()[-1] + 1
            self._write(result.version, source)
        self.record(origin, result, source)
        return result

    def record(self, origin: str, result: CheckResult, source: str) -> None:
        """Appends one attempt to the journal."""
        append_jsonl(self.journal_path, {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "task": self.task, "origin": origin, "ok": result.ok,
            "version": result.version, "reason": result.reason, "failures": result.failures,
            "sha256": hashlib.sha256(source.encode()).hexdigest()[:16], "source": source})

    def journal(self) -> list[dict]:
        return read_jsonl(self.journal_path)

    def _write(self, version: int, source: str) -> None:
        path = self.directory / f"v{version}.py"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(source, encoding="utf-8")
        os.replace(tmp, path)


# -- generation ----------------------------------------------------------------------------------------------

SYSTEM_PROMPT = "You are a helpful assistant."

CONTEXT_DOCS = {
    "depth": "dungeon depth (1 at the top)", "dlevel": "level number within the current branch",
    "dnum": "branch: 0 the Dungeons of Doom, 2 the Gnomish Mines", "xp_level": "experience level",
    "gold": "gold pieces carried", "hp": "hit points", "hp_max": "maximum hit points",
    "hunger": "0 satiated, 1 not hungry, 2 hungry, 3 weak, 4 fainting, 5 fainted",
    "turn": "game turn", "step": "environment steps so far in this episode", "message": "the game's message",
    "shopkeeper_in_view": "a shopkeeper is on the map", "altar_in_view": "an altar is on the map",
    "stairs_down_in_view": "a down staircase is on the map", "stairs_up_in_view": "an up staircase is on the map",
    "num_items": "inventory slots in use", "in_shop": "the agent is inside a shop (best effort)",
}

TRAINING_GOAL = (
    "Find a strategy that will let the player explore fully each of the first few dungeon levels, alternating "
    "directions between going all the way down towards a maximum depth (pick it between 2 and 4 per episode), "
    "then going up towards the first dungeon level. This might get interrupted if the preconditions of the "
    "worshipper and merchant allow for them.")

BRANCHES = (
    "The Dungeons of Doom (branch number 0) constitute the main branch starting from depth 1. At branch_depth (a "
    "level between depth 2 and 4 with a second down staircase), the Gnomish Mines (branch number 2) start at "
    "branch_depth+1. The context does not say which level is branch_depth until the player is in the Mines "
    "(then branch_depth = depth - dlevel).")

TASK_GOALS = {
    "gnomish_mines": "You are faced with the task of finding the Gnomish Mines.",
    "delphi": "You are faced with the task of finding the Oracle level. The Oracle level is located in the "
              "Dungeons of Doom (branch number 0) and can appear as low as a depth of 9. Reach it as fast as "
              "possible, rather than exploring the first few levels or venturing into the Gnomish Mines.",
    "minetown": "You are faced with the task of finding Minetown. Minetown is located in the Gnomish Mines "
                "(branch number 2) and can appear as low as a depth of 8. Reach the Gnomish Mines, then head "
                "directly for Minetown, without exploring further.",
    "transaction": "You are faced with the task of interacting with a shopkeeper by successfully selling items. "
                   "Shopkeepers appear more often in the Dungeons of Doom, and only after dungeon depth 1.",
    "price_id": "You are faced with the task of interacting with a shopkeeper by attempting to sell an item to "
                "identify it (by the price offered). Shopkeepers appear more often in the Dungeons of Doom, and "
                "only after dungeon depth 1.",
    "buc_id": "You are faced with the task of interacting with an altar by successfully identifying items "
              "(blessed, uncursed or cursed). Altars appear from dungeon depth 1, more often in the Dungeons of "
              "Doom.",
    "golden_exit": "Alternate between the first three levels of the Dungeons of Doom (at least once) until you "
                   "collect a minimum of 20 gold pieces and defeat 25 monsters; finally try to quit NetHack (the "
                   "ascender at depth 1 leaves the dungeon). The context has no count of defeated monsters: use "
                   "the experience level as a proxy.",
    "level_up_sell": "Do not leave the first dungeon level until you achieve XP level 4, then find a shopkeeper "
                     "and sell an item that you have collected; finally survive for another 300 steps. "
                     "Shopkeepers only appear after dungeon depth 1 in the Dungeons of Doom.",
    "discovery_hunger": "Reach the Oracle level (Dungeons of Doom, as low as depth 9), but not before discovering "
                        "the Gnomish Mines and eating some food there after getting hungry. Eating happens while "
                        "the discoverer runs in the Mines. Immediately after eating, head as fast as possible "
                        "for the Oracle level, without more exploration.",
}


def generation_prompt(task: str | None, current_source: str) -> str:
    """The user prompt asking for a whole skill program (after the reference's initial.txt)."""
    skills = ", ".join(f'"{s}"' for s in SKILLS)
    described = " ".join(f"The {s.capitalize()} {d}." for s, d in SKILL_DESCRIPTIONS.items())
    keys = "\n".join(f"- {k} ({CONTEXT_KEYS[k].__name__}): {CONTEXT_DOCS[k]}" for k in CONTEXT_KEYS)
    goal = TRAINING_GOAL if task is None else TASK_GOALS[task]
    allowed = ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"}))
    return f"""You are to write a Python module that selects amongst a set of skills in the videogame of NetHack, \
call-and-return: the policy over skills picks a skill, the skill runs until its termination function says it \
ends, then the policy picks again. The set of skills corresponds to {{{skills}}}.

When activated, {described}

Every function receives the skill context `ctx`, a dict with these keys:
{keys}

The module must define:
def initiation(skill: str, ctx: dict) -> bool  # may this skill start now?
def termination(skill: str, ctx: dict, start_ctx: dict, steps: int) -> bool  # does the running skill, \
started at start_ctx `steps` environment steps ago, end now?
def select_skill(ctx: dict, memory: dict) -> str  # the next skill, one of the set above

{BRANCHES}

{goal}

Here is the current version of the module:
```python
{current_source.strip()}
```

Rules: import only these standard modules: {allowed}. No file, network or process access; do not use open, \
exec, eval, __import__, getattr or dunder attributes. Keep any state between calls in `memory` (JSON values \
only); it starts as {{}} or {{"episode_seed": <int>}} at each episode and select_skill may update it in place. \
Every call must return within a second. The module is checked by unit tests, for example: the descender ends \
when the depth grows, the merchant cannot start without a shopkeeper in view, select_skill returns one of the \
five skill names.

Before writing the code, write a few questions for yourself, and answer them to make sure you understand the \
assignment. Then give the complete module in one ```python block."""


_PYTHON_BLOCK = re.compile(r"^[ \t]*```(?:python3?|py)[ \t]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)


def _last_python_block(reply: str) -> str | None:
    blocks = _PYTHON_BLOCK.findall(replies.strip_thinking(reply))
    return blocks[-1] if blocks and blocks[-1].strip() else None


def retry_prompt(result: CheckResult) -> str:
    """The feedback after a rejected program."""
    details = "\n".join(f"- {f}" for f in result.failures[:8]) or f"- {result.reason}"
    return (f"Your module was rejected: {result.reason}\n{details}\n\nGo through your code, line by line, and "
            "reflect on where the issue arises from. Then give the complete corrected module in one ```python "
            "block.")


@gin.configurable("skill_code_generation", denylist=["gateway", "store", "sandbox", "task"])
async def generate(gateway: Any, store: SkillCodeStore, sandbox: Sandbox | None = None, task: str | None = None,
                   attempts: int = 2) -> CheckResult:
    """Asks the model behind `gateway` for a program for `store`'s policy (`task`, if given, must be the
    store's) and proposes it; a rejected one is retried with the reason as feedback, `attempts` tries in all.
    Returns the last attempt's CheckResult (ok with its version when one was accepted)."""
    if task is not None and task != store.task:
        raise UserError(f"generate: task {task!r} differs from the store's task {store.task!r}")
    if attempts < 1:
        raise UserError(f"generate: attempts must be >= 1, not {attempts}")
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": generation_prompt(store.task, store.current().source)}]
    result = CheckResult(False, "no attempt made")
    for attempt in range(1, attempts + 1):
        completion = await gateway.complete(messages, cache_tag=f"skill-code-{store.task}-{attempt}")
        origin = f"llm {completion.model} attempt {attempt}"
        try:
            _, code = replies.extract_plan_and_code(completion.text)
        except replies.NoCode as e:
            code = _last_python_block(completion.text)  # one that does not parse: the static check says where
            if code is None:
                result = CheckResult(False, str(e), [str(e)])
                store.record(origin, result, completion.text)
        if code is not None:
            result = store.propose(code, origin, sandbox)
        if result.ok:
            return result
        messages += [{"role": "assistant", "content": completion.text},
                     {"role": "user", "content": retry_prompt(result)}]
    return result
