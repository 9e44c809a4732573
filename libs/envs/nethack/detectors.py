"""Success detectors for MaestroMotif's evaluation tasks, read off the per-step skill contexts.

The reference (mklissa/maestromotif `rl_baseline/monk_tasks_nle.py` l.405-460, `obs_wrappers.py` ModifierWrapper,
`price_id.py`, task texts in `code_generation/*/initial.txt`) opens NetHack's #overview and matches strings in it;
here everything comes from what the agent is shown: blstats, messages and (via `landmarks`) map glyphs.

- gnomish_mines: the agent stands in the Gnomish Mines (dnum 2).
- delphi: the Oracle level: in the Dungeons of Doom with the Oracle shown on the map, or an Oracle-level sound
  ("You hear convulsive ravings." ...). Missed when the agent crosses the level without seeing her or hearing
  one (the reference's stand-in, "Level 7" in #overview, means depth 7 in either branch).
- minetown: in the Mines on level 3 or 4 (where Minetown is placed) with town evidence on the map or in the
  messages: a temple priest, a watchman, a shopkeeper, an altar, a shop or temple greeting; or any Mines level
  below 4, which is reached through Minetown's level (wrong after a fall through a hole, rare in the Mines).
  Missed when the agent leaves Minetown seeing none of these.
- transaction: a shopkeeper bought from the agent or sold to it ("You sold ...", "you bought ...", trades for
  credit). With the reduced action set only selling happens (buying needs pick-up and pay).
- price_id: a shopkeeper's offer for an item "Sell it?" whose doubled price is a base price of the item's kind
  (potion, scroll, ring, wand, cloak, boots, helmet), the reference's rule; base prices are NLE's object table.
  The reference also waited for the sale to go through; the offer alone carries the information.
- buc_id: an item dropped on an altar whose curse status was unknown: a black or amber flash, or "lands on the
  altar" (no flash: uncursed). Gold and items already named cursed/uncursed/blessed do not count.
- golden_exit: after kills >= 25 ("You kill/destroy ..."), gold >= 20 and depth 3 reached (all at one step,
  the reference's check), the agent tries to leave the dungeon (the "Still climb?" question on Dlvl 1).
- level_up_sell: XP level 4, then a sale, then 300 more env steps in the same episode.
- discovery_hunger: the agent eats in the Gnomish Mines, then reaches Delphi (the reference's evaluation
  checked the eating, not that the agent was hungry first, which the task text asks for).
"""

from __future__ import annotations

import re
from typing import Any

from nle import nethack

TASKS = ("gnomish_mines", "delphi", "minetown", "transaction", "price_id", "buc_id", "golden_exit",
         "level_up_sell", "discovery_hunger")

DUNGEONS_OF_DOOM, GNOMISH_MINES = 0, 2
MINETOWN_LEVELS = (3, 4)  # dungeon.def: "minetn" @ (3, 2) in the Mines
GOLDEN_EXIT_KILLS, GOLDEN_EXIT_GOLD, GOLDEN_EXIT_DEPTH = 25, 20, 3
LEVEL_UP_SELL_XP, LEVEL_UP_SELL_SURVIVE_STEPS = 4, 300
TOWN_LANDMARKS = frozenset({"priest", "watch", "shopkeeper", "altar"})

_KILL = re.compile(r"\bYou (?:kill|destroy) ")
_TRANSACTION = re.compile(r"\b[Yy]ou (?:sold|bought|traded|relinquish) ")
_SELL_OFFER = re.compile(r"offers (\d+) gold pieces? for (?:your|the) (.+?)\.  Sell (?:it|them)\?")
_ALTAR_ITEM = re.compile(r"There is an? [\w-]+ flash as (.+?) hits? the altar\.|(?:^|[.!?]\s+)([^.!?]+?) lands? on "
                         r"the altar\.")
_BUC_NAMED = re.compile(r"\b(?:un)?cursed\b|\bblessed\b|\bholy water\b|\bgold pieces?\b", re.IGNORECASE)
_ORACLE_SOUNDS = re.compile(r"You hear (?:a strange wind|convulsive ravings|snoring snakes|a loud ZOT)|"
                            r"No more woodchucks!")
_TOWN_MESSAGES = re.compile(r"Welcome(?: again)? to .+'s? [a-z ]+!|You enter .+'s? [a-z ]+!|enter a sacred place|"
                            r"strange forbidding feeling|strange sense of peace")
_EATING = re.compile(r"You finish eating|You're finally finished|\b(?:This|The) .+ (?:is|tastes) (?:delicious|okay|"
                     r"terrible|bland|gnarly|grody|copacetic|gr-r-reat)|hits the spot|satiates your|hard time getting "
                     r"all of it down|[Cc]ore dumped|You stop eating|You consume|just like chicken|Rotten egg|"
                     r"dog food|Mmm, tripe|surprisingly good|elf kibble|A little goes a long way|My, this is a|"
                     r"cookie has a scrap of paper|Blecch")
_CLIMB_OUT = "Still climb?"

