"""The speedrun record ladder as the tools see it: the record configs this codebase reproduces, in order."""

from __future__ import annotations

import os

from libs.train import launch

RECORDS = ["gpt2_124m", "record_02", "record_03", "record_04", "record_05",
           "record_08", "record_09", "record_10", "record_11"]
CONFIG_DIR = "configs/speedrun"
SCALE_FILE = f"{CONFIG_DIR}/cpu_scale.gin"


def change_summary(record: str) -> str:
    """The first comment line of the record's gin file."""
    with open(os.path.join(launch.REPO_ROOT, CONFIG_DIR, f"{record}.gin")) as f:
        for line in f:
            if line.startswith("#"):
                return line.lstrip("#").strip().rstrip(",")
    return ""
