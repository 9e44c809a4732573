"""Baseline for the CartPole task (the task's baseline; improve it): hill climbing on the five weights of
a linear policy (policy.py), then writes them to weights.json.

Each iteration perturbs the best weights with Gaussian noise and keeps the candidate if its mean return
over EPISODES training episodes is at least as good.
"""

import json

import gymnasium as gym
import numpy as np

ITERATIONS = 10  # tune: int(5, 100)
NOISE = 0.3  # tune: log(0.01, 3.0)
EPISODES = 3  # tune: int(1, 10)
SEED = 0


def episode_return(env, weights, seed):
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = int(observation @ weights[:4] + weights[4] > 0)
        observation, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    return total


def main():
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(SEED)

    def score(weights):
        return np.mean([episode_return(env, weights, int(rng.integers(2**31))) for _ in range(EPISODES)])

    best = rng.normal(0.0, 0.1, 5)
    best_return = score(best)
    for iteration in range(ITERATIONS):
        candidate = best + NOISE * rng.normal(0.0, 1.0, 5)
        candidate_return = score(candidate)
        if candidate_return >= best_return:
            best, best_return = candidate, candidate_return
        print(f"iteration {iteration + 1}/{ITERATIONS}: best training return {best_return:.1f}")
    with open("weights.json", "w") as f:
        json.dump([float(w) for w in best], f)


if __name__ == "__main__":
    main()
