r"""The model queries of LLM-guided search, robust to whatever the model replies.

Each query asks for an answer inside `\boxed{...}` holding JSON (as in the
LLM-First Search paper): child values in [0, 1], one state's value, an
explore-or-continue decision, or priors over moves. A reply that cannot be
parsed or validated gets one corrective retry (the model sees its reply and the
reason); if that fails too, the query returns its defined fallback (values 0.5,
continue rather than explore, uniform priors) and counts it. A malformed reply
never crashes a search.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from absl import logging


class ParseError(ValueError):
    """A reply without a usable `\\boxed{JSON}` answer."""


class Completer(Protocol):
    async def complete(self, messages: list[dict[str, str]], **overrides) -> Any:
        """Returns an object with .text, .prompt_tokens and .completion_tokens."""


def extract_boxed(text: str) -> str:
    r"""The contents of the last `\boxed{...}` in `text`, braces balanced."""
    start = text.rfind("\\boxed{")
    if start < 0:
        raise ParseError("no \\boxed{...} in the reply")
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    raise ParseError("unbalanced braces in \\boxed{...}")


def parse_boxed_json(text: str) -> Any:
    inner = extract_boxed(text or "").strip()
    try:
        return json.loads(inner)
    except json.JSONDecodeError:
        try:
            return json.loads("{" + inner + "}")  # \boxed{"explore": true} without its own braces
        except json.JSONDecodeError as e:
            raise ParseError(f"\\boxed content is not JSON: {inner[:80]!r}") from e


def _unit_interval(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not 0 <= x <= 1:
        raise ParseError(f"{what} must be a number in [0, 1], got {x!r}")
    return float(x)


def validate_values(n: int) -> Callable[[Any], list[float]]:
    def check(answer: Any) -> list[float]:
        values = answer.get("values") if isinstance(answer, dict) else answer
        if not isinstance(values, list) or len(values) != n:
            raise ParseError(f"expected a list of {n} values, got {values!r}"[:200])
        return [_unit_interval(v, f"value {i}") for i, v in enumerate(values)]

    return check


def validate_value(answer: Any) -> float:
    return _unit_interval(answer.get("value") if isinstance(answer, dict) else answer, "value")


def validate_explore(answer: Any) -> bool:
    decision = answer.get("explore") if isinstance(answer, dict) else answer
    if not isinstance(decision, bool):
        raise ParseError(f"explore must be true or false, got {decision!r}")
    return decision


def validate_priors(n: int) -> Callable[[Any], list[float]]:
    def check(answer: Any) -> list[float]:
        probs = answer.get("priors") if isinstance(answer, dict) else answer
        if not isinstance(probs, list) or len(probs) != n:
            raise ParseError(f"expected {n} priors, got {probs!r}"[:200])
        probs = [float(p) for p in probs if isinstance(p, (int, float)) and not isinstance(p, bool)]
        if len(probs) != n or any(p < 0 or not math.isfinite(p) for p in probs) or sum(probs) <= 0:
            raise ParseError("priors must be non-negative numbers with a positive sum")
        return [p / sum(probs) for p in probs]

    return check


@dataclasses.dataclass
class QueryStats:
    calls: int = 0
    retries: int = 0
    fallbacks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelQueries:
    """Asks one model the search's questions; one instance per game counts its tokens."""

    def __init__(self, completer: Completer, system_prompt: str):
        self.completer = completer
        self.system_prompt = system_prompt
        self.stats = QueryStats()

    async def ask(self, prompt: str, validate: Callable[[Any], Any], fallback: Any) -> Any:
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]
        for attempt in range(2):
            reply = await self.completer.complete(messages)
            self.stats.calls += 1
            self.stats.prompt_tokens += int(reply.prompt_tokens or 0)
            self.stats.completion_tokens += int(reply.completion_tokens or 0)
            try:
                return validate(parse_boxed_json(reply.text))
            except ParseError as e:
                if attempt == 0:
                    self.stats.retries += 1
                    messages += [
                        {"role": "assistant", "content": reply.text or ""},
                        {"role": "user", "content": f"Your answer could not be used: {e}. Reply again, ending "
                                                    "with the answer as JSON inside \\boxed{...}."},
                    ]
                else:
                    logging.warning("model reply unusable after a retry (%s); using the fallback", e)
        self.stats.fallbacks += 1
        return fallback

    async def child_values(self, context: str, children: Sequence[str]) -> list[float]:
        listing = "\n".join(f"{i}. {c}" for i, c in enumerate(children))
        prompt = (f"{context}\n\nCandidate next steps:\n{listing}\n\nFor each candidate, estimate the probability "
                  f"(0 to 1) that it leads to a solution. End with \\boxed{{{{\"values\": [...]}}}} holding "
                  f"{len(children)} numbers in this order.")
        return await self.ask(prompt, validate_values(len(children)), [0.5] * len(children))

    async def value(self, context: str) -> float:
        prompt = (f"{context}\n\nEstimate the probability (0 to 1) that this state can still be solved. "
                  "End with \\boxed{{\"value\": <number>}}.")
        return await self.ask(prompt, validate_value, 0.5)

    async def explore(self, context: str) -> bool:
        prompt = (f"{context}\n\nShould the search abandon the current path and explore the most promising "
                  "alternative instead? Only choose to explore if you are certain that the current path cannot "
                  "reach a solution. End with \\boxed{{\"explore\": true}} or \\boxed{{\"explore\": false}}.")
        return await self.ask(prompt, validate_explore, False)

    async def priors(self, context: str, moves: Sequence[str]) -> list[float]:
        listing = "\n".join(f"{i}. {m}" for i, m in enumerate(moves))
        prompt = (f"{context}\n\nMoves:\n{listing}\n\nGive a probability distribution over these moves (how likely "
                  f"each is the right next move). End with \\boxed{{{{\"priors\": [...]}}}} holding {len(moves)} "
                  "numbers.")
        return await self.ask(prompt, validate_priors(len(moves)), [1.0 / len(moves)] * len(moves))
