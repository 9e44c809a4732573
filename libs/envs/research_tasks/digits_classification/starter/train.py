"""Baseline for the 8x8 digits task (the task's baseline; improve it).

Reads ./data/train.csv (64 pixels 0-16 + target) and ./data/test.csv (id + pixels), trains a one-hidden-
layer ReLU network with minibatch SGD in numpy and writes submission.csv (id,target) with a digit per row.
"""

import csv

import numpy as np

HIDDEN = 32  # tune: [16, 32, 64, 128]
LEARNING_RATE = 0.03  # tune: log(0.003, 1.0)
EPOCHS = 20  # tune: int(5, 80)
BATCH_SIZE = 32  # tune: [8, 16, 32, 64, 128]
WEIGHT_DECAY = 1e-4
SEED = 0


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return np.array(rows[1:], dtype=float)


def forward(params, x):
    w1, b1, w2, b2 = params
    hidden = np.maximum(x @ w1 + b1, 0.0)
    return hidden, hidden @ w2 + b2


def train(x, y, rng):
    params = [rng.normal(0, 64 ** -0.5, (64, HIDDEN)), np.zeros(HIDDEN),
              rng.normal(0, HIDDEN ** -0.5, (HIDDEN, 10)), np.zeros(10)]
    for _ in range(EPOCHS):
        order = rng.permutation(len(y))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            hidden, logits = forward(params, x[batch])
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            probs[np.arange(len(batch)), y[batch]] -= 1.0  # d(cross-entropy)/d(logits)
            probs /= len(batch)
            w1, b1, w2, b2 = params
            d_hidden = probs @ w2.T * (hidden > 0)
            grads = [x[batch].T @ d_hidden + WEIGHT_DECAY * w1, d_hidden.sum(0),
                     hidden.T @ probs + WEIGHT_DECAY * w2, probs.sum(0)]
            params = [p - LEARNING_RATE * g for p, g in zip(params, grads)]
    return params


def main():
    rng = np.random.default_rng(SEED)
    train_rows, test_rows = read("data/train.csv"), read("data/test.csv")
    x, y = train_rows[:, :-1] / 16.0, train_rows[:, -1].astype(int)
    ids, x_test = test_rows[:, 0].astype(int), test_rows[:, 1:] / 16.0
    params = train(x, y, rng)
    print(f"train accuracy {(forward(params, x)[1].argmax(1) == y).mean():.4f}")
    with open("submission.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "target"])
        writer.writerows(zip(ids, forward(params, x_test)[1].argmax(1)))


if __name__ == "__main__":
    main()
