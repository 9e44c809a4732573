"""Task success detectors on constructed skill contexts and on real game messages."""

from __future__ import annotations

import pytest

from libs.envs.nethack import detectors
from libs.envs.nethack.detectors import TASKS, TaskTracker
from libs.envs.nethack.env import ACTION_NAMES, YES_ACTION, NetHackEnv, episode_seeds, landmarks

SELL_OFFER = "Asidonhopo offers 10 gold pieces for your scroll labeled ZELGO MER.  Sell it? [ynaq] (y)"
SOLD = "You sold a scroll labeled ZELGO MER for 10 gold pieces."


def ctx(**kw) -> dict:
    base = {"depth": 1, "dlevel": 1, "dnum": 0, "xp_level": 1, "gold": 0, "hp": 14, "hp_max": 14, "hunger": 1,
            "turn": 1, "step": 0, "message": "", "shopkeeper_in_view": False, "altar_in_view": False,
            "stairs_down_in_view": False, "stairs_up_in_view": False, "num_items": 9, "in_shop": False}
    base.update(kw)
    return base


def run(*contexts, landmarks_per_step=None) -> dict[str, bool]:
    tracker = TaskTracker()
    for i, c in enumerate(contexts):
        tracker.update(c, (landmarks_per_step or {}).get(i, frozenset()))
    return tracker.successes()


def only(successes: dict[str, bool]) -> set[str]:
    return {task for task, ok in successes.items() if ok}


def test_navigation_tasks():
    assert only(run(ctx(), ctx(depth=3, dlevel=1, dnum=2))) == {"gnomish_mines"}
    assert only(run(ctx(depth=6, dlevel=6), landmarks_per_step={0: frozenset({"oracle"})})) == {"delphi"}
    assert only(run(ctx(depth=6, dlevel=6, message="You hear convulsive ravings."))) == {"delphi"}
    assert not run(ctx(depth=6, dlevel=2, dnum=2), landmarks_per_step={0: frozenset({"oracle"})})["delphi"]
    town = ctx(depth=6, dlevel=3, dnum=2)
    assert not run(town)["minetown"]  # a Mines level 3 with nothing of a town seen
    assert run(town, landmarks_per_step={0: frozenset({"priest"})})["minetown"]
    assert run(ctx(depth=6, dlevel=4, dnum=2, message="Hello, Agent!  Welcome to Izchak's lighting store!"))[
        "minetown"]
    assert run(ctx(depth=8, dlevel=5, dnum=2))["minetown"]  # below Minetown's level
    assert not run(ctx(depth=4, dlevel=4), landmarks_per_step={0: frozenset({"priest"})})["minetown"]


def test_interaction_tasks():
    assert only(run(ctx(message=SELL_OFFER), ctx(message=SOLD))) == {"transaction", "price_id"}
    assert run(ctx(message="A scroll labeled FOO; you sold it for 10 gold pieces."))["transaction"]
    lowball = SELL_OFFER.replace("10 gold", "7 gold")  # 14 is no scroll's price
    assert not run(ctx(message=lowball))["price_id"]
    assert not run(ctx(message=SELL_OFFER.replace("scroll labeled ZELGO MER", "ruby ring mail")))["price_id"]
    assert run(ctx(message="There is a black flash as a scroll labeled FOO hits the altar."))["buc_id"]
    assert run(ctx(message="There is an amber flash as 2 potions hit the altar."))["buc_id"]
    assert run(ctx(message="You drop it.  A scroll labeled FOO lands on the altar."))["buc_id"]
    assert not run(ctx(message="An uncursed +2 pair of leather gloves lands on the altar."))["buc_id"]
    assert not run(ctx(message="5 gold pieces land on the altar."))["buc_id"]
    assert not run(ctx(message="There is an altar to Chih Sung-tzu (neutral) here."))["buc_id"]


def test_golden_exit_needs_kills_gold_and_depth_before_the_climb():
    climb = "Beware, there will be no return!  Still climb? [yn] (n) n"
    kills = [ctx(message="You kill the newt!  You kill the jackal!", depth=3)] * 12
    assert not run(*kills, ctx(gold=25, message=climb))["golden_exit"]  # 24 kills
    ready = [*kills, ctx(message="You destroy the lichen!", gold=25)]
    assert not run(*ready)["golden_exit"]
    assert run(*ready, ctx(gold=3, message=climb))["golden_exit"]
    assert not run(*[ctx(message="You kill the newt!", gold=25)] * 25, ctx(message=climb))["golden_exit"]  # depth 1


def test_level_up_sell_needs_xp_4_then_a_sale_then_300_steps():
    sale = ctx(xp_level=4, step=50, message=SOLD)
    assert not run(ctx(step=10, message=SOLD), ctx(xp_level=4, step=400))["level_up_sell"]  # sold before XP 4
    assert not run(sale, ctx(xp_level=4, step=349))["level_up_sell"]
    assert run(sale, ctx(xp_level=4, step=350))["level_up_sell"]


def test_discovery_hunger_eats_in_the_mines_then_reaches_delphi():
    oracle = frozenset({"oracle"})
    eat_mines = ctx(dnum=2, dlevel=2, depth=4, message="This food really hits the spot!")
    delphi = ctx(depth=7, dlevel=7)
    assert run(eat_mines, delphi, landmarks_per_step={1: oracle})["discovery_hunger"]
    assert not run(delphi, eat_mines, landmarks_per_step={0: oracle})["discovery_hunger"]
    assert not run(ctx(message="This food really hits the spot!"), delphi,
                   landmarks_per_step={1: oracle})["discovery_hunger"]  # ate outside the Mines


def test_reset_forgets_an_episode():
    tracker = TaskTracker()
    tracker.update(ctx(dnum=2))
    assert tracker.successes()["gnomish_mines"]
    tracker.reset()
    assert tracker.successes() == dict.fromkeys(TASKS, False)


@pytest.fixture(scope="module")
def game():
    with NetHackEnv() as env:
        yield env


def test_real_observations(game):
    raw = game.reset(episode_seeds(0, 0, 0))
    tracker = TaskTracker()
    tracker.update(game.context(), landmarks(raw))
    assert tracker.successes() == dict.fromkeys(TASKS, False)
    game.step(ACTION_NAMES.index("UP"))  # the game starts on Dlvl 1's up stairs
    assert "Still climb?" in game.context()["message"]
    game.reset(episode_seeds(0, 0, 0))
    game.step(ACTION_NAMES.index("EAT"))
    game.step(YES_ACTION)
    eaten = game.context()
    assert detectors.is_eating(eaten["message"])
    assert not detectors.is_eating("You kill the newt!")
    tracker.update({**eaten, "dnum": 2, "dlevel": 2, "depth": 3})  # as if in the Mines
    tracker.update({**eaten, "message": ""}, frozenset({"oracle"}))
    assert tracker.successes()["discovery_hunger"] and tracker.successes()["gnomish_mines"]
