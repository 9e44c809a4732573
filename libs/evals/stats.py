"""Win-rate statistics: Wilson score intervals and simple summaries.

A game may be played several times (the LLM-First Search protocol runs each game
`num_its` times), so a game's outcome is a win fraction in [0, 1]. The win rate
is the mean over games and the Wilson interval uses successes = sum of those
fractions over n = number of games.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence


def _z_value(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    With p = successes / n and z the two-sided normal quantile of `confidence`:

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z * sqrt(p (1 - p) / n + z^2 / (4 n^2)) / (1 + z^2 / n)

    and the interval is [centre - half, centre + half], clipped to [0, 1].
    `successes` may be fractional (a sum of per-game win fractions).

    Args:
        successes: Number (or summed fraction) of successes, 0 <= successes <= n.
        n: Number of trials; n = 0 gives the uninformative interval (0.0, 1.0).
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        (low, high) with 0 <= low <= successes / n <= high <= 1.
    """
    z = _z_value(confidence)
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    n = int(n)
    if not math.isfinite(successes) or not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes!r}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if successes == n else min(1.0, max(p, centre + half))
    return low, high


@dataclass
class RateSummary:
    """A win rate with its Wilson interval."""

    successes: float
    n: int
    rate: float
    low: float
    high: float


def summarize_wins(wins: Sequence[bool | float], confidence: float = 0.95) -> RateSummary:
    """Summarises per-game outcomes (bools or win fractions in [0, 1]).

    rate = mean of the outcomes (0.0 when there are no games), successes = their
    sum, and (low, high) is the Wilson interval of successes out of n games.
    """
    values = []
    for i, w in enumerate(wins):
        v = float(w)
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"wins[{i}] must be a bool or a fraction in [0, 1], got {w!r}")
        values.append(v)
    n = len(values)
    successes = math.fsum(values)
    successes = min(max(successes, 0.0), float(n))  # Guard against rounding past n.
    rate = successes / n if n else 0.0
    low, high = wilson_interval(successes, n, confidence)
    return RateSummary(successes=successes, n=n, rate=rate, low=low, high=high)


def mean_and_std(values: Sequence[float], ddof: int = 0) -> tuple[float, float]:
    """Mean and standard deviation (numpy's `ddof` convention; 0 = population).

    Raises:
        ValueError: If `values` has no more than `ddof` elements or is not finite.
    """
    xs = [float(v) for v in values]
    if ddof < 0:
        raise ValueError(f"ddof must be >= 0, got {ddof}")
    if len(xs) <= ddof:
        raise ValueError(f"need more than ddof={ddof} values, got {len(xs)}")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError("values must be finite")
    mean = math.fsum(xs) / len(xs)
    var = math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - ddof)
    return mean, math.sqrt(var)
