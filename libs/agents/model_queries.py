r"""The model's side of LLM-guided search: ask one of the four questions, survive any reply.

As in the LLM-First Search paper's agents, a query is tried up to `max_attempts` times (5), each a
fresh conversation [system prompt, user prompt]. Within an attempt, a reply with no `\boxed{...}`
JSON gets one corrective "try again" turn; an answer that still cannot be used, or a model call that
fails after the gateway's own retries, ends the attempt. When every attempt fails the query returns
its fallback, as the paper's code does: children stay unvalued, the node value is None, the explore
decision is "continue", and priors are uniform. Every call's tokens are counted (the paper's counter
drops the tokens of failed attempts and of a corrected first reply).

With a provider that enforces JSON schemas (`structured=True`: this project's own server, vLLM, OpenAI),
each query asks for its answer's schema (`answers.response_schema`), and the reply is that bare object;
small local models give no parseable answer otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from absl import logging

from libs.agents import answers, prompts

FALLBACKS = {"child_values": {}, "value": None, "explore": False, "priors": {}}


class Completer(Protocol):
    async def complete(self, messages: list[dict[str, str]], **overrides) -> Any:
        """Returns an object with .text, .prompt_tokens and .completion_tokens."""


@dataclasses.dataclass
class QueryStats:
    queries: int = 0
    calls: int = 0
    retries: int = 0  # corrective "try again" turns and fresh attempts after a failed one
    fallbacks: int = 0  # queries that got no usable answer in any attempt
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelScorer:
    """Asks one model the search's questions for one game, and counts that game's tokens."""

    def __init__(self, completer: Completer, label: str, max_attempts: int = 5,
                 call_errors: tuple[type[Exception], ...] = (), structured: bool = False):
        self.completer, self.label, self.max_attempts = completer, label, max_attempts
        self.structured = structured
        self.call_errors = call_errors  # e.g. the gateway's LLMError: the call failed after its own retries
        self.stats = QueryStats()

    @property
    def tokens(self) -> int:
        return self.stats.tokens

    async def answer(self, kind: str, game: Any, prompt: prompts.Prompt, path: Any, children: Mapping[int, Any]) -> Any:
        """The `Scorer` interface of `libs.agents.puzzles`: the model sees only the prompt."""
        del path
        return await self.ask(kind, game.name, prompt, sorted(children))

    async def ask(self, kind: str, game_name: str, prompt: prompts.Prompt, keys: list[int]) -> Any:
        """The parsed answer of one query (see `answers.parse_answer`), or its fallback."""
        self.stats.queries += 1
        schema = answers.response_schema(kind, game_name, keys) if self.structured else None
        for attempt in range(self.max_attempts):
            messages = prompt.messages()
            text = await self._call(messages, attempt, schema)
            for turn in range(2):
                if text is None:
                    break
                try:
                    return answers.parse_answer(kind, game_name, text, keys, boxed=schema is None)
                except answers.ParseError as e:
                    if turn or schema is not None or _has_box(text):  # A boxed answer that cannot be used ends the attempt.
                        logging.log_every_n(logging.WARNING, "unusable %s answer (attempt %d/%d): %s", 20, kind,
                                            attempt + 1, self.max_attempts, e)
                        break
                self.stats.retries += 1  # No boxed answer at all: one corrective turn.
                messages = [*messages, {"role": "assistant", "content": text},
                            {"role": "user", "content": prompts.TRY_AGAIN}]
                text = await self._call(messages, attempt, schema)
            if attempt + 1 < self.max_attempts:
                self.stats.retries += 1
        self.stats.fallbacks += 1
        return FALLBACKS[kind]

    async def _call(self, messages: list[dict], attempt: int, schema: dict | None) -> str | None:
        # A fresh attempt must not be answered from the cache with the reply that just failed.
        kwargs = {"cache_tag": f"attempt-{attempt}"} if attempt else {}
        if schema is not None:
            kwargs["response_format"] = schema
        try:
            reply = await self.completer.complete(messages, **kwargs)
        except self.call_errors as e:  # pylint: disable=catching-non-exception
            logging.warning("model call failed; the attempt counts as failed: %s", e)
            return None
        self.stats.calls += 1
        self.stats.prompt_tokens += int(reply.prompt_tokens or 0)
        self.stats.completion_tokens += int(reply.completion_tokens or 0)
        return reply.text or ""


def _has_box(text: str) -> bool:
    try:
        answers.extract_boxed_json(text)
    except answers.ParseError:
        return False
    return True

