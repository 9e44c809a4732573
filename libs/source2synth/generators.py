"""Who answers the steps: a model through the LLM gateway, or the labelled rule-based stand-in.

Both have `label` and `async ask(step, inputs, tag=, temperature=) -> {field: text}`, raising
`prompts.ReplyError` for a reply without the step's JSON fields. A model gets `max_attempts` tries at that (a new
sample each, cached under its own tag), and the step's JSON schema when the provider enforces one.
"""

from __future__ import annotations

from typing import Any

from libs.source2synth import prompts


class ModelGenerator:
    """A model behind `libs.llm.gateway.Gateway` (its cache makes a rerun free, its ledger counts the budget)."""

    def __init__(self, gateway: Any, max_attempts: int = 2, label: str | None = None):
        self.gateway = gateway
        self.max_attempts = max_attempts
        self.label = label or gateway.config.model

    async def ask(self, step: str, inputs: dict, *, tag: str | None = None,
                  temperature: float | None = None) -> dict[str, str]:
        messages = prompts.messages(step, inputs)
        kwargs: dict[str, Any] = {}
        if self.gateway.structured_outputs:
            kwargs["response_format"] = prompts.reply_format(step)
        if temperature is not None:
            kwargs["temperature"] = temperature
        error = None
        for attempt in range(self.max_attempts):
            parts = [p for p in (tag, f"attempt-{attempt}" if attempt else None) if p]
            reply = await self.gateway.complete(messages, cache_tag="/".join(parts) or None, **kwargs)
            try:
                return prompts.parse_reply(step, reply.text)
            except prompts.ReplyError as e:
                error = e
        raise error
