"""Mean return of the submitted policy.py's `act(observation)` over CartPole-v1 episodes from the hidden
reset seeds: {"mean_return": ..., "min_return": ...} (500 is the most an episode gives)."""

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # taskkit.py, also where the project is not importable
import taskkit  # noqa: E402


def episode_return(env, act, seed: int) -> float:
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = taskkit.guarded("act()", act, observation.copy())
        try:
            action = int(action)
            if action not in (0, 1):
                raise ValueError
        except (TypeError, ValueError):
            raise taskkit.Invalid(f"act() returned {str(action)[:40]}; an action is 0 or 1") from None
        observation, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    return total


def main():
    args = taskkit.parse_args()
    seeds = json.loads((args.private_dir / "eval_seeds.json").read_text())
    env = gym.make("CartPole-v1")
    with taskkit.evaluation():
        policy = taskkit.load_module(args.submission_dir / "policy.py", "submitted_policy")
        act = taskkit.function(policy, "act")
        returns = [episode_return(env, act, seed) for seed in seeds]
    taskkit.report({"mean_return": round(float(np.mean(returns)), 2), "min_return": float(min(returns))})


if __name__ == "__main__":
    main()
