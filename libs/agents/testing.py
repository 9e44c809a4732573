r"""A scripted stand-in model for the search queries (tests and benchmarks only).

`search_responder` answers the prompts of `libs.agents.model_queries` with
well-formed `\boxed{JSON}`: every candidate valued 0.5, uniform priors, and
"continue" for explore decisions; every `garbage_every`-th reply is malformed to
exercise the corrective retry and the fallback. It knows nothing of the puzzle:
it is plumbing for `libs.llm.testing.LocalOpenAIServer`, not a model.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable


def search_responder(garbage_every: int = 0) -> Callable[[dict], str]:
    counter = itertools.count(1)
    lock = threading.Lock()

    def respond(body: dict) -> str:
        with lock:
            n = next(counter)
        if garbage_every and n % garbage_every == 0:
            return "I am not sure. Let me think about it some more."
        # The query's own prompt is the first user message (later ones are corrective retries).
        prompt = next((m.get("content", "") for m in body.get("messages") or [] if m.get("role") == "user"), "")
        count = re.search(r"holding (\d+) numbers", prompt)
        if '"values"' in prompt and count:
            return "Scores: \\boxed{" + json.dumps({"values": [0.5] * int(count.group(1))}) + "}"
        if '"priors"' in prompt and count:
            k = int(count.group(1))
            return "\\boxed{" + json.dumps({"priors": [1.0 / k] * k}) + "}"
        if '"explore"' in prompt:
            return 'Keep going. \\boxed{{"explore": false}}'
        return '\\boxed{{"value": 0.5}}'

    return respond
