"""A graded offline STAND-IN for the model: the puzzle's heuristic, corrupted by calibrated noise.

This is not a model. It answers the four search queries from the puzzle's own heuristic
(reachable-value distance for Countdown, constraint propagation for Sudoku), so offline runs need no
key and no network, and it is labelled as a stand-in in every result. Uncorrupted, the heuristic is
close to an oracle and every policy solves everything; the noise levels make offline runs rank the
policies and show how each degrades as the scorer weakens:

- values: the heuristic value of a state (1 / 0 for a won / lost final state) plus Gaussian noise of
  standard deviation `sigma`, clipped to [0, 1];
- explore: "leave this path" when the noisy value of the current state falls below the game's
  threshold (Countdown: the target is no longer reachable, h < 1; Sudoku: propagation found a
  contradiction, h = 0); the model-free rule sees only the current node, as the paper's prompt does;
- priors: a softmax (temperature 0.1) over the noisy values of the listed children.

Noise is a pure function of (seed, query kind, state), so reruns and resumed games see the same
answers. Tokens are estimated from the prompt a model would have been sent (characters / 4) plus a
fixed reply length, so budgets and efficiency figures are comparable across policies.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from libs.agents import prompts

LEVELS = {"exact": 0.0, "strong": 0.1, "medium": 0.2, "weak": 0.35}  # noise standard deviation
EXPLORE_BELOW = {"countdown": 0.95, "sudoku": 0.1}
PRIOR_TEMPERATURE = 0.1
CHARS_PER_TOKEN = 4
REPLY_TOKENS = 150  # assumed length of a model's reply (brief reasoning plus the boxed answer)


def label(level: str) -> str:
    return f"stand-in: heuristic with {level} noise (sigma={LEVELS[level]}), not a model"


class StandInScorer:
    """Answers one game's queries from its heuristic with noise of standard deviation `sigma`."""

    def __init__(self, level: str = "medium", seed: int = 0):
        if level not in LEVELS:
            raise ValueError(f"stand-in level {level!r}: expected one of {sorted(LEVELS)}")
        self.level, self.sigma, self.seed = level, LEVELS[level], seed
        self.label = label(level)
        self.tokens = 0
        self.queries = 0
        self._exact: dict[str, float] = {}

    def _key(self, game, state) -> str:
        return json.dumps(game.key(state), separators=(",", ":"))

    def exact_value(self, game, state) -> float:
        """The uncorrupted value: 1 / 0 for a won / lost final state, else the heuristic."""
        key = self._key(game, state)
        if key not in self._exact:
            if game.is_terminal(state):
                self._exact[key] = float(game.is_solution(state))
            else:
                self._exact[key] = float(game.heuristic(state))
        return self._exact[key]

    def noisy_value(self, kind: str, game, state) -> float:
        exact = self.exact_value(game, state)
        if not self.sigma:
            return exact
        digest = hashlib.blake2b(f"{self.seed}/{kind}/{self._key(game, state)}".encode(), digest_size=8).digest()
        noise = random.Random(int.from_bytes(digest, "little")).gauss(0.0, self.sigma)
        return min(1.0, max(0.0, exact + noise))

    async def answer(self, kind: str, game, prompt: prompts.Prompt, path: Sequence,
                     children: Mapping[int, Any]) -> Any:
        self.queries += 1
        self.tokens += math.ceil((len(prompt.system) + len(prompt.user)) / CHARS_PER_TOKEN) + REPLY_TOKENS
        if kind == "child_values":
            return {i: self.noisy_value(kind, game, s) for i, s in children.items()}
        if kind == "value":
            return self.noisy_value(kind, game, path[-1])
        if kind == "explore":
            return self.noisy_value(kind, game, path[-1]) < EXPLORE_BELOW[game.name]
        if kind == "priors":
            values = {i: self.noisy_value(kind, game, s) for i, s in children.items()}
            peak = max(values.values(), default=0.0)
            return {i: math.exp((v - peak) / PRIOR_TEMPERATURE) for i, v in values.items()}
        raise ValueError(f"unknown query kind {kind!r}")
