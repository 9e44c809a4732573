"""Answer metrics: exact match, soft exact match and SQL execution accuracy, with Wilson intervals.

- exact match: the normalised prediction equals the normalised gold answer (lower case, punctuation, articles
  and extra spaces removed; numbers compared as numbers, so "3.0" matches "3").
- soft exact match (the Source2Synth paper's HotPotQA metric): the normalised gold answer occurs in the
  normalised prediction as whole words.
- execution accuracy: the predicted SQL, run read-only on the run's database, returns the gold result (as a
  multiset of rows).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

from libs.evals.stats import summarize_wins

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation.replace(".", "").replace("-", ""))
METRICS = ("exact_match", "soft_exact_match", "execution_accuracy")


def normalize(text: Any) -> str:
    text = str(text).lower().translate(_PUNCTUATION)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # keep decimal points
    text = _ARTICLES.sub(" ", text)
    return " ".join(_canonical_number(w) for w in text.split())


def _canonical_number(word: str) -> str:
    try:
        value = float(word.replace(",", ""))
    except ValueError:
        return word
    if not math.isfinite(value):
        return word
    return f"{value:.4f}".rstrip("0").rstrip(".")


def exact_match(prediction: Any, gold: Any) -> bool:
    return normalize(prediction) == normalize(gold)


def soft_exact_match(prediction: Any, gold: Any) -> bool:
    pred, ref = normalize(prediction), normalize(gold)
    return bool(ref) and f" {ref} " in f" {pred} "


def score(example: dict, reply: dict[str, str], run_sql: Callable[[str], list[tuple]] | None = None) -> dict:
    """The metrics of one reply to one example. `run_sql(sql) -> rows` (raising on bad SQL) enables execution
    accuracy for table examples; it is None (not scored) for document examples."""
    answer = reply.get("answer", "")
    scores: dict[str, Any] = {"exact_match": exact_match(answer, example["answer"]),
                              "soft_exact_match": soft_exact_match(answer, example["answer"]),
                              "execution_accuracy": None}
    if example["pipeline"] == "table" and run_sql is not None:
        gold = example["gold"] if "gold" in example else example["reasoning"]  # an eval record, or an example
        scores["execution_accuracy"] = _executes_to(run_sql, reply.get("sql", ""), gold["result"])
    return scores


def _executes_to(run_sql: Callable[[str], list[tuple]], sql: str, gold_rows: Sequence) -> bool:
    from libs.source2synth import sql as sql_lib  # pylint: disable=import-outside-toplevel
    if not sql:
        return False
    try:
        rows = run_sql(sql)
    except sql_lib.SQLRejected:
        return False
    return sql_lib.results_match(rows, [tuple(r) for r in gold_rows])


def correct(scores: dict) -> bool:
    """Whether a reply counts as answering the example (curation): its SQL executes to the gold result, or its
    answer soft-matches the gold answer."""
    return bool(scores.get("execution_accuracy")) or bool(scores.get("soft_exact_match"))


def summarize(rows: Sequence[dict], confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """{metric: {rate, low, high, n}} over the rows that have the metric (Wilson intervals)."""
    summary = {}
    for metric in METRICS:
        values = [bool(r[metric]) for r in rows if r.get(metric) is not None]
        if values:
            s = summarize_wins(values, confidence)
            summary[metric] = {"rate": s.rate, "low": s.low, "high": s.high, "n": s.n}
    return summary
