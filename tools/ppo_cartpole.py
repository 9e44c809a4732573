r"""PPO on the pure-JAX CartPole-v1: the known-answer check of libs/rl, one run per seed.

    python -m tools.ppo_cartpole --seeds=0,1,2
    python -m tools.ppo_cartpole --seeds=0 --gin_bindings='ppo.total_env_steps = 200_000'

Prints, per seed, the mean return of the episodes completed in the last `--window` env steps, the
env steps at which an update's episodes first averaged >= 475, and the wall time (compilation, shared by
all seeds, is timed apart). Defaults are purejaxrl's (`libs.rl.ppo.PPOConfig`).
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np
from absl import app, flags

from libs.envs.cartpole import CartPole
from libs.rl import networks, ppo, purejax
from libs.train import launch

_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds to train, one run each.")
_WINDOW = flags.DEFINE_integer("window", 25_000, "Final env steps whose completed episodes give the return.")
_TARGET = flags.DEFINE_float("target", 475.0, "The return CartPole-v1 counts as solved.")
_GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files (ppo, cartpole).")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'ppo.lr = 1e-3'.")


def main(argv):
    del argv
    try:
        launch.parse_config(_GIN_FILES.value, _GIN_BINDINGS.value)
        config, env = ppo.PPOConfig(), CartPole()
    except launch.ConfigError as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(launch.EXIT_USER_ERROR)
    train_fn = jax.jit(purejax.make_train_fn(config, env, networks.MLPActorCritic(env.num_actions)))
    start = time.perf_counter()
    compiled = train_fn.lower(jax.random.key(0)).compile()
    print(f"ppo_cartpole: {config.total_env_steps:,} env steps per seed, {jax.devices()[0].platform}, "
          f"compile {time.perf_counter() - start:.1f} s")
    finals = []
    for seed in (int(s) for s in _SEEDS.value):
        start = time.perf_counter()
        metrics = jax.device_get(compiled(jax.random.key(seed))["metrics"])
        wall = time.perf_counter() - start
        final = purejax.recent_return(metrics, _WINDOW.value)
        returns = np.nan_to_num(metrics["mean_episode_return"])
        solved = np.asarray(metrics["env_steps"])[returns >= _TARGET.value]
        first = f"at {int(solved[0]):,} steps" if solved.size else "never"
        print(f"seed {seed}: return {final:.1f} (last {_WINDOW.value:,} steps), first update averaging >= "
              f"{_TARGET.value:g} {first}, wall {wall:.1f} s ({config.total_env_steps / wall:,.0f} env steps/s)")
        finals.append(final)
    passed = bool(np.min(finals) >= _TARGET.value)
    print(f"mean over {len(finals)} seeds: {np.mean(finals):.1f}; min {np.min(finals):.1f}; "
          f"{'PASS' if passed else 'FAIL'} (target {_TARGET.value:g})")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
