r"""A scripted stand-in model for the search queries (tests and benchmarks only).

`search_responder` answers the prompts of `libs.agents.prompts` with
well-formed `\boxed{JSON}`: every listed move valued 0.5, uniform priors, a
state value of 0.5 and "continue" for explore decisions; every
`garbage_every`-th reply is malformed to exercise the corrective turn, the
fresh attempts and the fallback. It knows nothing of the puzzle: it is
plumbing for `libs.llm.testing.LocalOpenAIServer`, not a model.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable

_LISTED = re.compile(r"(?:\{|, )(\d+): '")
_FIELDS = ("operation_values", "move_values", "operation_scores", "state_value_estimation", "explore")


def search_responder(garbage_every: int = 0) -> Callable[[dict], str]:
    counter = itertools.count(1)
    lock = threading.Lock()

    def respond(body: dict) -> str:
        with lock:
            n = next(counter)
        if garbage_every and n % garbage_every == 0:
            return "I am not sure. Let me think about it some more."
        # The query's own prompt is the first user message (a later one is a corrective turn).
        prompt = next((m.get("content", "") for m in body.get("messages") or [] if m.get("role") == "user"), "")
        field = next((f for f in _FIELDS if f"`{f}`" in prompt), "state_value_estimation")
        after = prompt.split("**Possible", 1)[-1].splitlines()
        listing = next((line for line in after if line.startswith("{")), "")
        keys = [int(k) for k in _LISTED.findall(listing)]
        if field in ("operation_values", "move_values"):
            answer = {field: {str(k): 0.5 for k in keys}}
        elif field == "operation_scores":
            answer = {field: {str(k): 1.0 / max(len(keys), 1) for k in keys}}
        elif field == "explore":
            answer = {"explore": False}
        else:
            answer = {"state_value_estimation": 0.5}
        return "Scores follow. \\boxed{" + json.dumps(answer) + "}"

    return respond
