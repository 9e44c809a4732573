r"""Parsing and validating the model's `\boxed{JSON}` answers (see `prompts.py`).

`extract_boxed_json` finds the JSON objects inside `\boxed{...}` and parses
them leniently with json5 (single quotes, trailing commas, unquoted keys; bare
integer keys such as `{0: 0.5}` are quoted on a second try), the last box
first. `parse_answer` checks the answer of one query kind against the listed
move keys and raises `ParseError` with a short reason for anything unusable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import json5

_BOX = re.compile(r"\\boxed\s*\{")
_BARE_INT_KEY = re.compile(r"([{,]\s*)(-?\d+)(\s*:)")
_KEYS = {"value": "state_value_estimation", "explore": "explore", "priors": "operation_scores"}
_MOVE_KEYS = {"countdown": "operation_values", "sudoku": "move_values"}


class ParseError(ValueError):
    r"""A reply without a usable `\boxed{JSON}` answer."""


def balanced_object(text: str, start: int) -> str | None:
    """The text from the '{' at `start` to its matching '}' (quoted strings skipped), or None."""
    depth, quote, i = 0, None, start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
        i += 1
    return None


def _candidates(text: str) -> list[str]:
    """The JSON object text of each `\\boxed{...}`, in order of appearance."""
    found = []
    for m in _BOX.finditer(text):
        i = m.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            obj = balanced_object(text, i)
        else:  # \boxed{"explore": true}: the box's own braces hold the object's contents
            obj = balanced_object(text, m.end() - 1)
        if obj is not None:
            found.append(obj)
    return found


_INVALID = object()


def _loads(text: str) -> Any:
    """The parsed text, or _INVALID. Strict JSON first: json5 is pure Python and ~100x slower."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return json5.loads(text)
    except (ValueError, RecursionError):
        return _INVALID


def extract_boxed_json(text: str) -> Any:
    r"""The last `\boxed{ {...} }` in `text` whose JSON object parses (json5)."""
    candidates = _candidates(text or "")
    if not candidates:
        raise ParseError("no \\boxed{...} JSON object in the reply")
    for obj in reversed(candidates):
        for attempt in (obj, _BARE_INT_KEY.sub(r'\1"\2"\3', obj)):
            parsed = _loads(attempt)
            if parsed is not _INVALID:
                return parsed
    raise ParseError(f"no \\boxed{{...}} content parses as JSON: {candidates[-1][:80]!r}")


def _number(x: Any, what: str) -> float:
    """A finite real number (int, float or numeric string; never a bool)."""
    if isinstance(x, str):
        try:
            x = float(x.strip())
        except ValueError:
            raise ParseError(f"{what} is not a number: {x!r}") from None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ParseError(f"{what} is not a number: {x!r}"[:120])
    try:
        x = float(x)
    except OverflowError:
        raise ParseError(f"{what} is too large") from None
    if not math.isfinite(x):
        raise ParseError(f"{what} is not finite: {x!r}")
    return x


def _unit(x: Any, what: str) -> float:
    x = _number(x, what)
    if not 0.0 <= x <= 1.0:
        raise ParseError(f"{what} is outside [0, 1]: {x!r}")
    return x


def _key(k: Any) -> int | None:
    if isinstance(k, int) and not isinstance(k, bool):
        return k
    if isinstance(k, str) and re.fullmatch(r"\s*-?\d+\s*", k):
        return int(k)
    return None


def _per_key(answer: Any, field: str, keys: Sequence[int], check) -> dict[int, float]:
    """Listed keys -> checked numbers, from a dict (unknown keys ignored) or an in-order list."""
    if isinstance(answer, list):
        if len(answer) != len(keys):
            raise ParseError(f"`{field}` is a list of {len(answer)} numbers for {len(keys)} listed keys")
        pairs = list(zip(keys, answer))
    elif isinstance(answer, dict):
        listed = set(keys)
        pairs = [(k, v) for k, v in ((_key(k), v) for k, v in answer.items()) if k in listed]
        if keys and not pairs:
            raise ParseError(f"`{field}` has none of the listed keys {sorted(listed)}")
    else:
        raise ParseError(f"`{field}` must be a dictionary from keys to numbers, got {answer!r}"[:160])
    return {k: check(v, f"`{field}` for key {k}") for k, v in pairs}


def _nonnegative(x: Any, what: str) -> float:
    x = _number(x, what)
    if x < 0:
        raise ParseError(f"{what} is negative: {x!r}")
    return x


def _explore(x: Any) -> bool:
    if isinstance(x, bool):
        return x
    if isinstance(x, str) and x.strip().lower() in ("true", "false"):
        return x.strip().lower() == "true"
    raise ParseError(f"`explore` must be true or false, got {x!r}"[:120])


def _field(kind: str, game: str) -> str:
    if game not in _MOVE_KEYS:
        raise ValueError(f"unknown game {game!r}; expected one of {', '.join(_MOVE_KEYS)}")
    if kind == "child_values":
        return _MOVE_KEYS[game]
    if kind in _KEYS:
        return _KEYS[kind]
    raise ValueError(f"unknown query kind {kind!r}; expected child_values, value, explore or priors")


def response_schema(kind: str, game: str, keys: Sequence[int]) -> dict:
    """The JSON schema of one query's answer object, for providers that enforce `response_format`
    (the reply is then that bare object, without the box)."""
    field = _field(kind, game)
    unit = {"type": "number", "minimum": 0, "maximum": 1}
    if kind in ("child_values", "priors"):
        number = unit if kind == "child_values" else {"type": "number", "minimum": 0}
        names = [str(k) for k in keys]
        answer = {"type": "object", "properties": {k: number for k in names}, "required": names,
                  "additionalProperties": False}
    else:
        answer = unit if kind == "value" else {"type": "boolean"}
    schema = {"type": "object", "properties": {field: answer}, "required": [field], "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": field, "schema": schema, "strict": True}}


def parse_answer(kind: str, game: str, text: str, keys: Sequence[int], boxed: bool = True) -> Any:
    """The validated answer of one query from the reply `text`.

    child_values -> {key: value in [0, 1]}; value -> float in [0, 1]; explore -> bool;
    priors -> {key: score >= 0} (not normalised). Only the listed `keys` are kept. `boxed=False`: the
    reply is the bare JSON object of `response_schema` (a provider enforced the schema).
    Unknown `kind` or `game` -> ValueError; an unusable reply -> ParseError.
    """
    field = _field(kind, game)
    if boxed:
        obj = extract_boxed_json(text)
    else:
        obj = _loads(text or "")
        if obj is _INVALID:
            raise ParseError(f"the reply is not a JSON object: {(text or '')[:80]!r}")
    if not isinstance(obj, dict) or field not in obj:
        raise ParseError(f"the {'boxed ' if boxed else ''}JSON has no `{field}` field")
    answer = obj[field]
    if kind == "child_values":
        return _per_key(answer, field, keys, _unit)
    if kind == "priors":
        return _per_key(answer, field, keys, _nonnegative)
    if kind == "value":
        return _unit(answer, f"`{field}`")
    return _explore(answer)
