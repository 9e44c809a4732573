"""Scripted replies for `libs.llm.testing.LocalOpenAIServer` (tests and benchmarks only, not a model).

`scripted_responder` reads the step and inputs of each Source2Synth prompt and answers with the rule-based
stand-in's JSON (`libs.source2synth.standin.reply`), unless `override(step, inputs, n)` returns a reply text for
that request (n counts the requests of that step from 1): malformed replies, SQL that fails to parse or execute,
wrong answers. A prompt that is not a Source2Synth step gets a plain-text refusal.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable

from libs.source2synth import prompts, standin

Override = Callable[[str, dict, int], "str | None"]


def scripted_responder(override: Override | None = None, execute=None) -> Callable[[dict], str]:
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def respond(body: dict) -> str:
        found = prompts.read_prompt(body.get("messages") or [])
        if found is None:
            return "I can only answer Source2Synth prompts."
        step, inputs = found
        with lock:
            counts[step] += 1
            n = counts[step]
        if override is not None:
            text = override(step, inputs, n)
            if text is not None:
                return text
        fields = standin.reply(step, inputs, execute)
        return json.dumps(fields) if fields else "The templates do not cover this."

    respond.counts = counts  # type: ignore[attr-defined]
    return respond
