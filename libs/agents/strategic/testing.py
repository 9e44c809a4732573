"""Synthetic players as scripted replies of `libs.llm.testing.LocalOpenAIServer` (tests and benchmarks only).

`players_responder({model name: SyntheticPlayer})` answers each request with the player named by the request's
model, reading the prompt as a model would; the n-th identical request is the player's sample n (the gateway sends
each sample of a configuration as the same prompt), and a request with `response_format` gets the JSON form.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping

from libs.agents.strategic.players import PromptError, SyntheticPlayer


def players_responder(players: Mapping[str, SyntheticPlayer]) -> Callable[[dict], str]:
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def respond(body: dict) -> str:
        player = players.get(body.get("model", ""))
        text = next((m.get("content", "") for m in reversed(body.get("messages") or []) if m.get("role") == "user"),
                    "")
        if player is None:
            return f"Unknown model {body.get('model')!r}."
        with lock:
            sample = counts[(body.get("model"), text)]
            counts[(body.get("model"), text)] += 1
        try:
            return player.reply(text, sample, constrained="response_format" in body)
        except PromptError:
            return "I only play the strategic games."

    return respond