# Kinds of item the reference identifies by price, each with the word that names it in an offer.
_PRICE_KINDS = {"potion": r"\bpotions?\b", "scroll": r"\bscrolls?\b", "ring": r"\brings?\b(?! mail)",
                "wand": r"\bwands?\b", "cloak": r"\bcloaks?\b", "boots": r"\bboots\b", "helmet": r"\bhelmets?\b"}
_KIND_CLASSES = {"potion": nethack.POTION_CLASS, "scroll": nethack.SCROLL_CLASS, "ring": nethack.RING_CLASS,
                 "wand": nethack.WAND_CLASS, "cloak": nethack.ARMOR_CLASS, "boots": nethack.ARMOR_CLASS,
                 "helmet": nethack.ARMOR_CLASS}


def _base_prices() -> dict[str, frozenset[int]]:
    prices: dict[str, set[int]] = {kind: set() for kind in _PRICE_KINDS}
    for i in range(nethack.NUM_OBJECTS):
        obj = nethack.objclass(i)
        names = " ".join(n for n in (nethack.OBJ_NAME(obj), nethack.OBJ_DESCR(obj)) if n)
        for kind, cls in _KIND_CLASSES.items():
            if ord(obj.oc_class) == cls and obj.oc_cost > 0 and (cls != nethack.ARMOR_CLASS
                                                             or re.search(_PRICE_KINDS[kind], names)):
                prices[kind].add(int(obj.oc_cost))
    return {kind: frozenset(p) for kind, p in prices.items()}


BASE_PRICES = _base_prices()


def price_identifies(message: str) -> bool:
    """A shopkeeper's sell offer whose doubled price is a base price of the item's kind (the reference's rule)."""
    for match in _SELL_OFFER.finditer(message):
        offer, item = int(match.group(1)), match.group(2)
        for kind, word in _PRICE_KINDS.items():
            if re.search(word, item):
                if 2 * offer in BASE_PRICES[kind]:
                    return True
                break
    return False


def buc_identifies(message: str) -> bool:
    """An item of unknown curse status dropped on an altar (a flash, or none)."""
    for match in _ALTAR_ITEM.finditer(message):
        item = match.group(1) or match.group(2)
        if not _BUC_NAMED.search(item):
            return True
    return False


def is_eating(message: str) -> bool:
    return bool(_EATING.search(message))


def on_delphi(context: dict[str, Any], landmarks: frozenset[str]) -> bool:
    return context["dnum"] == DUNGEONS_OF_DOOM and ("oracle" in landmarks or bool(_ORACLE_SOUNDS.search(
        context["message"])))


def on_minetown(context: dict[str, Any], landmarks: frozenset[str]) -> bool:
    if context["dnum"] != GNOMISH_MINES or context["dlevel"] < MINETOWN_LEVELS[0]:
        return False
    if context["dlevel"] > MINETOWN_LEVELS[-1]:
        return True
    return bool(landmarks & TOWN_LANDMARKS) or bool(_TOWN_MESSAGES.search(context["message"]))


class TaskTracker:
    """Per-episode success of every task in `TASKS`; feed it each step's skill context, the first one included."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._done = dict.fromkeys(TASKS, False)
        self.kills = 0
        self.max_depth = 0
        self._golden_ready = False
        self._xp_reached = False
        self._sale_step: int | None = None
        self._ate_in_mines = False

    def update(self, context: dict[str, Any], landmarks: frozenset[str] = frozenset()) -> None:
        """Reads one step; `landmarks` are the map features shown (`env.landmarks`), for Delphi and Minetown."""
        message = context["message"]
        done = self._done
        self.kills += len(_KILL.findall(message))
        self.max_depth = max(self.max_depth, context["depth"])
        sale = bool(_TRANSACTION.search(message))
        delphi = on_delphi(context, landmarks)

        done["gnomish_mines"] |= context["dnum"] == GNOMISH_MINES
        done["delphi"] |= delphi
        done["minetown"] |= on_minetown(context, landmarks)
        done["transaction"] |= sale
        done["price_id"] |= price_identifies(message)
        done["buc_id"] |= buc_identifies(message)

        self._golden_ready |= (self.kills >= GOLDEN_EXIT_KILLS and context["gold"] >= GOLDEN_EXIT_GOLD
                               and self.max_depth >= GOLDEN_EXIT_DEPTH)
        done["golden_exit"] |= self._golden_ready and _CLIMB_OUT in message

        self._xp_reached |= context["xp_level"] >= LEVEL_UP_SELL_XP
        if self._sale_step is None and self._xp_reached and sale:
            self._sale_step = context["step"]
        done["level_up_sell"] |= (self._sale_step is not None
                                  and context["step"] - self._sale_step >= LEVEL_UP_SELL_SURVIVE_STEPS)

        done["discovery_hunger"] |= self._ate_in_mines and delphi
        self._ate_in_mines |= context["dnum"] == GNOMISH_MINES and is_eating(message)

    def successes(self) -> dict[str, bool]:
        """Task name -> whether it succeeded so far in this episode."""
        return dict(self._done)
