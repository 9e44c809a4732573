"""Hints for the speedrunning benchmark's tasks over this codebase's record ladder.

Each ladder step (record i -> record i+1, named by the configs in configs/speedrun/) has a folder
`hints/<from>__<to>/` with the three hint levels of the Automated LLM Speedrunning Benchmark, describing the
change as this codebase implements it (hints/README.md gives the sources):

- level 1, `level_1_pseudocode.md`: Python-like pseudocode of the new computation and the gin changes;
- level 2, `level_2_description.md`: a plain-text description;
- level 3, `level_3_paper.md`: a mini-paper (motivation, method, details as implemented here, expected effect).

`load_hint(step, levels)` returns the requested levels concatenated, each under its own heading, for the
level combinations the benchmark's experiments used: "none", "1", "2", "3", "1+2", "1+2+3".
"""

from __future__ import annotations

import itertools
import os

HINTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hints")

RECORDS = ("gpt2_124m", "record_02", "record_03", "record_04", "record_05", "record_08", "record_09", "record_10",
           "record_11", "record_12", "record_13", "record_14", "record_15", "record_16", "record_17", "record_18",
           "record_19", "record_20", "record_21")
# Records that train on packed documents (long rows, document masks, windows): their CPU proxy is
# configs/speedrun/cpu_scale_packed.gin, and a step into one compares both records at that scale.
PACKED_RECORDS = RECORDS[RECORDS.index("record_12"):]
LADDER_STEPS: tuple[tuple[str, str], ...] = tuple(itertools.pairwise(RECORDS))

LEVELS = ("1", "2", "3")
LEVEL_FILES = {"1": "level_1_pseudocode.md", "2": "level_2_description.md", "3": "level_3_paper.md"}
LEVEL_NAMES = {"1": "pseudocode", "2": "description", "3": "mini-paper"}
COMBINATIONS = ("none", "1", "2", "3", "1+2", "1+2+3")


def step_name(step: tuple[str, str]) -> str:
    """The folder name of a ladder step: "<from>__<to>"."""
    return f"{step[0]}__{step[1]}"


def hint_path(step: tuple[str, str], level: str) -> str:
    """Path of one level's file for one ladder step (both checked)."""
    step = _check_step(step)
    if level not in LEVELS:
        raise ValueError(f"unknown hint level {level!r}: expected one of {', '.join(LEVELS)}")
    return os.path.join(HINTS_DIR, step_name(step), LEVEL_FILES[level])


def heading(step: tuple[str, str], level: str) -> str:
    """The heading `load_hint` puts above one level's text."""
    return f"# Hint level {level} ({LEVEL_NAMES[level]}): {step[0]} -> {step[1]}"


def load_hint(step: tuple[str, str], levels: str) -> str:
    """The hint text for `step` at `levels` ("none", "1", "2", "3", "1+2" or "1+2+3"); "" for "none".

    Each level comes under its own heading (`heading`), in increasing level order. An unknown step or
    level combination raises ValueError with a one-line message.
    """
    step = _check_step(step)
    if levels not in COMBINATIONS:
        raise ValueError(f"unknown hint levels {levels!r}: expected one of {', '.join(COMBINATIONS)}")
    if levels == "none":
        return ""
    parts = []
    for level in levels.split("+"):
        with open(hint_path(step, level), encoding="utf-8") as f:
            text = f.read().strip()
        parts.append(f"{heading(step, level)}\n\n{text}\n")
    return "\n".join(parts)


def _check_step(step) -> tuple[str, str]:
    try:
        pair = tuple(step)
    except TypeError:
        pair = None
    if pair not in LADDER_STEPS:
        known = ", ".join(f"{a}->{b}" for a, b in LADDER_STEPS)
        raise ValueError(f"unknown ladder step {step!r}: expected one of {known}")
    return pair
