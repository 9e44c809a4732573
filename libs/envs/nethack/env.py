"""MaestroMotif's NetHack game (NLE 1.3): a neutral human male monk without a pet, a reduced action set.

The game follows mklissa/maestromotif (`rl_baseline/env_nle.py`, `monk_tasks_nle.py`, `.nethackrc`):

- Character "mon-hum-neu-mal"; 5000 env steps per episode; the reference's game options as far as NLE 1.3's
  options string can carry them (`OPTIONS`). `AUTOPICKUP_EXCEPTION` and `MSGTYPE` lines are config-file only, so
  food stays out of `pickup_types` (without the exceptions it would pick up corpses) and "You see/hear ..."
  messages are shown, not hidden.
- The reference's 28 actions (`ACTIONS`) and its macro-actions:
    WAIT     rests 25 turns ("25.").
    DROP     drops the first item the monk did not start with (not food or gold); in a shop this brings the
             shopkeeper's "Sell it? [ynaq]" offer, on an altar the BUC flash.
    EAT/QUAFF  at "What do you want to eat/drink?" the `y` key (the NW move) picks the first offered item, any
             other action cancels.
    CAST     casts the first spell; healing (a monk's spell may be healing, protection or sleep) on oneself.
  Questions the agent answers itself (`AGENT_QUESTIONS`, the reference's): eat, attack, direction, pray, drop,
  drink, "Sell it?". All others are declined with ESC, "Still climb?" (leaving the dungeon from Dlvl 1) too,
  as in the reference's training; the declined question still shows in the step's messages, which is how the
  Golden Exit detector sees the attempt. An answer is an ordinary action: the NW move is `y`, the SE move is
  `n`, MORE (Enter) takes the default. Buying is not in the set (it needs `,` and `p`, which the reference left
  out), so shop transactions are sales.
  Skill advances are taken automatically ("You feel more confident" -> #enhance), as in the reference.
- The message of a step is the message NLE shows after it, except that "You descend the stairs." (and the
  climb/frozen messages) survive the --More-- that follows them, as in the reference. The skill context's
  `message` joins every message shown during the step (NLE drops those cut off by --More--).

Not reproduced: the reference's three extra blstats (spell class, potions, comestibles); `policy_obs` keeps
NLE's 27.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import gin
import numpy as np
from nle import nethack
from nle.env.base import ASCII_ESC, ASCII_SPACE, NLE

from libs.envs.nethack.captions import decode_message
from libs.train.errors import ConfigError

CHARACTER = "mon-hum-neu-mal"
CROP_SIZE = 9
PAD_GLYPH = nethack.MAX_GLYPH  # crop cells outside the map; one past the largest real glyph id
BLSTATS_SIZE = nethack.NLE_BLSTATS_SIZE
MESSAGE_SIZE = 256

OPTIONS = (
    "autopickup", "color", "disclose:+i +a +v +g +c +o", "nobones", "nocmdassist", "nolegacy", "nosparkle",
    "runmode:teleport", "showexp", "showscore", "time", "paranoid_confirmation:none", "pettype:none",
    "pickup_types:$?!/", "pickup_burden:unencumbered",
)

ACTIONS = tuple(
    [nethack.MiscAction.MORE]
    + list(nethack.CompassDirection)
    + list(nethack.CompassDirectionLonger)
    + list(nethack.MiscDirection)
    + [nethack.Command.KICK, nethack.Command.EAT, nethack.Command.SEARCH]
    + [nethack.Command.CAST, nethack.Command.ENHANCE, nethack.Command.PRAY, nethack.Command.QUAFF,
       nethack.Command.DROP]
)
ACTION_NAMES = tuple(a.name for a in ACTIONS)
YES_ACTION = ACTIONS.index(nethack.CompassDirection.NW)  # the `y` key
NO_ACTION = ACTIONS.index(nethack.CompassDirection.SE)  # the `n` key

AGENT_QUESTIONS = (b"eat", b"attack", b"direction?", b"pray", b"drop", b"drink", b"Sell")
KEPT_ACROSS_MORE = (b"You descend the stairs.", b"You climb up the stairs", b"You are frozen")
REST_KEYS = (ord("2"), ord("5"), ord("."))
OBSERVATION_KEYS = ("glyphs", "blstats", "message", "inv_letters", "inv_oclasses", "inv_glyphs")
CONTEXT_KEYS = ("depth", "dlevel", "dnum", "xp_level", "gold", "hp", "hp_max", "hunger", "turn", "step", "message",
                "shopkeeper_in_view", "altar_in_view", "stairs_down_in_view", "stairs_up_in_view", "num_items",
                "in_shop")


@gin.configurable("nethack_env")
@dataclasses.dataclass(frozen=True)
class NetHackSettings:
    """One game's settings; `view_radius` bounds the *_in_view context flags (3: the reference's 7x7)."""

    character: str = CHARACTER
    max_episode_steps: int = 5000
    crop_size: int = CROP_SIZE
    view_radius: int = 3
    options: tuple[str, ...] = OPTIONS

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(self.options))
        if self.max_episode_steps < 1:
            raise ConfigError(f"nethack_env.max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.crop_size < 1 or self.crop_size % 2 == 0:
            raise ConfigError(f"nethack_env.crop_size must be odd and positive, got {self.crop_size}")
        if self.view_radius < 0:
            raise ConfigError(f"nethack_env.view_radius must be >= 0, got {self.view_radius}")
        if self.character != "@" and len(self.character.split("-")) != 4:
            raise ConfigError(f"nethack_env.character must look like 'mon-hum-neu-mal', got {self.character!r}")


# --- glyph features ---------------------------------------------------------------------------------------------

def _monster_id(name: str) -> int:
    for i in range(nethack.NUMMONS):
        if nethack.permonst(i).mname == name:
            return i
    raise KeyError(name)


def _cmap_id(explanation: str) -> int:
    for i in range(nethack.MAXPCHARS):
        if nethack.symdef.from_idx(i).explanation == explanation:
            return i
    raise KeyError(explanation)


_FEATURE_BITS = {"shopkeeper": 1, "altar": 2, "stairs_down": 4, "stairs_up": 8, "oracle": 16, "priest": 32,
                 "watch": 64}
_MONSTER_FEATURES = {"shopkeeper": ("shopkeeper",), "oracle": ("Oracle",), "priest": ("aligned priest",),
                     "watch": ("watchman", "watch captain")}
_CMAP_FEATURES = {"altar": ("altar",), "stairs_down": ("staircase down", "ladder down"),
                  "stairs_up": ("staircase up", "ladder up")}
# Map cells that are not a lit room's floor when scanning for a shop's walls: stone, walls, doors, bars, trees,
# dark floor, corridors (objects and monsters standing on the floor count as floor).
_ROOM_EDGE_CMAPS = set(range(_cmap_id("lit corridor") + 1)) - {_cmap_id("floor of a room")}


def _glyph_tables() -> tuple[np.ndarray, np.ndarray]:
    features = np.zeros(nethack.MAX_GLYPH + 1, np.uint8)
    room_edge = np.zeros(nethack.MAX_GLYPH + 1, bool)
    monsters = {_monster_id(n): _FEATURE_BITS[f] for f, names in _MONSTER_FEATURES.items() for n in names}
    cmaps = {_cmap_id(n): _FEATURE_BITS[f] for f, names in _CMAP_FEATURES.items() for n in names}
    for glyph in range(nethack.MAX_GLYPH):
        if nethack.glyph_is_monster(glyph):
            features[glyph] = monsters.get(nethack.glyph_to_mon(glyph), 0)
        elif nethack.glyph_is_cmap(glyph):
            cmap = nethack.glyph_to_cmap(glyph)
            features[glyph] = cmaps.get(cmap, 0)
            room_edge[glyph] = cmap in _ROOM_EDGE_CMAPS
    room_edge[nethack.MAX_GLYPH] = True
    return features, room_edge


FEATURES_OF_GLYPH, ROOM_EDGE_GLYPH = _glyph_tables()


def _feature_mask(glyphs: np.ndarray) -> int:
    return int(np.bitwise_or.reduce(FEATURES_OF_GLYPH[glyphs], axis=None))


def landmarks(raw: dict[str, np.ndarray]) -> frozenset[str]:
    """Features anywhere on the shown map: shopkeeper, altar, stairs_*, oracle, priest, watch (for detectors)."""
    mask = _feature_mask(raw["glyphs"])
    return frozenset(name for name, bit in _FEATURE_BITS.items() if mask & bit)


# --- observations -----------------------------------------------------------------------------------------------

def crop_into(glyphs: np.ndarray, x: int, y: int, out: np.ndarray) -> None:
    """Writes the (k, k) window of `glyphs` centred on column x, row y into `out`, padded with PAD_GLYPH."""
    size = out.shape[0]
    half = size // 2
    rows, cols = glyphs.shape
    top, left = y - half, x - half
    r0, r1 = max(top, 0), min(top + size, rows)
    c0, c1 = max(left, 0), min(left + size, cols)
    out.fill(PAD_GLYPH)
    if r0 < r1 and c0 < c1:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = glyphs[r0:r1, c0:c1]


TARGETS = ("stairs_down", "stairs_up", "altar", "shopkeeper")  # what `targets` points at, 4 numbers each
TARGET_FEATURES = 4 * len(TARGETS)
_STATIC_TARGETS = ("stairs_down", "stairs_up", "altar")  # remembered where seen: the hero or a monster may hide them
TARGET_SCALE = (20.0, 10.0)  # columns, rows: offsets are divided by these and clipped to [-1, 1]


def targets_into(glyphs: np.ndarray, x: int, y: int, level: tuple[int, int], state: EpisodeState | None,
                 out: np.ndarray) -> None:
    """Writes (dx, dy, present, here) of the nearest stairs down, stairs up, altar and shopkeeper into `out` (16,).

    The crop shows only a few cells around the agent; these point at the landmarks the skills head for
    anywhere on the shown map (Chebyshev-nearest; offsets scaled by TARGET_SCALE and clipped). Stairs and altars
    are remembered per level in `state.seen` once shown, so standing on the stairs (which the hero's glyph then
    hides) reads (0, 0, 1, 1): `here` says the agent stands on it (what DOWN / UP / an altar drop need). Absent: zeros.
    """
    features = FEATURES_OF_GLYPH[glyphs]
    out.fill(0.0)
    for k, name in enumerate(TARGETS):
        rows, cols = np.nonzero(features & _FEATURE_BITS[name])
        points = set(zip(cols.tolist(), rows.tolist()))
        if state is not None and name in _STATIC_TARGETS:
            remembered = state.seen.setdefault((*level, name), set())
            remembered |= points
            points = remembered
        if points:
            px, py = min(points, key=lambda p: max(abs(p[0] - x), abs(p[1] - y)))
            out[4 * k] = np.clip((px - x) / TARGET_SCALE[0], -1.0, 1.0)
            out[4 * k + 1] = np.clip((py - y) / TARGET_SCALE[1], -1.0, 1.0)
            out[4 * k + 2] = 1.0
            out[4 * k + 3] = float(px == x and py == y)


def policy_obs(raw: dict[str, np.ndarray], crop_size: int = CROP_SIZE,
               state: EpisodeState | None = None) -> dict[str, np.ndarray]:
    """{"crop": int16 (k, k) glyphs around the agent, "blstats": float32 (27,), "message": uint8 (256,),
    "targets": float32 (16,) (`targets_into`; `state` remembers stairs and altars across steps)}."""
    blstats = raw["blstats"]
    x, y = int(blstats[nethack.NLE_BL_X]), int(blstats[nethack.NLE_BL_Y])
    crop = np.empty((crop_size, crop_size), np.int16)
    crop_into(raw["glyphs"], x, y, crop)
    targets = np.empty(TARGET_FEATURES, np.float32)
    level = (int(blstats[nethack.NLE_BL_DNUM]), int(blstats[nethack.NLE_BL_DLEVEL]))
    targets_into(raw["glyphs"], x, y, level, state, targets)
    return {"crop": crop, "blstats": blstats.astype(np.float32), "message": np.array(raw["message"], np.uint8),
            "targets": targets}


def policy_obs_spec(crop_size: int = CROP_SIZE) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of `policy_obs`."""
    return {"crop": ((crop_size, crop_size), np.dtype(np.int16)), "blstats": ((BLSTATS_SIZE,), np.dtype(np.float32)),
            "message": ((MESSAGE_SIZE,), np.dtype(np.uint8)), "targets": ((TARGET_FEATURES,), np.dtype(np.float32))}


