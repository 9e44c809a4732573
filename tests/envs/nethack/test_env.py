"""The MaestroMotif NetHack game: character, no pet, macro-actions, policy observations, skill contexts."""

from __future__ import annotations

import json

import gin
import numpy as np
import pytest
from nle import nethack
from nle.env.base import NLE

from libs.envs.nethack import detectors
from libs.envs.nethack import env as nh_env
from libs.envs.nethack.env import (
    ACTION_NAMES,
    CONTEXT_KEYS,
    PAD_GLYPH,
    EpisodeState,
    NetHackEnv,
    NetHackSettings,
    crop_into,
    episode_seeds,
    landmarks,
    policy_obs,
    skill_context,
    targets_into,
)
from libs.train.errors import ConfigError

FLOOR = nethack.GLYPH_CMAP_OFF + nh_env._cmap_id("floor of a room")
STONE = nethack.GLYPH_CMAP_OFF  # cmap 0, shown as blank
WALL = nethack.GLYPH_CMAP_OFF + nh_env._cmap_id("wall")
DOOR = nethack.GLYPH_CMAP_OFF + nh_env._cmap_id("doorway")
CORRIDOR = nethack.GLYPH_CMAP_OFF + nh_env._cmap_id("corridor")
ALTAR = nethack.GLYPH_CMAP_OFF + nh_env._cmap_id("altar")
DOWNSTAIRS = nethack.GLYPH_CMAP_OFF + nh_env._cmap_id("staircase down")
SHOPKEEPER = nethack.GLYPH_MON_OFF + nh_env._monster_id("shopkeeper")
ORACLE = nethack.GLYPH_MON_OFF + nh_env._monster_id("Oracle")
HERO = nethack.GLYPH_MON_OFF + nh_env._monster_id("monk")


@pytest.fixture(scope="module")
def game():
    with NetHackEnv() as env:
        yield env


def _raw(glyphs: np.ndarray, x: int, y: int, message: bytes = b"", dnum: int = 0, dlevel: int = 3,
         letters: int = 2) -> dict[str, np.ndarray]:
    blstats = np.zeros(27, np.int64)
    blstats[nethack.NLE_BL_X], blstats[nethack.NLE_BL_Y] = x, y
    blstats[nethack.NLE_BL_DNUM], blstats[nethack.NLE_BL_DLEVEL], blstats[nethack.NLE_BL_DEPTH] = dnum, dlevel, dlevel
    msg = np.zeros(256, np.uint8)
    msg[:len(message)] = np.frombuffer(message, np.uint8)
    inv = np.zeros(55, np.uint8)
    inv[:letters] = np.arange(ord("a"), ord("a") + letters)
    glyphs = glyphs.copy()
    glyphs[y, x] = HERO
    return {"glyphs": glyphs, "blstats": blstats, "message": msg, "inv_letters": inv}


def test_settings_check_their_values_and_are_gin_configurable(clean_gin):
    with pytest.raises(ConfigError, match="crop_size"):
        NetHackSettings(crop_size=8)
    with pytest.raises(ConfigError, match="character"):
        NetHackSettings(character="monk")
    gin.parse_config("nethack_env.max_episode_steps = 7")
    assert NetHackSettings().max_episode_steps == 7


def test_monk_without_pet_while_nle_defaults_bring_one(game):
    control = NLE(observation_keys=("glyphs", "blstats"))  # NLE's own options: a kitten or little dog
    try:
        control_pets = ours = 0
        greetings = []
        for seed in range(3):
            control.seed(core=seed, disp=seed, reseed=False)
            control_obs, _ = control.reset()
            control_pets += sum(nethack.glyph_is_pet(int(g)) for g in control_obs["glyphs"].ravel())
            raw = game.reset(episode_seeds(seed, 0, 0))
            ours += sum(nethack.glyph_is_pet(int(g)) for g in raw["glyphs"].ravel())
            x, y = int(raw["blstats"][nethack.NLE_BL_X]), int(raw["blstats"][nethack.NLE_BL_Y])
            assert nethack.glyph_to_mon(int(raw["glyphs"][y, x])) == nh_env._monster_id("monk")
            assert raw["blstats"][nethack.NLE_BL_ALIGN] == 0  # neutral
            greetings.append(game.context()["message"])
    finally:
        control.close()
    assert control_pets >= 3 and ours == 0
    assert any("neutral male human Monk" in g for g in greetings), greetings  # unless a moon phase shows instead


