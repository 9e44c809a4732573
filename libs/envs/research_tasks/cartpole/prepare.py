"""CartPole needs no data files: the public side gets the environment's settings, the private side the
evaluation episodes' reset seeds (so a policy cannot be fitted to them)."""

import json
import random
from pathlib import Path

EVAL_EPISODES = 20


def prepare(public_dir: Path, private_dir: Path, seed: int) -> None:
    (Path(public_dir) / "env.json").write_text(json.dumps({"env_id": "CartPole-v1", "max_episode_steps": 500}))
    rng = random.Random(f"cartpole-eval-{seed}")
    seeds = [rng.randrange(2**31) for _ in range(EVAL_EPISODES)]
    (Path(private_dir) / "eval_seeds.json").write_text(json.dumps(seeds))
