"""Reading research-agent replies: the plan and the program of a draft / improve / debug / crossover reply,
and the structured review of the analyze operator.

Models answer in many shapes: one fenced block (```python, ```py, ``` or ~~~), several (a snippet
quoted in the plan, then the program), an unterminated fence at a length cut, reasoning wrapped in
`<think>` tags, or no fence at all. `extract_plan_and_code` takes the program to be the longest block
that parses as Python (the last one on a tie, as it is usually the final version), the plan the prose
before it; a reply without a usable program raises `NoCode`, which the operators turn into a buggy node.

Tasks with several editable files (`len(editable) > 1`) show and take them as a bundle: one code block in
which each file follows a marker line (`FILE_MARKER`, e.g. `# ==== file: gpt.py ====`). `bundle` writes
one, `extract_plan_and_files` reads the files a reply gives, and `program_text` is the text that stands
for a candidate's program in prompts (the first editable file, or the bundle of all of them).

`parse_review` reads the analyze operator's review, {is_bug, summary, metric, lower_is_better}, from a
JSON object anywhere in the reply (json5: lenient), normalising the types the way AIDE does: a metric
that is not a finite number becomes None (and the node buggy).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import json5

from libs.agents.answers import balanced_object

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]*(```|~~~)[ \t]*([\w+.-]*)[^\n]*\n", re.MULTILINE)
_CODE_LANGS = {"", "python", "py", "python3", "py3"}
FILE_MARKER = "# ==== file: {name} ===="
_MARKER_PREFIX, _MARKER_SUFFIX = FILE_MARKER.split("{name}")
_MARKER_LINE = re.compile(rf"^[ \t]*{re.escape(_MARKER_PREFIX.strip())}[ \t]*`?([^`\n]+?)`?[ \t]*"
                          rf"{re.escape(_MARKER_SUFFIX.strip())}[ \t]*$", re.MULTILINE)
_CODE_START = re.compile(r"^(import |from \S+ import |def |class |if __name__|[A-Za-z_]\w* *=)", re.MULTILINE)


class NoCode(ValueError):
    """A reply without a program that parses as Python."""


@dataclasses.dataclass(frozen=True)
class Review:
    """The analyze operator's verdict on one executed candidate."""

    is_bug: bool
    summary: str
    metric: float | None
    lower_is_better: bool | None


def strip_thinking(text: str) -> str:
    """The reply without `<think>...</think>` reasoning (an unclosed one runs to the end)."""
    return _THINK.sub("", text or "")


def _blocks(text: str) -> list[tuple[int, str, str]]:
    """(start offset, language, body) of each fenced block; an unterminated last fence runs to the end."""
    blocks, pos = [], 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            return blocks
        fence, lang = opening.group(1), opening.group(2).lower()
        closing = re.compile(rf"^[ \t]*{re.escape(fence)}[ \t]*$", re.MULTILINE).search(text, opening.end())
        end = closing.start() if closing else len(text)
        blocks.append((opening.start(), lang, text[opening.end():end]))
        pos = closing.end() if closing else len(text)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return bool(code.strip())


def extract_plan_and_code(reply: str) -> tuple[str, str]:
    """(plan, code) of a reply; raises NoCode when no block (or unfenced text) parses as Python."""
    text = strip_thinking(reply)
    candidates = [(start, body) for start, lang, body in _blocks(text) if lang in _CODE_LANGS and _parses(body)]
    if candidates:
        start, code = max(reversed(candidates), key=lambda c: len(c[1]))  # longest; the last on ties
        return text[:start].strip(), code.strip("\n") + "\n"
    if not _FENCE.search(text):  # no fence at all: the program may be the reply from its first code line
        first = _CODE_START.search(text)
        if first and _parses(text[first.start():]):
            return text[:first.start()].strip(), text[first.start():].strip("\n") + "\n"
    raise NoCode("the reply holds no Python program that parses" + (" (its code blocks have syntax errors)"
                                                                       if _FENCE.search(text) else ""))