def test_reduced_action_set_is_the_references():
    assert len(ACTION_NAMES) == 28
    assert ACTION_NAMES[-5:] == ("CAST", "ENHANCE", "PRAY", "QUAFF", "DROP")
    assert chr(nh_env.ACTIONS[nh_env.YES_ACTION]) == "y" and chr(nh_env.ACTIONS[nh_env.NO_ACTION]) == "n"


def test_policy_obs_is_centred_on_the_agent(game):
    raw = game.reset(episode_seeds(0, 0, 0))
    obs = policy_obs(raw)
    assert obs["crop"].shape == (9, 9) and obs["crop"].dtype == np.int16
    assert obs["blstats"].shape == (27,) and obs["blstats"].dtype == np.float32
    assert obs["message"].shape == (256,) and obs["message"].dtype == np.uint8
    x, y = int(raw["blstats"][nethack.NLE_BL_X]), int(raw["blstats"][nethack.NLE_BL_Y])
    assert obs["crop"][4, 4] == raw["glyphs"][y, x] and nethack.glyph_is_monster(int(obs["crop"][4, 4]))
    np.testing.assert_array_equal(obs["crop"], raw["glyphs"][y - 4:y + 5, x - 4:x + 5])


def test_crop_pads_outside_the_map():
    glyphs = np.arange(21 * 79, dtype=np.int16).reshape(21, 79)
    out = np.empty((5, 5), np.int16)
    crop_into(glyphs, 0, 20, out)  # bottom-left corner
    assert (out[:, :2] == PAD_GLYPH).all() and (out[3:, :] == PAD_GLYPH).all()
    np.testing.assert_array_equal(out[:3, 2:], glyphs[18:21, 0:3])


def test_real_reset_context_has_the_shared_keys_as_plain_values(game):
    game.reset(episode_seeds(1, 0, 0))
    context = game.context()
    assert tuple(context) == CONTEXT_KEYS
    assert json.loads(json.dumps(context)) == context
    assert all(type(v) in (int, str, bool) for v in context.values())
    assert (context["depth"], context["dlevel"], context["dnum"], context["xp_level"]) == (1, 1, 0, 1)
    assert context["hunger"] == 1 and context["step"] == 0 and context["num_items"] >= 9
    assert context["hp"] == context["hp_max"] > 0 and not context["in_shop"]


def test_macro_actions_eat_rest_and_drop(game):
    game.reset(episode_seeds(0, 0, 0))
    game.step(ACTION_NAMES.index("EAT"))
    assert game.context()["message"].startswith("What do you want to eat? [")
    game.step(nh_env.YES_ACTION)  # y: the first food offered
    context = game.context()
    assert detectors.is_eating(context["message"]) and context["step"] == 2
    turn = context["turn"]
    game.step(ACTION_NAMES.index("WAIT"))  # rests 25 moves (a monk is fast: fewer turns)
    assert game.context()["turn"] - turn >= 10
    game.step(ACTION_NAMES.index("DROP"))  # only starting items: nothing to drop
    assert game.context()["num_items"] == context["num_items"]


def test_same_seeds_same_game_and_the_step_limit_truncates():
    settings = NetHackSettings(max_episode_steps=6)
    with NetHackEnv(settings) as a, NetHackEnv(settings) as b:
        a.reset((11, 12))
        b.reset((11, 12))
        for step in range(1, 7):
            _, _, term_a, trunc_a = a.step(step % 17)
            _, _, term_b, trunc_b = b.step(step % 17)
            np.testing.assert_array_equal(a.raw["glyphs"], b.raw["glyphs"])
            assert a.context() == b.context()
        assert trunc_a and not term_a and (term_b, trunc_b) == (term_a, trunc_a)
        b.reset((13, 12))
        a.reset((11, 12))
        assert not np.array_equal(a.raw["glyphs"], b.raw["glyphs"])


def test_view_flags_and_landmarks_on_a_constructed_map():
    glyphs = np.full((21, 79), FLOOR, np.int16)
    glyphs[10, 13] = ALTAR  # 3 columns from the agent at (10, 10)
    glyphs[5, 10] = SHOPKEEPER  # 5 rows away
    glyphs[0, 0] = ORACLE
    raw = _raw(glyphs, 10, 10)
    near = skill_context(raw, EpisodeState(), view_radius=3)
    assert near["altar_in_view"] and not near["shopkeeper_in_view"] and not near["stairs_down_in_view"]
    assert skill_context(raw, EpisodeState(), view_radius=5)["shopkeeper_in_view"]
    assert landmarks(raw) == {"altar", "shopkeeper", "oracle"}
    glyphs[11, 9] = DOWNSTAIRS
    assert skill_context(_raw(glyphs, 10, 10), EpisodeState())["stairs_down_in_view"]


