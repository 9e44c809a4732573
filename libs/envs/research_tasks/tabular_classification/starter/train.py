"""Baseline for the breast-cancer classification task (the task's baseline; improve it).

Reads ./data/train.csv (30 features + target) and ./data/test.csv (id + features), fits a logistic
regression and writes submission.csv (id,target) with a 0/1 label per test row.
"""

import csv

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

C = 0.01  # tune: log(1e-3, 1e2)
SCALER = "standard"  # tune: ["standard", "minmax", "none"]
CLASS_WEIGHT = None  # tune: [None, "balanced"]


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def main():
    _, train = read("data/train.csv")
    _, test = read("data/test.csv")
    x_train, y_train = train[:, :-1], train[:, -1].astype(int)
    ids, x_test = test[:, 0].astype(int), test[:, 1:]
    scalers = {"standard": [StandardScaler()], "minmax": [MinMaxScaler()], "none": []}
    model = make_pipeline(*scalers[SCALER], LogisticRegression(C=C, class_weight=CLASS_WEIGHT, max_iter=5000))
    model.fit(x_train, y_train)
    print(f"train accuracy {model.score(x_train, y_train):.4f}")
    with open("submission.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "target"])
        writer.writerows(zip(ids, model.predict(x_test)))


if __name__ == "__main__":
    main()
