"""MaestroMotif's hand-written skill program (version 0 of every skill-code store).

This file is a text resource as much as a module: its source is the program that runs the skills (see
skills.py for the three functions and the skill context) and that an LLM-written program replaces, so it
imports only the standard library and keeps all its state in `memory`. `TASK = None` gives the training
policy over skills; `skills.default_program_source(task)` sets TASK to a task name for that task's
evaluation policy (`select_skill_for_task`).

Ported from mklissa/maestromotif rl_baseline/meta_policies/<task>/seed42/execution.py, with these changes:
- initiation: merchant / worshipper need a shopkeeper / altar in view and a non-empty inventory
  (`skill_precondition`); the other skills may always start.
- termination: any skill ends when the merchant or worshipper precondition holds (the reference's exact rule:
  a running merchant "ends" and is selected again while the shopkeeper stays in view); descender ends when
  depth grows, ascender when it shrinks; discoverer after DISCOVERER_STEPS, merchant/worshipper after 20x.
  Durations count env steps, where the reference counts game turns (a policy stuck in zero-time actions
  would never end a discoverer by turns).
- The branch level of the Gnomish Mines: the reference's env spots two down staircases on one level; the
  skill context has no such signal, so the program learns it on entering the Mines (depth - dlevel).
- Golden Exit counts defeated monsters; the context has no kill count, so XP level >= GOLDEN_EXIT_XP_LEVEL
  stands in for "defeated 25 monsters" (about 80 experience points of early monsters).
- Discovery Hunger's "ate in the Mines" (an env flag in the reference) is read from the contexts seen at
  selections: hungry (hunger >= 2) in the Mines, then not hungry, or an eating message. After eating it climbs
  out of the Mines (the reference's code kept descending them, against its own task description).
"""

import random

TASK = None  # None: the training policy over skills; else one of TASKS (its evaluation policy)

SKILLS = ("discoverer", "descender", "ascender", "merchant", "worshipper")
TASKS = ("gnomish_mines", "delphi", "minetown", "transaction", "price_id", "buc_id", "golden_exit",
         "level_up_sell", "discovery_hunger")

DISCOVERER_STEPS = 500  # the reference uses 500 for training and most tasks, 50 for the navigation tasks
SHORT_DISCOVERER_TASKS = ("gnomish_mines", "delphi", "minetown")
LONG_SKILL_FACTOR = 20  # merchant and worshipper run 20x as long as the discoverer
MAX_DEPTH = {"gnomish_mines": 5, "delphi": 10, "minetown": 5, "transaction": 5, "price_id": 5, "buc_id": 5,
             "golden_exit": 3, "level_up_sell": 5, "discovery_hunger": 10}
TRAINING_MAX_DEPTHS = (2, 4)  # drawn per episode, as random.randint(2, 4) in the reference
ORACLE_DEPTH = 9  # the Oracle can appear as low as depth 9 (Delphi, Discovery Hunger)
MINETOWN_DEPTH = 8  # Minetown can appear as low as depth 8
GOLDEN_EXIT_GOLD = 20
GOLDEN_EXIT_XP_LEVEL = 4
LEVEL_UP_SELL_XP_LEVEL = 4
EATING_MESSAGES = ("You finish eating", "This food really hits the spot", "That food really hit the spot")


def discoverer_steps():
    return 50 if TASK in SHORT_DISCOVERER_TASKS else DISCOVERER_STEPS


def initiation(skill, ctx):
    """Whether `skill` may start in context `ctx`."""
    if skill == "merchant":
        return bool(ctx["shopkeeper_in_view"]) and ctx["num_items"] > 0
    if skill == "worshipper":
        return bool(ctx["altar_in_view"]) and ctx["num_items"] > 0
    return skill in SKILLS


def termination(skill, ctx, start_ctx, steps):
    """Whether the running `skill`, started at `start_ctx` `steps` env steps ago, ends now."""
    if initiation("merchant", ctx) or initiation("worshipper", ctx):
        return True
    if skill == "discoverer":
        return steps >= discoverer_steps()
    if skill == "descender":
        return ctx["depth"] > start_ctx["depth"]
    if skill == "ascender":
        return ctx["depth"] < start_ctx["depth"]
    if skill in ("merchant", "worshipper"):
        return steps >= LONG_SKILL_FACTOR * discoverer_steps()
    return True