def bundle(sources: Mapping[str, str], names: Sequence[str]) -> str:
    """The files `names` (in that order; those missing from `sources` left out), each after its marker line."""
    return "\n".join(FILE_MARKER.format(name=name) + "\n" + sources[name].strip("\n") + "\n"
                     for name in names if name in sources)


def program_text(sources: Mapping[str, str], editable: Sequence[str]) -> str:
    """What stands for a candidate's program in prompts: its first editable file, or, for a multi-file task,
    the bundle of every editable file."""
    return bundle(sources, editable) if len(editable) > 1 else sources.get(editable[0], "")


def _split_bundle(body: str) -> dict[str, str]:
    """{file: text} of a bundle's marked sections (text before the first marker is dropped; a file marked
    twice keeps its last section)."""
    markers = list(_MARKER_LINE.finditer(body))
    ends = [m.start() for m in markers[1:]] + [len(body)]
    files = {}
    for marker, end in zip(markers, ends):
        text = body[marker.end():end].strip("\n")
        files[marker.group(1).strip()] = text + "\n" if text else ""
    return files


def _syntax_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as e:
        return f"{e.msg} (line {e.lineno})"
    except ValueError as e:
        return str(e)
    return None


def extract_plan_and_files(reply: str, editable: Sequence[str]) -> tuple[str, dict[str, str]]:
    """(plan, {file: text}) of a multi-file reply: the files of every code block with marker lines (a file
    given twice keeps its last copy; without any fence, the text from the first marker), the plan the prose
    before the first such block. Files the reply does not give
    are left out. Raises NoCode for a file not in `editable` or a Python file that does not parse. A reply
    without markers falls back to `extract_plan_and_code`, its program taken as `editable[0]`."""
    text = strip_thinking(reply)
    candidates = [(start, body) for start, _, body in _blocks(text) if _MARKER_LINE.search(body)]
    if not candidates and not _FENCE.search(text) and (first := _MARKER_LINE.search(text)):
        candidates = [(first.start(), text[first.start():])]
    if not candidates:
        plan, code = extract_plan_and_code(reply)
        return plan, {editable[0]: code}
    files: dict[str, str] = {}
    for _, body in candidates:  # one block for all files, or a block per file: later copies win
        files.update(_split_bundle(body))
    start = candidates[0][0]
    unknown = sorted(set(files) - set(editable))
    if unknown:
        raise NoCode(f"the reply marks files that are not editable: {', '.join(unknown)} "
                     f"(the editable files are {', '.join(editable)})")
    for name, code in files.items():
        if name.endswith(".py") and (error := _syntax_error(code)):
            raise NoCode(f"{name} in the reply does not parse: {error}")
    return text[:start].strip(), files


def _json_objects(text: str) -> list[Any]:
    found = []
    for match in re.finditer(r"\{", text):
        body = balanced_object(text, match.start())
        if body is None:
            continue
        try:
            value = json5.loads(body)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "false", "no"):
        return value.strip().lower() in ("true", "yes")
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    return None


def _metric(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_review(reply: str) -> Review:
    """The review in a reply (the last JSON object with an `is_bug` field); raises ValueError without one."""
    reviews = [obj for obj in _json_objects(strip_thinking(reply)) if "is_bug" in obj]
    if not reviews:
        raise ValueError("the reply holds no JSON review with an is_bug field")
    review = reviews[-1]
    is_bug = _flag(review.get("is_bug"))
    metric = _metric(review.get("metric"))
    return Review(is_bug=True if is_bug is None else is_bug, summary=str(review.get("summary") or "").strip(),
                  metric=metric, lower_is_better=_flag(review.get("lower_is_better")))


REVIEW_SCHEMA = {
    "type": "object",
    "properties": {
        "is_bug": {"type": "boolean"},
        "summary": {"type": "string"},
        "metric": {"type": ["number", "null"]},
        "lower_is_better": {"type": "boolean"},
    },
    "required": ["is_bug", "summary", "metric", "lower_is_better"],
}
