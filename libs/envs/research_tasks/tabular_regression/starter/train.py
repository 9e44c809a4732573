"""Baseline for the diabetes regression task (the task's baseline; improve it).

Reads ./data/train.csv (10 features + target) and ./data/test.csv (id + features), fits gradient-boosted
trees (scikit-learn's default settings) and writes submission.csv (id,target).
"""

import csv

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

LEARNING_RATE = 0.1  # tune: [0.01, 0.03, 0.1, 0.3]
MAX_DEPTH = 3  # tune: int(1, 5)
N_ESTIMATORS = 100  # tune: [50, 100, 200, 400]
SUBSAMPLE = 1.0  # tune: [0.5, 0.8, 1.0]


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def main():
    _, train = read("data/train.csv")
    _, test = read("data/test.csv")
    x_train, y_train = train[:, :-1], train[:, -1]
    ids, x_test = test[:, 0].astype(int), test[:, 1:]
    model = GradientBoostingRegressor(learning_rate=LEARNING_RATE, max_depth=MAX_DEPTH, n_estimators=N_ESTIMATORS,
                                      subsample=SUBSAMPLE, random_state=0)
    model.fit(x_train, y_train)
    print(f"train R^2 {model.score(x_train, y_train):.4f}")
    with open("submission.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "target"])
        writer.writerows((i, f"{p:.4f}") for i, p in zip(ids, model.predict(x_test)))


if __name__ == "__main__":
    main()
