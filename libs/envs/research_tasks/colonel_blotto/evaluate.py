"""Scores strategy.py's `row_strategy` against the private opponent pool: {"score": mean payoff per round}."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # taskkit.py, also where the project is not importable
import taskkit  # noqa: E402

if __name__ == "__main__":
    taskkit.evaluate_game(Path(__file__).parent)
