"""The speedrun record ladder as the tools see it: the record configs this codebase reproduces, in order,
and the CPU proxy scale each one is compared at."""

from __future__ import annotations

import os

from libs.envs.speedrun_bench.hints import PACKED_RECORDS, RECORDS
from libs.envs.speedrun_bench.proxy import PACKED_SCALE_FILE, SCALE_FILE, scale_file_for
from libs.train import launch

__all__ = ["CONFIG_DIR", "PACKED_RECORDS", "PACKED_SCALE_FILE", "RECORDS", "SCALE_FILE", "change_summary",
           "ladder_entries", "scale_file_for"]
CONFIG_DIR = "configs/speedrun"


def ladder_entries(records: list[str]) -> list[tuple[str, str]]:
    """(record, scale file) rows of a ladder over `records`: each at its own proxy scale, and the last record
    before a packed one once more at the packed scale, so that the first packed step has a baseline."""
    entries = []
    for prev, record in zip([None, *records], records):
        if prev is not None and record in PACKED_RECORDS and prev not in PACKED_RECORDS:
            entries.append((prev, PACKED_SCALE_FILE))
        entries.append((record, scale_file_for(record)))
    return entries


def change_summary(record: str) -> str:
    """The first comment line of the record's gin file."""
    with open(os.path.join(launch.REPO_ROOT, CONFIG_DIR, f"{record}.gin")) as f:
        for line in f:
            if line.startswith("#"):
                return line.lstrip("#").strip().rstrip(",")
    return ""
