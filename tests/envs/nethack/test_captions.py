"""Motif captions: change vectors and their rendering in the reference's words."""

from __future__ import annotations

import numpy as np
import pytest
from nle import nethack

from libs.envs.nethack.captions import caption, decode_message, diffstats, stat_string


def _blstats(depth=1, gold=0, hp=10, xp=1, hunger=1) -> np.ndarray:
    b = np.zeros(27, np.float32)
    b[nethack.NLE_BL_DEPTH], b[nethack.NLE_BL_GOLD], b[nethack.NLE_BL_HP] = depth, gold, hp
    b[nethack.NLE_BL_XP], b[nethack.NLE_BL_HUNGER] = xp, hunger
    b[nethack.NLE_BL_EXP] = 123  # experience points: not a caption stat
    return b


def test_diffstats_are_clipped_changes_in_the_reference_order():
    prev = _blstats(depth=2, gold=10, hp=12, xp=3, hunger=1)
    cur = _blstats(depth=3, gold=4, hp=12, xp=4, hunger=2)
    cur[nethack.NLE_BL_EXP] = 999
    d = diffstats(prev, cur)
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, [1, -1, 0, 1, 1])
    batch = diffstats(np.stack([prev, cur]), np.stack([cur, prev]))
    np.testing.assert_array_equal(batch, [[1, -1, 0, 1, 1], [-1, 1, 0, -1, -1]])


def test_caption_renders_every_stat_like_get_stat_str():
    assert caption("You find a hidden door.", np.array([1, 1, 0, 0, 0])) == (
        "You find a hidden door. | Dlvl: down | Gold: up | HP: none | Xp: none | Hunger: none")
    assert stat_string(np.array([-1, -1, -1, -1, -1], np.float32)) == (
        " | Dlvl: up | Gold: down | HP: down | Xp: down | Hunger: less")
    assert caption("", np.array([0, 0, 1, 0, 1])).endswith("HP: up | Xp: none | Hunger: more")
    with pytest.raises(ValueError, match="5 entries"):
        stat_string(np.zeros(4))


def test_decode_message_stops_at_the_padding():
    buf = np.zeros(256, np.uint8)
    text = b"It's a wall. "
    buf[:len(text)] = np.frombuffer(text, np.uint8)
    buf[100] = ord("x")  # garbage after the terminator is ignored
    assert decode_message(buf) == "It's a wall."
    assert decode_message(np.zeros(256, np.uint8)) == ""
