"""The speedrun record ladder as the tools see it: the record configs this codebase reproduces, in order,
and the CPU proxy scale each one is compared at."""

from __future__ import annotations

import os
import statistics
from typing import Any

from libs.envs.speedrun_bench.hints import PACKED_RECORDS, RECORDS
from libs.envs.speedrun_bench.proxy import PACKED_SCALE_FILE, SCALE_FILE, scale_file_for
from libs.train import launch

__all__ = ["CONFIG_DIR", "PACKED_RECORDS", "PACKED_SCALE_FILE", "RECORDS", "SCALE_FILE", "aggregate",
           "change_summary", "label", "ladder_entries", "scale_file_for"]
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


def aggregate(runs: list[dict[str, Any]], entries: list[tuple[str, str]], tie: float = 0.0) -> list[dict[str, Any]]:
    """Mean and std over seeds per (record, scale name), and the delta against the row before at that scale."""
    rows, prev = [], None
    for rec, scale in entries:
        mine = [r for r in runs if r["record"] == rec and r.get("scale", "short") == scale]
        ok = [r for r in mine if r["status"] != "failed"]
        losses = [r["val_loss"] for r in ok]
        if prev is not None and prev["scale"] != scale:
            prev = None  # a new proxy scale starts a new ladder segment
        row = {"record": rec, "scale": scale, "change": change_summary(rec), "n": len(ok), "failed": len(mine) - len(ok),
               "val_loss": statistics.fmean(losses) if losses else None,
               "val_std": statistics.stdev(losses) if len(losses) > 1 else 0.0,
               "train_time_s": statistics.fmean(r["train_time_s"] for r in ok) if ok else None,
               "wall_s": statistics.fmean(r["wall_s"] for r in mine) if mine else None}
        if prev and prev["val_loss"] is not None and row["val_loss"] is not None:
            row["delta"] = row["val_loss"] - prev["val_loss"]
            row["improves"] = row["delta"] < 0
            noise = (row["val_std"] ** 2 + prev["val_std"] ** 2) ** 0.5
            row["within_noise"] = abs(row["delta"]) <= max(noise, tie)
        else:
            row["delta"], row["improves"], row["within_noise"] = None, None, False
        rows.append(row)
        prev = row
    return rows


def label(row: dict[str, Any]) -> str:
    """A row's name: the record, marked where it is the baseline run at the packed scale."""
    packed_baseline = row["scale"] == "packed" and row["record"] not in PACKED_RECORDS
    return f"{row['record']} (packed)" if packed_baseline else row["record"]
