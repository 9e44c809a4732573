"""Rule-based SYNTHETIC PLAYERS with a known, configurable bias: stand-ins for models, not models.

A player reads the prompt as a model would (the listed actions, the payoff lines, both preferred behaviours), works
out the correct action (`libs.envs.matrix_games`), and answers:
- with probability `strength`, the action its bias pulls to: "positional" the first-listed action (direction "x")
  or the second ("y"); "payoff" the action of the max-self-gain cell ("x") or of the max-common-gain cell ("y");
  "behavioural" the action both players would take if both preferred self-gain ("x") or common-gain ("y");
- otherwise the correct action with probability `accuracy`, else the other one;
- and, with probability `invalid`, a reply that names no action.
So its accuracy is `strength + (1 - strength) * accuracy` where the bias points to the correct action and
`(1 - strength) * accuracy` where it does not: the drop the measures should recover is `strength` (where a bias's
two candidate actions agree, e.g. the payoff bias in Stag Hunt, the pull is the same action either way).
Draws are a pure function of (the player's settings, seed, prompt, sample), so reruns see the same answers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from typing import Any

import gin

from libs.envs.matrix_games import MatrixGame
from libs.train.errors import ConfigError

BIASES = ("none", "positional", "payoff", "behavioural")
_ACTIONS = re.compile(r'The actions are "(.+?)" and "(.+?)"\.')
_CELL = re.compile(r'- you choose "(.+?)" and the other player chooses "(.+?)": you get (-?[\d.e+]+) points, '
                   r"the other player gets (-?[\d.e+]+) points")
_YOURS = re.compile(r"Your preferred behaviour is .*\((self|common)-gain\)")
_THEIRS = re.compile(r"The other player's preferred behaviour is .*\((self|common)-gain\)")


class PromptError(ValueError):
    """A prompt the player cannot read (not one of this study's)."""


def read_prompt(text: str) -> tuple[tuple[str, str], MatrixGame, str, str]:
    """(labels in listed order, the game with action 0 = the first listed, acting preference, fellow preference)."""
    listed, yours, theirs = _ACTIONS.search(text), _YOURS.search(text), _THEIRS.search(text)
    cells = _CELL.findall(text)
    if not (listed and yours and theirs and len(cells) == 4):
        raise PromptError("not a strategic-games prompt")
    labels = listed.groups()
    row = [[0.0, 0.0], [0.0, 0.0]]
    column = [[0.0, 0.0], [0.0, 0.0]]
    for mine, other, my_points, their_points in cells:
        i, j = labels.index(mine), labels.index(other)
        row[i][j], column[i][j] = float(my_points), float(their_points)
    game = MatrixGame("prompt", "prompt", labels, tuple(map(tuple, row)), tuple(map(tuple, column)))
    return labels, game, yours.group(1), theirs.group(1)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SyntheticPlayer:
    """A biased rule-based player (see the module docstring). `label` names it in every result."""

    bias: str = "positional"
    direction: str = "x"
    strength: float = 0.3
    accuracy: float = 0.9
    invalid: float = 0.0
    seed: int = 0

    def __post_init__(self):
        numbers = (self.strength, self.accuracy, self.invalid)
        if self.bias not in BIASES or self.direction not in ("x", "y") or not all(0 <= p <= 1 for p in numbers):
            raise ConfigError(f"SyntheticPlayer: bias in {BIASES}, direction 'x' or 'y', probabilities in [0, 1]; "
                              f"got {self}")

    @property
    def label(self) -> str:
        if self.bias == "none":
            return f"stand-in: synthetic unbiased player (accuracy {self.accuracy}), not a model"
        return (f"stand-in: synthetic player, {self.bias} bias {self.direction} strength {self.strength} "
                f"(accuracy {self.accuracy}), not a model")

    @property
    def short_label(self) -> str:
        """For plot titles and file names."""
        if self.bias == "none":
            return "stand-in unbiased"
        return f"stand-in {self.bias} {self.direction} {self.strength:g}"

    def pull(self, game: MatrixGame) -> int:
        """The action the bias pulls to (game action 0 is the first listed)."""
        if self.bias == "positional":
            return 0 if self.direction == "x" else 1
        if self.bias == "payoff":
            cell = game.max_self_gain_cell() if self.direction == "x" else game.max_common_gain_cell()
            return cell[0]
        preference = "self" if self.direction == "x" else "common"
        return game.correct_action(preference, preference)

    def choose(self, text: str, sample: Any) -> int | None:
        """The listed-order index of the chosen action, or None for an invalid reply."""
        _, game, acting, fellow = read_prompt(text)
        who = f"{self.seed}/{self.bias}/{self.direction}/{self.strength}/{self.accuracy}/{self.invalid}"
        digest = hashlib.sha256(f"{who}/{sample}/{text}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "little"))
        if rng.random() < self.invalid:
            return None
        correct = game.correct_action(acting, fellow)
        if self.bias != "none" and rng.random() < self.strength:
            return self.pull(game)
        return correct if rng.random() < self.accuracy else 1 - correct

    def reply(self, text: str, sample: Any, constrained: bool = False) -> str:
        labels = read_prompt(text)[0]
        choice = self.choose(text, sample)
        if choice is None:
            return "I would rather not choose."
        return json.dumps({"action": labels[choice]}) if constrained else f"Answer: {labels[choice]}"