def test_targets_point_at_the_nearest_landmarks_and_remember_stairs_under_the_agent():
    glyphs = np.full((21, 79), FLOOR, np.int16)
    glyphs[12, 30] = DOWNSTAIRS  # 20 columns right, 2 rows down of the agent at (10, 10)
    glyphs[10, 14] = DOWNSTAIRS  # the nearer one: 4 columns right
    glyphs[0, 10] = SHOPKEEPER  # 10 rows up
    state, out = EpisodeState(), np.empty(16, np.float32)
    targets_into(_raw(glyphs, 10, 10)["glyphs"], 10, 10, (0, 3), state, out)
    np.testing.assert_allclose(out, [0.2, 0.0, 1.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, -1.0, 1.0, 0.0])
    targets_into(_raw(glyphs, 14, 10)["glyphs"], 14, 10, (0, 3), state, out)  # standing on it hides its glyph
    np.testing.assert_allclose(out[:4], [0.0, 0.0, 1.0, 1.0])
    targets_into(_raw(glyphs, 14, 10)["glyphs"], 14, 10, (0, 4), EpisodeState(), out)  # another level: no memory
    np.testing.assert_allclose(out[:4], [0.8, 0.2, 1.0, 0.0])
    assert policy_obs(_raw(glyphs, 10, 10))["targets"].shape == (16,)


def _shop_map() -> np.ndarray:
    """A 5x3 shop (floor columns 11-15, rows 6-8) with a door in its bottom wall at (13, 9), corridor below."""
    glyphs = np.full((21, 79), STONE, np.int16)
    glyphs[5:10, 10:17] = WALL
    glyphs[6:9, 11:16] = FLOOR
    glyphs[9, 13] = DOOR
    glyphs[10:12, 13] = CORRIDOR
    glyphs[8, 12] = SHOPKEEPER
    return glyphs


def test_in_shop_after_a_greeting_until_the_agent_leaves():
    glyphs = _shop_map()
    state = EpisodeState()
    greeting = b"Hello, Agent!  Welcome to Asidonhopo's general store!"
    at_door = skill_context(_raw(glyphs, 13, 9, greeting), state)
    assert not at_door["in_shop"] and state.shops == {(0, 3): [(11, 15, 6, 8)]}
    assert skill_context(_raw(glyphs, 15, 6), state)["in_shop"]
    assert not skill_context(_raw(glyphs, 13, 10), state)["in_shop"]  # back in the corridor
    assert not skill_context(_raw(glyphs, 15, 6, dlevel=4), state)["in_shop"]  # another level
    unseen = EpisodeState()
    assert not skill_context(_raw(glyphs, 15, 6), unseen)["in_shop"]  # no greeting, no shop


def test_shop_inside_a_town_is_found_from_the_shopkeepers_side():
    glyphs = _shop_map()
    glyphs[10:12, 13] = FLOOR  # the town's lit floor outside the door
    state = EpisodeState()
    skill_context(_raw(glyphs, 13, 9, b"Hello, Agent!  Welcome again to Izchak's lighting store!"), state)
    assert state.shops == {(0, 3): [(11, 15, 6, 8)]}
    glyphs[8, 12] = FLOOR  # no shopkeeper by the door: which side is the shop is unknown
    state = EpisodeState()
    skill_context(_raw(glyphs, 13, 9, b"Hello, Agent!  Welcome to Izchak's lighting store!"), state)
    assert state.shops == {}


def test_a_game_over_keeps_the_last_status_shown(game):
    game.reset(episode_seeds(0, 0, 0))
    rng = np.random.default_rng(1)
    for _ in range(3000):  # random monks pray too often and die within a few hundred steps
        _, _, terminated, truncated = game.step(int(rng.integers(game.num_actions)))
        if terminated or truncated:
            break
    assert terminated and not truncated
    context = game.context()
    assert context["depth"] >= 1 and context["hp_max"] > 0 and context["turn"] > 1  # NLE itself shows zeros
    assert "You die" in context["message"]
