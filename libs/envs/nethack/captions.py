"""Motif/MaestroMotif captions: a step's message plus the signs of five status changes.

Follows mklissa/maestromotif: `rl_baseline/obs_wrappers.py` (BlstatsWrapper: the change in blstats depth, gold,
HP, XP level and hunger state, each clipped to [-1, 1]) and `scripts/train_reward.py` (`get_stat_str`, which
renders the five signs after the message). Depth growing is "Dlvl: down"; a growing hunger state (NetHack's
numbering: 0 satiated, 1 not hungry, 2 hungry, ... 6 starved) is "Hunger: more".
"""

from __future__ import annotations

import numpy as np
from nle import nethack

DIFFSTAT_NAMES = ("Dlvl", "Gold", "HP", "Xp", "Hunger")
DIFFSTAT_INDICES = (nethack.NLE_BL_DEPTH, nethack.NLE_BL_GOLD, nethack.NLE_BL_HP, nethack.NLE_BL_XP,
                    nethack.NLE_BL_HUNGER)
# Words for a change of 0, +1 and -1, per stat (the reference's get_stat_str).
_WORDS = (("none", "down", "up"), ("none", "up", "down"), ("none", "up", "down"), ("none", "up", "down"),
          ("none", "more", "less"))


def decode_message(message: np.ndarray) -> str:
    """The text of an NLE message buffer (uint8, zero-padded), without trailing padding or spaces."""
    return bytes(np.asarray(message, np.uint8)).split(b"\0", 1)[0].decode("latin-1").strip()


def diffstats(prev_blstats: np.ndarray, blstats: np.ndarray) -> np.ndarray:
    """float32 (..., 5): the change in depth, gold, HP, XP level and hunger state, clipped to [-1, 1]."""
    index = list(DIFFSTAT_INDICES)
    prev = np.asarray(prev_blstats, np.float64)[..., index]
    cur = np.asarray(blstats, np.float64)[..., index]
    return np.clip(cur - prev, -1.0, 1.0).astype(np.float32)


def stat_string(diff: np.ndarray) -> str:
    """" | Dlvl: none | Gold: up | HP: none | Xp: none | Hunger: none" for one change vector."""
    signs = np.sign(np.asarray(diff, np.float64)).astype(int)
    if signs.shape != (len(DIFFSTAT_NAMES),):
        raise ValueError(f"a change vector has {len(DIFFSTAT_NAMES)} entries, got shape {signs.shape}")
    return "".join(f" | {name}: {words[sign]}" for name, words, sign in zip(DIFFSTAT_NAMES, _WORDS, signs))


def caption(message: str, diff: np.ndarray) -> str:
    """The reward model's caption: the message then the five changes, as the reference renders it."""
    return message + stat_string(diff)