# --- skill context ----------------------------------------------------------------------------------------------

_SHOP_GREETING = re.compile(r"Welcome(?: again)? to .+'s? [a-z ]+!|You enter .+'s? [a-z ]+!")
Rect = tuple[int, int, int, int]  # (left, right, top, bottom) map columns/rows of a room's floor, inclusive


@dataclasses.dataclass
class EpisodeState:
    """What the skill context remembers within one episode: env steps, and shops seen per level."""

    step: int = 0
    message: str = ""
    shops: dict[tuple[int, int], list[Rect]] = dataclasses.field(default_factory=dict)
    seen: dict[tuple[int, int, str], set[tuple[int, int]]] = dataclasses.field(default_factory=dict)  # targets_into


def _shop_floor(glyphs: np.ndarray, x: int, y: int) -> Rect | None:
    """The floor rectangle of the room the hero is greeted into, standing in its door or inside it."""
    edge = ROOM_EDGE_GLYPH[glyphs]
    rows, cols = edge.shape

    def is_edge(cx: int, cy: int) -> bool:
        return not (0 <= cx < cols and 0 <= cy < rows) or bool(edge[cy, cx])

    def shopkeeper_near(cx: int, cy: int) -> bool:
        window = glyphs[max(cy - 1, 0):cy + 2, max(cx - 1, 0):cx + 2]
        return bool(_feature_mask(window) & _FEATURE_BITS["shopkeeper"])

    if is_edge(x - 1, y) and is_edge(x + 1, y):  # in a door of a horizontal wall: the shop is above or below
        sides = [(x, y - 1), (x, y + 1)]
    elif is_edge(x, y - 1) and is_edge(x, y + 1):  # in a door of a vertical wall
        sides = [(x - 1, y), (x + 1, y)]
    else:
        sides = [(x, y)]
    sides = [side for side in sides if not is_edge(*side)]
    if len(sides) > 1:  # floor on both sides (a shop inside a town): the shopkeeper waits inside the door
        sides = [side for side in sides if shopkeeper_near(*side)]
    if len(sides) != 1:
        return None
    if sides[0] != (x, y):
        edge[y, x] = True  # the door the hero stands in hides the doorway glyph
    sx, sy = sides[0]
    left, right, top, bottom = sx, sx, sy, sy
    while not is_edge(left - 1, sy):
        left -= 1
    while not is_edge(right + 1, sy):
        right += 1
    while not is_edge(sx, top - 1):
        top -= 1
    while not is_edge(sx, bottom + 1):
        bottom += 1
    return left, right, top, bottom


