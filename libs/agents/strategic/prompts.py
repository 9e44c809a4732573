"""The study's configurations of a 2x2 game, their prompts, and reading the chosen action from a reply.

A configuration is (payoff variant, action order, acting player's preference, fellow player's preference): 16 per
game with two payoff variants. A condition is how it is asked: the label names (`LABELS`), chain-of-thought or not,
and free-text answers or answers constrained to the labels by a JSON schema (`response_format`).

Label styles: "semantic" uses the game's own action names (cooperate / defect, stag / hare); "neutral" fixed
arbitrary labels (J for the first action of the game, F for the second, whichever is listed first); "letters" labels
by position (A is always the label listed first). The prompt template is `configs/strategic_games/prompts/game.j2`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import jinja2

from libs.envs.matrix_games import PREFERENCES, MatrixGame
from libs.train.errors import ConfigError
from libs.train.launch import REPO_ROOT

PROMPTS_DIR = os.path.join(REPO_ROOT, "configs", "strategic_games", "prompts")
LABELS = ("semantic", "neutral", "letters")
ORDERS = ("cooperative_first", "cooperative_second")
ANSWER_FORMATS = ("free", "constrained")
_NEUTRAL = ("J", "F")
_LETTERS = ("A", "B")


@dataclasses.dataclass(frozen=True)
class Condition:
    labels: str = "semantic"
    cot: bool = False
    answer_format: str = "free"

    def __post_init__(self):
        if self.labels not in LABELS or self.answer_format not in ANSWER_FORMATS:
            raise ConfigError(f"condition {self}: labels must be one of {LABELS}, answer_format one of {ANSWER_FORMATS}")

    @property
    def name(self) -> str:
        return f"{self.labels}{'+cot' if self.cot else ''}{'+constrained' if self.answer_format == 'constrained' else ''}"


@dataclasses.dataclass(frozen=True)
class Configuration:
    game: MatrixGame
    order: str  # ORDERS
    acting: str  # PREFERENCES
    fellow: str

    @property
    def id(self) -> str:
        return f"{self.game.variant}/{self.order}/{self.acting}/{self.fellow}"

    @property
    def listed(self) -> tuple[int, int]:
        """The actions in the order the prompt lists them."""
        coop = self.game.cooperative_action
        return (coop, 1 - coop) if self.order == "cooperative_first" else (1 - coop, coop)

    def facts(self) -> dict[str, Any]:
        """What the bias measures need: the correct action and each bias's two candidate actions."""
        g = self.game
        return {"game": g.name, "variant": g.variant, "config": self.id, "order": self.order, "acting": self.acting,
                "fellow": self.fellow, "correct": g.correct_action(self.acting, self.fellow), "first": self.listed[0],
                "max_self": g.max_self_gain_cell()[0], "max_common": g.max_common_gain_cell()[0],
                "self_action": g.correct_action("self", "self"), "common_action": g.correct_action("common", "common")}


def configurations(games: Sequence[MatrixGame]) -> list[Configuration]:
    """Every game x order x acting preference x fellow preference whose correct action is unique."""
    found = []
    for game, order, acting, fellow in itertools.product(games, ORDERS, PREFERENCES, PREFERENCES):
        config = Configuration(game, order, acting, fellow)
        if game.correct_action(acting, fellow) is not None:
            found.append(config)
    return found


def labels_for(config: Configuration, condition: Condition) -> tuple[str, str]:
    """The label of action 0 and of action 1 under the condition."""
    if condition.labels == "semantic":
        return config.game.actions
    if condition.labels == "neutral":
        return _NEUTRAL
    first = config.listed[0]
    return (_LETTERS[0], _LETTERS[1]) if first == 0 else (_LETTERS[1], _LETTERS[0])


@functools.lru_cache(maxsize=4)
def _template(prompts_dir: str) -> tuple[jinja2.Template, str]:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(prompts_dir), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=False)
    with open(os.path.join(prompts_dir, "system.txt")) as f:
        return env.get_template("game.j2"), f.read().strip()


def check_templates(configs: Sequence[Configuration], conditions: Sequence[Condition], prompts_dir: str) -> None:
    """Renders every condition once: a missing or broken template is one ConfigError naming it."""
    try:
        for condition in conditions:
            messages(configs[0], condition, prompts_dir)
    except (OSError, jinja2.TemplateError) as e:
        raise ConfigError(f"prompt templates in {prompts_dir}: {type(e).__name__}: {e}") from e


def _points(x: float) -> str:
    return f"{x:g}"


def messages(config: Configuration, condition: Condition, prompts_dir: str = PROMPTS_DIR) -> list[dict[str, str]]:
    template, system = _template(os.path.abspath(prompts_dir))
    labels = labels_for(config, condition)
    first, second = config.listed
    cells = [{"mine": labels[i], "theirs": labels[j], "my_points": _points(config.game.payoffs(i, j)[0]),
              "their_points": _points(config.game.payoffs(i, j)[1])}
             for i in (first, second) for j in (first, second)]
    user = template.render(first=labels[first], second=labels[second], cells=cells, acting=config.acting,
                           fellow=config.fellow, cot=condition.cot,
                           constrained=condition.answer_format == "constrained")
    return [{"role": "system", "content": system}, {"role": "user", "content": user.strip()}]


def response_format(labels: tuple[str, str], cot: bool) -> dict[str, Any]:
    """The JSON schema that restricts a reply to one of the labels (after a bounded reasoning field with CoT)."""
    properties: dict[str, Any] = {"action": {"type": "string", "enum": list(labels)}}
    if cot:
        properties = {"reasoning": {"type": "string", "maxLength": 1200}, **properties}
    return {"type": "json_schema", "json_schema": {"name": "game_action", "strict": True, "schema": {
        "type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}}}


_ANSWER = re.compile(r"answer\s*[:=]\s*\**\s*[\"'`]?([^\"'`\n*.,;]+)", re.IGNORECASE)


def _match(text: str, labels: tuple[str, str]) -> int | None:
    text = text.strip().strip("\"'`*.").strip()
    for i, label in enumerate(labels):
        if text == label or (len(label) > 1 and text.lower() == label.lower()):
            return i
    return None


def parse_choice(reply: str, labels: tuple[str, str]) -> int | None:
    """The action (0 or 1) a reply names, or None: a reply that names no action, or both, is invalid, never guessed.

    Read in order: a JSON object's "action"; the last "Answer: <label>" line; otherwise the one label the reply
    mentions (as a whole word; single-letter labels case-sensitively)."""
    reply = reply or ""
    start = reply.find("{")
    if start >= 0:
        try:
            parsed = json.loads(reply[start:reply.rfind("}") + 1])
            if isinstance(parsed, dict) and isinstance(parsed.get("action"), str):
                return _match(parsed["action"], labels)
        except ValueError:
            pass
    answers = _ANSWER.findall(reply)
    if answers:
        return _match(answers[-1], labels)
    mentioned = [i for i, label in enumerate(labels)
                 if re.search(r"(?<!\w)" + re.escape(label) + r"(?!\w)", reply, 0 if len(label) == 1 else re.I)]
    return mentioned[0] if len(mentioned) == 1 else None