def select_skill(ctx, memory):
    """The policy over skills: the next skill for context `ctx`; keeps its state in `memory`."""
    first = "skill" not in memory
    if first:
        rng = random.Random(memory.get("episode_seed"))
        memory.update(skill="discoverer", direction="down", branch_depth=-2,
                      max_depth=MAX_DEPTH[TASK] if TASK else rng.randint(*TRAINING_MAX_DEPTHS),
                      mines=rng.random() < 0.5, items_sold=False, explored_mines=False, was_hungry=False,
                      eaten_food=False)
    if ctx["dnum"] == 2 and memory["branch_depth"] < 0:
        memory["branch_depth"] = ctx["depth"] - ctx["dlevel"]
    if first:
        skill = "discoverer"  # the reference starts every episode with the discoverer
    elif TASK is None:
        skill = reach_gnomish_mines(ctx, memory) if memory["mines"] else reach_dungeons_of_doom(ctx, memory)
    else:
        skill = select_skill_for_task(TASK, ctx, memory)
    memory["skill"] = skill
    return skill


def explore(ctx, memory):
    """The reference's `select_skill`: alternate the discoverer with going down to max_depth, then up to
    depth 1 and down again; the merchant / worshipper whenever they may start."""
    if initiation("merchant", ctx):
        return "merchant"
    if initiation("worshipper", ctx):
        return "worshipper"
    if memory["eaten_food"]:  # Discovery Hunger, after eating: no more exploring
        return "descender" if memory["direction"] == "down" else "ascender"
    if memory["skill"] != "discoverer":
        return "discoverer"
    depth = ctx["depth"]
    if memory["direction"] == "down":
        if depth < memory["max_depth"]:
            return "descender"
        memory["direction"] = "up"
        return "ascender"
    if depth > 1:
        return "ascender"
    memory["direction"] = "down"
    return "descender"


def reach_gnomish_mines(ctx, memory):
    branch = memory["branch_depth"]
    if ctx["dnum"] == 0:
        if ctx["depth"] == branch:
            return "descender"
        if ctx["depth"] == branch + 1:
            return "ascender"
    return explore(ctx, memory)


def reach_dungeons_of_doom(ctx, memory):
    branch = memory["branch_depth"]
    if ctx["depth"] == branch:
        return "ascender" if ctx["dnum"] == 2 else "descender"
    if ctx["dnum"] == 2 and ctx["depth"] == branch + 1:
        return "ascender"
    return explore(ctx, memory)


def select_skill_for_task(task, ctx, memory):
    """The evaluation policy over skills of `task` (the reference's per-task `perform_task`)."""
    dnum, depth = ctx["dnum"], ctx["depth"]
    if task == "gnomish_mines":
        return reach_gnomish_mines(ctx, memory)
    if task == "delphi":
        if dnum != 0:
            return reach_dungeons_of_doom(ctx, memory)
        return "descender" if depth < ORACLE_DEPTH else explore(ctx, memory)
    if task == "minetown":
        if dnum == 2:
            return "descender" if depth < MINETOWN_DEPTH else "discoverer"
        return reach_gnomish_mines(ctx, memory)
    if task in ("transaction", "price_id"):
        return "merchant" if initiation("merchant", ctx) else reach_dungeons_of_doom(ctx, memory)
    if task == "buc_id":
        return "worshipper" if initiation("worshipper", ctx) else explore(ctx, memory)
    if task == "golden_exit":
        if ctx["gold"] >= GOLDEN_EXIT_GOLD and ctx["xp_level"] >= GOLDEN_EXIT_XP_LEVEL:
            return "ascender"
        return explore(ctx, memory) if dnum == 0 else reach_dungeons_of_doom(ctx, memory)
    if task == "level_up_sell":
        if ctx["xp_level"] < LEVEL_UP_SELL_XP_LEVEL:
            return "discoverer"
        if not memory["items_sold"]:
            if initiation("merchant", ctx):
                memory["items_sold"] = True
                return "merchant"
            return reach_dungeons_of_doom(ctx, memory)
        return explore(ctx, memory)
    if task == "discovery_hunger":
        return _discovery_hunger(ctx, memory)
    raise ValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")


def _discovery_hunger(ctx, memory):
    in_mines = ctx["dnum"] == 2
    if in_mines and ctx["hunger"] >= 2:
        memory["was_hungry"] = True
    ate = any(m in ctx["message"] for m in EATING_MESSAGES)
    if in_mines and memory["explored_mines"] and (ate or (memory["was_hungry"] and ctx["hunger"] <= 1)):
        memory["eaten_food"] = True
    if not memory["explored_mines"]:
        if in_mines:
            memory["explored_mines"] = True
            return "discoverer"
        return reach_gnomish_mines(ctx, memory)
    if not memory["eaten_food"]:
        return "discoverer"
    if ctx["dnum"] == 2:
        return "ascender"  # back to the Dungeons of Doom (the reference went on down the Mines here)
    if ctx["dnum"] != 0:
        return reach_dungeons_of_doom(ctx, memory)
    return "descender" if ctx["depth"] < ORACLE_DEPTH else "discoverer"