def skill_context(raw: dict[str, np.ndarray], state: EpisodeState, view_radius: int = 3) -> dict[str, Any]:
    """The skill programs' view of one step: `CONTEXT_KEYS`, plain Python values (JSON-serialisable).

    depth, dlevel, dnum, xp_level, gold, hp, hp_max, turn: blstats (dnum 0 Dungeons of Doom, 2 Gnomish Mines;
    dlevel counts within the branch). hunger: NetHack's state, 0 satiated, 1 not hungry, 2 hungry, 3 weak,
    4 fainting, 5 fainted, 6 starved. step: env steps so far in the episode. message: every message shown
    during the step, joined by two spaces (`state.message`; the raw buffer when that is empty).
    *_in_view: the feature is shown within `view_radius` cells of the agent (3: the reference's 7x7 window);
    altars and stairs stay shown once seen, monsters only while seen; ladders count as stairs.
    num_items: inventory letters in use (gold is one). in_shop: a shop greeting ("Welcome to X's general
    store!") was seen on this level, the shop's floor was read off the map then (from the door the hero
    stands in, or from inside), and the agent stands on that floor now; wrong if the shop was not fully shown
    when greeted (blind, dark), and blind to shops entered without a greeting (a deserted shop).
    Records new shop greetings in `state`, the only thing it changes.
    """
    bl = raw["blstats"].tolist()
    x, y = bl[nethack.NLE_BL_X], bl[nethack.NLE_BL_Y]
    glyphs = raw["glyphs"]
    level = (bl[nethack.NLE_BL_DNUM], bl[nethack.NLE_BL_DLEVEL])
    message = state.message if state.message else decode_message(raw["message"])
    if _SHOP_GREETING.search(message):
        rect = _shop_floor(glyphs, x, y)
        if rect is not None and rect not in state.shops.setdefault(level, []):
            state.shops[level].append(rect)
    r = view_radius
    mask = _feature_mask(glyphs[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1])
    in_shop = any(left <= x <= right and top <= y <= bottom for left, right, top, bottom in state.shops.get(level, ()))
    return {
        "depth": bl[nethack.NLE_BL_DEPTH], "dlevel": bl[nethack.NLE_BL_DLEVEL], "dnum": bl[nethack.NLE_BL_DNUM],
        "xp_level": bl[nethack.NLE_BL_XP], "gold": bl[nethack.NLE_BL_GOLD], "hp": bl[nethack.NLE_BL_HP],
        "hp_max": bl[nethack.NLE_BL_HPMAX], "hunger": bl[nethack.NLE_BL_HUNGER], "turn": bl[nethack.NLE_BL_TIME],
        "step": state.step, "message": message,
        "shopkeeper_in_view": bool(mask & _FEATURE_BITS["shopkeeper"]),
        "altar_in_view": bool(mask & _FEATURE_BITS["altar"]),
        "stairs_down_in_view": bool(mask & _FEATURE_BITS["stairs_down"]),
        "stairs_up_in_view": bool(mask & _FEATURE_BITS["stairs_up"]),
        "num_items": int(np.count_nonzero(raw["inv_letters"])), "in_shop": in_shop,
    }


