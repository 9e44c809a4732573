"""Hyperparameters a task marks in its starter code, for operators that tune them by rule.

A mark is a trailing comment on a one-line assignment of a literal, in Python or gin:

    LEARNING_RATE = 0.1  # tune: [0.01, 0.03, 0.1, 0.3]      candidate values (any Python literals)
    WEIGHT_DECAY = 1e-4  # tune: log(1e-6, 1e-2)             log-uniform float range, bounds inclusive
    HIDDEN = 32  # tune: int(8, 256)                         integer range, bounds inclusive
    MOMENTUM = 0.9  # tune: float(0.0, 0.99)                 uniform float range
    make_optimizer.adam_lr = 1e-3  # tune: log(3e-4, 1e-2)  a gin binding (dotted name)

`parse_tunables(source)` lists them; `apply_tunable(source, name, value)` rewrites one assignment's value
and keeps the line's mark and indentation, so tuning can go on from the result. A malformed mark raises
`TunableError` naming the line.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import random
import re
from typing import Any

_ASSIGNMENT = re.compile(r"^(?P<indent>[ \t]*)(?P<name>[A-Za-z_][\w.]*)(?P<eq>\s*=\s*)(?P<value>.*?)(?P<gap>\s*)$")
_TUNE = re.compile(r"^#\s*tune:\s*(?P<spec>.*?)\s*$")
_RANGE = re.compile(r"^(log|int|float)\((.*)\)$")


class TunableError(ValueError):
    """A malformed `# tune:` mark, or a value it does not allow."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A range of values: kind 'log' (log-uniform floats), 'int' or 'float'; both bounds inclusive."""

    kind: str
    low: float
    high: float

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        return self.low <= value <= self.high


@dataclasses.dataclass(frozen=True)
class Tunable:
    """One marked assignment: its name, 1-based line, current value, and allowed values."""

    name: str
    line: int
    value: Any
    choices: tuple | None = None
    range: Range | None = None

    def allows(self, value: Any) -> bool:
        if self.choices is not None:
            return any(_same(value, c) for c in self.choices)
        return self.range.contains(value)

    def candidates(self, n: int = 5) -> list:
        """The choices, or `n` evenly spaced points of the range (geometric for 'log'), without repeats."""
        if self.choices is not None:
            return list(self.choices)
        low, high = self.range.low, self.range.high
        if n < 2 or low == high:
            return [low]
        if self.range.kind == "log":
            points = [low * (high / low) ** (i / (n - 1)) for i in range(n)]
            return [float(f"{p:.3g}") for p in points]
        points = [low + (high - low) * i / (n - 1) for i in range(n)]
        if self.range.kind == "int":
            return sorted({round(p) for p in points})
        return [float(f"{p:.4g}") for p in points]

    def sample(self, rng: random.Random) -> Any:
        """A random allowed value: a choice, or a draw from the range."""
        if self.choices is not None:
            return rng.choice(self.choices)
        low, high = self.range.low, self.range.high
        if self.range.kind == "int":
            return rng.randint(int(low), int(high))
        if self.range.kind == "log":
            return float(f"{math.exp(rng.uniform(math.log(low), math.log(high))):.3g}")
        return float(f"{rng.uniform(low, high):.4g}")


def _same(a: Any, b: Any) -> bool:
    """Equal, and of one type (an int and a float may match; a bool only a bool)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b and (type(a) is type(b) or {type(a), type(b)} <= {int, float})


def _literal(text: str, what: str, line: int) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise TunableError(f"line {line}: {what} {text.strip()!r} is not a literal") from None


def _parse_spec(spec: str, line: int) -> tuple[tuple | None, Range | None]:
    match = _RANGE.match(spec)
    if match:
        kind, args = match.groups()
        bounds = _literal(f"({args},)", "range", line)
        if (len(bounds) != 2 or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds)
                or bounds[0] > bounds[1]):
            raise TunableError(f"line {line}: {kind}(low, high) needs two numbers with low <= high, got {spec!r}")
        if kind == "int" and not all(isinstance(b, int) for b in bounds):
            raise TunableError(f"line {line}: int(low, high) needs integer bounds, got {spec!r}")
        if kind == "log" and bounds[0] <= 0:
            raise TunableError(f"line {line}: log(low, high) needs low > 0, got {spec!r}")
        return None, Range(kind, *bounds)
    choices = _literal(spec, "choices", line)
    if not isinstance(choices, list) or not choices:
        raise TunableError(f"line {line}: a mark is a non-empty list of values, log(a, b), int(a, b) or "
                           f"float(a, b); got {spec!r}")
    return tuple(choices), None


def _split_comment(line: str) -> tuple[str, str]:
    """(code, comment) at the first `#` outside a string literal; comment is '' without one."""
    quote = None
    escaped = False
    for i, char in enumerate(line):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[:i], line[i:]
    return line, ""


def _marked(line: str):
    """(assignment match, mark spec) for a marked assignment line, else None."""
    code, comment = _split_comment(line)
    tune = _TUNE.match(comment)
    if tune is None:
        return None
    return _ASSIGNMENT.match(code), tune["spec"]


def parse_tunables(source: str) -> list[Tunable]:
    """The marked assignments of `source`, in order. Raises TunableError on a malformed or repeated mark."""
    found: dict[str, Tunable] = {}
    for number, text in enumerate(source.splitlines(), start=1):
        marked = _marked(text)
        if marked is None:
            continue
        match, spec = marked
        if match is None:
            raise TunableError(f"line {number}: a `# tune:` mark must end a one-line assignment `NAME = value`")
        name = match["name"]
        if name in found:
            raise TunableError(f"line {number}: {name} is marked twice (first on line {found[name].line})")
        value = _literal(match["value"], "value", number)
        choices, value_range = _parse_spec(spec, number)
        tunable = Tunable(name, number, value, choices, value_range)
        if not tunable.allows(value):
            raise TunableError(f"line {number}: {name} = {value!r} is outside its own mark {spec}")
        found[name] = tunable
    return list(found.values())


def format_value(value: Any) -> str:
    """A literal for the value, readable by Python and gin (floats keep their shortest form)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def apply_tunable(source: str, name: str, value: Any) -> str:
    """`source` with `name`'s marked assignment set to `value`; the mark stays. Raises TunableError if
    `name` is not marked or its mark does not allow `value`."""
    by_name = {t.name: t for t in parse_tunables(source)}
    if name not in by_name:
        raise TunableError(f"{name} is not a marked tunable (marked: {', '.join(by_name) or 'none'})")
    tunable = by_name[name]
    if not tunable.allows(value):
        allowed = list(tunable.choices) if tunable.choices is not None else tunable.range
        raise TunableError(f"{name} = {value!r} is not allowed by its mark ({allowed})")
    lines = source.splitlines(keepends=True)
    text = lines[tunable.line - 1]
    body = text.rstrip("\r\n")
    code, comment = _split_comment(body)
    match = _ASSIGNMENT.match(code)
    lines[tunable.line - 1] = (f"{match['indent']}{name}{match['eq']}{format_value(value)}{match['gap'] or '  '}"
                               f"{comment}{text[len(body):]}")
    return "".join(lines)
