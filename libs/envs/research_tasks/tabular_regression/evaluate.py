"""RMSE (and R^2) of submission.csv's predictions on the hidden test targets: {"rmse": ..., "r2": ...}."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # taskkit.py, also where the project is not importable
import taskkit  # noqa: E402


def score(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    residual = ((predictions - labels) ** 2).sum()
    return {"rmse": np.sqrt(residual / len(labels)), "r2": 1.0 - residual / ((labels - labels.mean()) ** 2).sum()}


if __name__ == "__main__":
    taskkit.evaluate_table(score)