# --- the game ---------------------------------------------------------------------------------------------------

_EAT_OR_DRINK = re.compile(rb"What do you want to (?:eat|drink)\?(?: \[([^\]]*)\])?")
_HEALING_SPELLBOOKS = frozenset(
    i for i in range(nethack.NUM_OBJECTS)
    if ord(nethack.objclass(i).oc_class) == nethack.SPBOOK_CLASS and nethack.OBJ_NAME(nethack.objclass(i)) == "healing")
_NOT_DROPPED_CLASSES = (nethack.FOOD_CLASS, nethack.COIN_CLASS)
_MAX_KNOWN_STEPS = 200  # --More--/question rounds handled per step before giving the game back to the agent


class _MaestroNLE(NLE):
    """NLE with the reference's macro-actions and question handling; `step` returns terminated and truncated."""

    def __init__(self, settings: NetHackSettings):
        super().__init__(character=settings.character, max_episode_steps=settings.max_episode_steps,
                         observation_keys=OBSERVATION_KEYS, actions=ACTIONS, options=settings.options,
                         fix_moon_phase=True)
        self._letters_index = self._observation_keys.index("inv_letters")
        self._oclasses_index = self._observation_keys.index("inv_oclasses")
        self.step_messages: list[str] = []
        self._starting_letters: set[int] = set()
        self._heals = False

    def reset(self, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        classes, letters = obs["inv_oclasses"], obs["inv_letters"]
        self._starting_letters = {int(c) for c, k in zip(letters, classes) if c and k != nethack.FOOD_CLASS}
        self._heals = any(nethack.glyph_is_object(int(g)) and nethack.glyph_to_obj(int(g)) in _HEALING_SPELLBOOKS
                          for g in obs["inv_glyphs"] if g != nethack.NO_GLYPH)
        self.step_messages = [decode_message(obs["message"])]
        return obs, info

    def _message(self, observation) -> bytes:
        return bytes(observation[self._message_index]).split(b"\0", 1)[0]

    def _question(self, observation) -> bool:
        return bool(observation[self._internal_index][1])

    def _send(self, key: int):
        observation = self.last_observation
        prompt = _EAT_OR_DRINK.search(self._message(observation)) if self._question(observation) else None
        if prompt is not None:  # `y` picks the first item offered, anything else cancels
            offered = re.findall(rb"[a-zA-Z]", (prompt.group(1) or b"").split(b" or ")[0])
            return self.nethack.step(offered[0][0] if key == ord("y") and offered else ASCII_SPACE)
        if key == nethack.MiscDirection.WAIT:
            for k in REST_KEYS:
                observation, done = self.nethack.step(k)
            return observation, done
        if key == nethack.Command.DROP:
            observation, done = self.nethack.step(key)
            droppable = [int(c) for c, k in zip(observation[self._letters_index], observation[self._oclasses_index])
                         if c and k not in _NOT_DROPPED_CLASSES and int(c) not in self._starting_letters]
            return self.nethack.step(droppable[0] if droppable else ASCII_ESC)
        if key == nethack.Command.CAST:
            self.nethack.step(key)
            observation, done = self.nethack.step(ord("a"))
            if self._heals and self._question(observation) and b"direction" in self._message(observation):
                observation, done = self.nethack.step(ord("."))
            return observation, done
        return self.nethack.step(key)

    def _perform_known_steps(self, observation, done, exceptions=True):
        """Skips --More--, declines questions the agent does not answer, takes skill advances."""
        enhance = enhanced = False
        for _ in range(_MAX_KNOWN_STEPS):
            if done:
                break
            message = self._message(observation)
            internal = observation[self._internal_index]
            if b"You feel more confident in" in message and not enhanced:
                enhance = True
            if internal[3]:  # waiting for space after --More--
                self._record(message)
                keep = any(k in message for k in KEPT_ACROSS_MORE)
                kept = observation[self._message_index].copy() if keep else None
                observation, done = self.nethack.step(ASCII_SPACE)
                if kept is not None:
                    observation = (*observation[:self._message_index], kept,
                                   *observation[self._message_index + 1:])
                continue
            if internal[2]:  # asked for a line of text
                observation, done = self.nethack.step(ASCII_ESC)
                continue
            if internal[1] and not (exceptions and any(q in message for q in AGENT_QUESTIONS)):
                self._record(message)  # the detectors still see what was asked (e.g. "Still climb?")
                observation, done = self.nethack.step(ASCII_ESC)
                continue
            if enhance and not internal[1]:
                enhance, enhanced = False, True
                self.nethack.step(nethack.Command.ENHANCE)
                observation, done = self.nethack.step(ord("a"))
                continue
            break
        return observation, done

    def _record(self, message: bytes) -> None:
        text = message.decode("latin-1").strip()
        if not text:
            return
        if self.step_messages and text.startswith(self.step_messages[-1]):  # the same line, grown (an answer)
            self.step_messages[-1] = text
        else:
            self.step_messages.append(text)

    def step(self, action: int):
        last_blstats = self.last_observation[self._blstats_index].copy()
        old_score = int(last_blstats[nethack.NLE_BL_SCORE])
        self.step_messages = []
        observation, done = self._send(int(self.actions[action]))
        observation, done = self._perform_known_steps(observation, done)
        self._record(self._message(observation))
        self._steps += 1
        if done and not observation[self._blstats_index].any():  # NLE zeroes them when the game is over
            observation = (*observation[:self._blstats_index], last_blstats, *observation[self._blstats_index + 1:])
        self.last_observation = observation
        reward = 0.0
        if self.nethack.in_normal_game():
            reward = float(int(observation[self._blstats_index][nethack.NLE_BL_SCORE]) - old_score)
        truncated = not done and self._steps >= self._max_episode_steps
        if truncated:  # quitting overwrites NLE's buffers: keep the last state seen
            self.last_observation = observation = tuple(a.copy() for a in observation)
            self._quit_game(observation, done)
        return self._get_observation(observation), reward, done, truncated


def episode_seeds(seed: int, env_index: int, episode: int) -> tuple[int, int]:
    """NetHack's (core, disp) seeds of one episode of one env, from the run's seed."""
    core, disp = np.random.SeedSequence([seed, env_index, episode]).generate_state(2, np.uint64) >> np.uint64(1)
    return int(core), int(disp)


class NetHackEnv:
    """One MaestroMotif game: reduced actions, raw observations, the skill context of the current step.

    The raw observation's arrays are NLE's buffers, overwritten by the next step; `policy_obs` copies.
    """

    def __init__(self, settings: NetHackSettings | None = None):
        self.settings = settings if settings is not None else NetHackSettings()
        self._game = _MaestroNLE(self.settings)
        self.state = EpisodeState()
        self.raw: dict[str, np.ndarray] = {}
        self._context: dict[str, Any] = {}

    @property
    def num_actions(self) -> int:
        return len(ACTIONS)

    def reset(self, seeds: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """Starts a game (seeded with NetHack's (core, disp) if given); returns the raw observation."""
        if seeds is not None:
            self._game.seed(core=seeds[0], disp=seeds[1], reseed=False)
        self.raw, _ = self._game.reset()
        self.state = EpisodeState(message="  ".join(m for m in self._game.step_messages if m))
        self._context = skill_context(self.raw, self.state, self.settings.view_radius)
        return self.raw

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool]:
        """(raw observation, score change, terminated, truncated)."""
        self.raw, reward, terminated, truncated = self._game.step(action)
        self.state.step += 1
        self.state.message = "  ".join(self._game.step_messages)
        self._context = skill_context(self.raw, self.state, self.settings.view_radius)  # every step: shop memory
        return self.raw, reward, terminated, truncated

    def context(self) -> dict[str, Any]:
        """The skill context of the current step."""
        return self._context

    def policy_obs(self) -> dict[str, np.ndarray]:
        return policy_obs(self.raw, self.settings.crop_size, self.state)

    def close(self) -> None:
        self._game.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
