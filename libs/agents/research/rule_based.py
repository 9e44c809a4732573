"""The rule-based operator set: a labelled STAND-IN that needs no model.

It proposes candidates for a research task by editing only the hyperparameters the task marks in its
starter code (`NAME = value  # tune: ...`, libs.envs.research_tasks.tunables):

- draft: the task's baseline, unchanged (the first draft), then the baseline with every marked value drawn
  at random (later drafts, so a Greedy search's several drafts differ);
- improve: one marked value of the parent changed: drawn at random (`mode="random"`), or moved to the next
  candidate value up or down (`mode="grid"`, a coordinate step);
- debug: back to the last good ancestor's sources (a mutation broke the program; undo it);
- crossover: each marked value taken from one parent or the other at random.

Every proposal's plan says what changed and that a rule-based stand-in made it. It exists so the whole
agent loop (sandbox, evaluation, search policies, reports) runs offline; it is not a research agent.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping

from libs.envs.research_tasks import ResearchTask, Tunable, apply_tunable, parse_tunables

STAND_IN = "rule-based stand-in (no model)"
Sources = dict[str, str]


@dataclasses.dataclass(frozen=True)
class Proposal:
    plan: str
    sources: Sources  # editable file name -> its full text


def _marks(sources: Mapping[str, str]) -> list[tuple[str, Tunable]]:
    return [(name, t) for name, text in sorted(sources.items()) for t in parse_tunables(text)]


def _with(sources: Mapping[str, str], changes: list[tuple[str, str, object]]) -> Sources:
    out = dict(sources)
    for name, var, value in changes:
        out[name] = apply_tunable(out[name], var, value)
    return out


def _describe(changes: list[tuple[str, str, object]], before: Mapping[tuple[str, str], object]) -> str:
    return ", ".join(f"{var} {before[(name, var)]!r} -> {value!r}" for name, var, value in changes) or "nothing"


class RuleBasedProposer:
    """Proposals for one task (see the module doc); `mode` is "random" or "grid"."""

    label = STAND_IN

    def __init__(self, task: ResearchTask, mode: str = "random"):
        if mode not in ("random", "grid"):
            raise ValueError(f"mode={mode!r}: expected 'random' or 'grid'")
        self.task, self.mode = task, mode
        self.baseline = task.starter_sources()
        if not _marks(self.baseline):
            raise ValueError(f"task {task.name} marks no tunable hyperparameters: the rule-based operators "
                             "have nothing to change")

    def draft(self, index: int, rng: random.Random) -> Proposal:
        if index == 0:
            return Proposal(f"[{STAND_IN}] the task's baseline, unchanged.", dict(self.baseline))
        marks = _marks(self.baseline)
        changes = [(name, t.name, t.sample(rng)) for name, t in marks]
        before = {(name, t.name): t.value for name, t in marks}
        return Proposal(f"[{STAND_IN}] the baseline with every marked value drawn at random: "
                        f"{_describe(changes, before)}.", _with(self.baseline, changes))

    def improve(self, parent: Mapping[str, str], rng: random.Random) -> Proposal:
        marks = _marks(parent)
        name, mark = marks[rng.randrange(len(marks))]
        value = self._step(mark, rng) if self.mode == "grid" else self._draw(mark, rng)
        return Proposal(f"[{STAND_IN}] one marked value changed ({self.mode}): "
                        f"{_describe([(name, mark.name, value)], {(name, mark.name): mark.value})}.",
                        _with(parent, [(name, mark.name, value)]))

    def debug(self, last_good: Mapping[str, str] | None) -> Proposal:
        sources = dict(last_good) if last_good is not None else dict(self.baseline)
        where = "the last good ancestor" if last_good is not None else "the baseline (no good ancestor)"
        return Proposal(f"[{STAND_IN}] the change broke the program: back to {where}.", sources)

    def crossover(self, a: Mapping[str, str], b: Mapping[str, str], rng: random.Random) -> Proposal:
        theirs = {(name, t.name): t.value for name, t in _marks(b)}
        changes = [(name, t.name, theirs[(name, t.name)]) for name, t in _marks(a)
                   if (name, t.name) in theirs and rng.random() < 0.5 and theirs[(name, t.name)] != t.value]
        before = {(name, t.name): t.value for name, t in _marks(a)}
        return Proposal(f"[{STAND_IN}] parent 1 with these values of parent 2: {_describe(changes, before)}.",
                        _with(a, changes))

    @staticmethod
    def _draw(mark: Tunable, rng: random.Random):
        for _ in range(20):  # a different value when there is one
            value = mark.sample(rng)
            if value != mark.value:
                return value
        return value

    @staticmethod
    def _step(mark: Tunable, rng: random.Random):
        grid = sorted(set(mark.candidates()) | {mark.value}, key=lambda v: (str(type(v)), v))
        i = grid.index(mark.value)
        neighbours = [grid[j] for j in (i - 1, i + 1) if 0 <= j < len(grid)]
        return rng.choice(neighbours) if neighbours else mark.value
