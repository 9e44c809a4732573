"""MaestroMotif preference annotation: the reference prompts, reply parsing, LLM annotation of caption pairs
(resumable JSONL), a rule-based stand-in annotator, and agreement between two annotators.

Prompts, goal strings, the answer regex and the retry prompt are the reference's (mklissa/maestromotif
rlaif/prompts.py, rlaif/llms.py), verbatim except that the system prompt drops its Llama-2 markup
("<s>[INST] <<SYS>> ... <</SYS>>"): the chat template of whichever model serves the request adds its own.
The reference sampled with temperature 0.1, top_p 0.95, top_k 50 and max_tokens 4096; those are
`LLMConfig` settings here.

Labels: 0 = the first description is preferred, 1 = the second, 2 = none (no preference, both undesirable,
or no parseable answer after the one retry).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from absl import logging

from libs.train import rundir
from libs.train.errors import ConfigError, UserError
from libs.train.metrics import format_duration

if TYPE_CHECKING:  # the gateway imports litellm (seconds); the stand-in and the prompts need none of it
    from libs.llm import gateway as llm

FIRST, SECOND, NO_PREFERENCE = 0, 1, 2
SKILLS = ("discoverer", "descender", "ascender", "merchant", "worshipper")

GOALS = {
    "discoverer": "players that are adventurous but only within the same dungeon level, for example by fighting "
                  "monsters, finding gold pieces or scrolls; but do not drop them. Categorically refuse going up "
                  "and down dungeon levels.",
    "descender": "the direction of progress is to explore by going down the dungeon. It is urgent to do so, "
                 "strongly avoid staying on the same level or worse, going higher.",
    "ascender": "the direction of progress is only by going up a dungeon level successfully. Strongly dislike "
                "remaining on the same dungeon level, no matter the consequences.",
    "merchant": "prefer players that negotiate, sell and interact with shopkeepers. Be careful not to steal "
                "from stores.",
    "worshipper": "strongly encourage players that interact with the altar, primarily for identifying whether "
                  "items are cursed or blessed, rather than for praying to or pleasing their god.",
}

SYSTEM_PROMPT = ("You are a helpful and honest judge of specific types of NetHack gameplaying. Always answer as "
                 "helpfully as possible, while being truthful.\n\nIf you don't know the answer to a question, "
                 "please don't share false information.")

PROMPT_TEMPLATE = (
    "\nI will present you with two short gameplay descriptions.\n"
    "First, tell me about your knowledge of NetHack. Mention the goal of NetHack.\n"
    "Write an analysis describing the semantics of each description strictly using information from the "
    "descriptions and your knowledge of NetHack. \n"
    "Provide a comparative analysis based on first principles. Here is the preference that you should seek: {} "
    "Above everything else, categorically refuse to anger or displease your god, for example by causing them "
    "to thunder or boom out.\n"
    "Finally, respond by explicitly declaring which description best fits your preference, writing either "
    '("best_description": 1), ("best_description": 2). If both contain undesirable events, say '
    '("best_description": None).\n\n'
    '{{"description_1":\n{}\n}}\n\n{{"description_2":\n{}\n}}\n'
)

RETRY_PROMPT = ('\nSo, which one is the best? Please respond by saying ("best_description": 1), '
                '("best_description": 2), or ("best_description": None).')

ANSWER_REGEX = re.compile(r"\W*[bB][eE][sS][tT]\\*_*\s*[dD][eE][sS][cC][rR][iI][pP][tT][iI][oO][nN]\W*"
                          r"(?:\s*:*\s*)?(?:\w+\s*)?(1|2|[Nn]one)")

ANSWER_FORMAT = {"type": "json_schema", "json_schema": {"name": "preference", "schema": {
    "type": "object", "properties": {"best_description": {"enum": [1, 2, "None"]}}, "required": ["best_description"],
    "additionalProperties": False}}}

_REPLY_EXCERPT = 600  # characters of the final reply kept in a record (its end, where the verdict is)


def _check_skill(skill: str) -> str:
    if skill not in SKILLS:
        raise ConfigError(f"unknown MaestroMotif skill {skill!r}; expected one of {', '.join(SKILLS)}")
    return skill


def annotation_messages(skill: str, caption_a: str, caption_b: str) -> list[dict[str, str]]:
    """The chat messages asking which of two captions better fits `skill`'s goal."""
    prompt = PROMPT_TEMPLATE.format(GOALS[_check_skill(skill)], caption_a, caption_b)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


def parse_preference(reply: str) -> int | None:
    """0 / 1 / 2 from a reply's first `("best_description": 1|2|None)` (the reference regex); None if absent."""
    found = ANSWER_REGEX.search(reply or "")
    if found is None:
        return None
    return {"1": FIRST, "2": SECOND}.get(found.group(1), NO_PREFERENCE)


def _pair_hash(caption_a: str, caption_b: str) -> str:
    return hashlib.sha1(f"{caption_a}\x00{caption_b}".encode()).hexdigest()[:12]


async def _annotate_one(gateway: llm.Gateway, skill: str, index: int, caption_a: str,
                        caption_b: str) -> dict[str, Any]:
    """One pair: ask, retry once with the reference's retry prompt if unparseable; the JSONL record."""
    from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel,redefined-outer-name
    messages = annotation_messages(skill, caption_a, caption_b)
    record: dict[str, Any] = {"index": index, "skill": skill, "pair": _pair_hash(caption_a, caption_b),
                              "retried": False}
    # A provider that enforces JSON schemas (the embedded model's server) is asked for the verdict alone: a
    # 135M model's free-form analysis never reaches a parseable answer. `{"best_description": 1}` parses with
    # the reference regex.
    extra = {"response_format": ANSWER_FORMAT} if getattr(gateway, "structured_outputs", False) else {}
    try:
        reply = (await gateway.complete(messages, **extra)).text
        label = parse_preference(reply)
        if label is None:
            record["retried"] = True
            retry = [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": RETRY_PROMPT}]
            reply = (await gateway.complete(retry, cache_tag="retry", **extra)).text
            label = parse_preference(reply)
            if label is None:
                record["unparsed"] = True
    except llm.LLMError as e:
        if not e.rejected:  # transient and still failing after the gateway's retries: stop; a rerun resumes
            raise
        reply, label = "", None
        record["error"] = f"rejected: {str(e)[:300]}"
    record["label"] = NO_PREFERENCE if label is None else label
    record["reply"] = reply[-_REPLY_EXCERPT:]
    return record


async def annotate(gateway: llm.Gateway, skill: str, pairs: Sequence[tuple[str, str]], out_path: str,
                   should_stop: Callable[[], bool] | None = None, progress: bool = True,
                   chunk_size: int = 64) -> list[int]:
    """Annotates caption pairs for `skill` with the gateway's model; resumable.

    Each pair's record (index, skill, label, pair hash, retried, the end of the reply; "error" when the server
    rejected the request, "unparsed" when the retry gave no answer either, both labelled 2) is appended to the
    JSONL `out_path` as it arrives; a rerun skips the pairs recorded there. Pairs go in chunks of `chunk_size`
    through `asyncio.gather` (the gateway bounds the calls in flight); `should_stop` is checked between chunks.

    Returns the labels of pairs[:n] in order: n == len(pairs) when done, fewer when stopped early (should_stop,
    or the LLM budget spent: BudgetExceeded is logged and ends annotation cleanly). A call still failing after
    the gateway's retries (LLMError, not rejected) is raised after the chunk's other records are saved.
    """
    from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel,redefined-outer-name

    _check_skill(skill)
    if chunk_size < 1:
        raise ConfigError(f"annotate: chunk_size must be >= 1, got {chunk_size}")
    labels: dict[int, int] = {}
    for rec in rundir.read_jsonl(out_path):
        index = rec.get("index")
        if rec.get("skill") != skill:
            raise UserError(f"{out_path}: holds annotations for skill {rec.get('skill')!r}, not {skill!r}; "
                            f"use another out_path")
        if not isinstance(index, int) or not 0 <= index < len(pairs) or rec.get("pair") != _pair_hash(*pairs[index]):
            raise UserError(f"{out_path}: record for pair {index!r} does not match these pairs; use another out_path")
        labels[index] = int(rec["label"])
    todo = [i for i in range(len(pairs)) if i not in labels]
    if progress and labels:
        logging.info("annotate %s: resuming, %d of %d pairs already in %s", skill, len(labels), len(pairs), out_path)

    async def one(i: int) -> dict[str, Any]:
        record = await _annotate_one(gateway, skill, i, *pairs[i])
        rundir.append_jsonl(out_path, record)  # at once, so a kill loses only the calls in flight
        labels[i] = record["label"]
        return record

    start, done_here, retried = time.perf_counter(), 0, 0
    for begin in range(0, len(todo), chunk_size):
        if should_stop is not None and should_stop():
            logging.warning("annotate %s: stop requested; %d of %d pairs annotated", skill, len(labels), len(pairs))
            break
        chunk = todo[begin:begin + chunk_size]
        results = await asyncio.gather(*(one(i) for i in chunk), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        done_here += len(results) - len(errors)
        retried += sum(bool(r.get("retried")) for r in results if isinstance(r, dict))
        if any(isinstance(e, llm.BudgetExceeded) for e in errors):
            logging.warning("annotate %s: LLM budget spent; %d of %d pairs annotated", skill, len(labels), len(pairs))
            break
        if errors:
            raise errors[0]
        if progress:
            elapsed = time.perf_counter() - start
            rate = done_here / elapsed if elapsed > 0 else float("nan")
            left = len(todo) - begin - len(chunk)
            logging.info("annotate %s: %d/%d pairs | %.2f pairs/s | %d retried | ETA %s", skill, len(labels),
                         len(pairs), rate, retried, format_duration(left / rate if rate > 0 else float("nan")))
    out = []
    for i in range(len(pairs)):
        if i not in labels:
            break
        out.append(labels[i])
    return out


# --- the rule-based stand-in annotator -------------------------------------------------------------------

_GOD_ANGER = ("you feel that", "is displeased", "thunder", "booms out", "you feel guilty", "smites", "angry god",
              "lightning bolt", "fry to a crisp")
_DEATH = ("you die", "killed by")
_DISCOVERY = ("you find", "you see here", "you discover", "there is a", "you see a", "things that are here")
_KILL = ("you kill", "you destroy")
_SHOP = ("for sale", "offers", "you bought", "sells", "shopkeeper", "welcome to", "you sold", "bill",
         "gold pieces for", "price", "pay")
_THEFT = ("you stole", "thief", "you owe", "steal")
_ALTAR = ("altar", "flash")


def _text(message: Any) -> str:
    if isinstance(message, str):
        return message.lower()
    if isinstance(message, (bytes, bytearray)):
        return bytes(message).split(b"\x00", 1)[0].decode("latin-1").lower()
    raw = np.asarray(message, dtype=np.uint8).tobytes()
    return raw.split(b"\x00", 1)[0].decode("latin-1").lower()


def _has(text: str, words: Sequence[str]) -> bool:
    return any(w in text for w in words)


def _standin_score(skill: str, text: str, diff: Sequence[float]) -> float:
    """The stand-in's score of one (message, change) for `skill`; negative means undesirable."""
    depth, gold, hp, xp = (float(np.sign(v)) for v in list(diff)[:4])
    score = 0.0
    if _has(text, _GOD_ANGER) or _has(text, _DEATH):  # "never anger the god", and dying is never good
        score -= 10.0
    if hp < 0:
        score -= 1.0
    if skill != "worshipper" and "praying" in text:  # praying without need is how the god gets angry
        score -= 2.0
    if skill == "discoverer":
        if depth != 0:
            score -= 5.0  # "categorically refuse going up and down dungeon levels"
        score += 2.0 * (gold > 0) + 2.0 * (xp > 0) + 2.0 * _has(text, _KILL)
        score += 1.0 * _has(text, _DISCOVERY) + 1.0 * ("scroll" in text) - 2.0 * ("you drop" in text)
    elif skill == "descender":
        score += 5.0 * depth + 2.0 * ("staircase down" in text)  # depth +1 is going down
    elif skill == "ascender":
        score -= 5.0 * depth
        score += 2.0 * ("staircase up" in text)
    elif skill == "merchant":
        score += 3.0 * _has(text, _SHOP) - 5.0 * _has(text, _THEFT)
    elif skill == "worshipper":
        score += 3.0 * _has(text, _ALTAR) - 1.0 * ("pray" in text)
    return score


def rule_based_preference(skill: str, msg_a: Any, diff_a: Sequence[float], msg_b: Any,
                          diff_b: Sequence[float]) -> int:
    """A RULE-BASED STAND-IN for the LLM annotator (not the paper's annotator): explicit keyword and stat rules
    per skill. Messages are str, bytes or NLE uint8 arrays; diffs are the change vectors [depth, gold, HP, XP,
    hunger] (depth +1 = went down). The higher score wins; equal scores, or both undesirable (negative, the
    prompt's "If both contain undesirable events"), give 2. Deterministic.

    Rules: any skill: angering the god or dying -10, losing HP -1; any skill but the worshipper: praying -2.
    discoverer: a level change -5; gold up,
    XP up, a kill +2 each; a discovery ("you find", "you see here", ...) or a scroll +1; dropping -2.
    descender: depth down +5, up -5, "staircase down" +2. ascender: the mirror image. merchant: shop words
    ("for sale", "offers", "You bought", "sells", ...) +3, theft -5. worshipper: altar words ("altar",
    "flash") +3, praying -1.
    """
    _check_skill(skill)
    a = _standin_score(skill, _text(msg_a), diff_a)
    b = _standin_score(skill, _text(msg_b), diff_b)
    if a == b or (a < 0 and b < 0):
        return NO_PREFERENCE
    return FIRST if a > b else SECOND


def agreement(labels_a: Sequence[int], labels_b: Sequence[int]) -> dict[str, Any]:
    """How two annotators agree: overall, on the pairs both decided (0/1), counts, and Cohen's kappa over the
    three labels (1.0 when both use one and the same label throughout)."""
    a, b = np.asarray(labels_a, dtype=np.int64), np.asarray(labels_b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"agreement needs two equally long label lists, got {a.shape} and {b.shape}")
    if not (np.isin(a, (0, 1, 2)).all() and np.isin(b, (0, 1, 2)).all()):
        raise ValueError("labels must be 0, 1 or 2")
    n = len(a)
    decided = (a != NO_PREFERENCE) & (b != NO_PREFERENCE)
    observed = float((a == b).mean()) if n else float("nan")
    expected = float(sum((a == k).mean() * (b == k).mean() for k in range(3))) if n else float("nan")
    kappa = 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)
    confusion = np.zeros((3, 3), np.int64)
    np.add.at(confusion, (a, b), 1)
    return {
        "n": n,
        "agreement": observed,
        "n_decided": int(decided.sum()),
        "agreement_decided": float((a[decided] == b[decided]).mean()) if decided.any() else float("nan"),
        "cohen_kappa": kappa,
        "counts_a": np.bincount(a, minlength=3).tolist(),
        "counts_b": np.bincount(b, minlength=3).tolist(),
        "confusion": confusion.tolist(),
    }
