"""Test-wide setup: eight fake CPU devices for the sharding tests, quiet logs."""

import os
import subprocess
import sys

# Must happen before jax is imported anywhere in the test process.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_binary(module: str, *args: str, timeout: float = 300, **popen_kwargs):
    """Runs `python -m module args` from the repo root on one CPU device."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          **popen_kwargs)


@pytest.fixture
def clean_gin():
    import gin

    gin.clear_config()
    yield
    gin.clear_config()


def train_losses(gin_files, gin_bindings, steps, batch, seq_len):
    """Losses of `steps` train steps on fixed random byte tokens, and the final state (sharding tests)."""
    import gin
    import jax
    import numpy as np

    from libs.train import launch, trainer

    launch.parse_config(gin_files, gin_bindings)
    exp = trainer.build(total_steps=steps, seq_len=seq_len, global_batch_size=batch, microbatches=1)
    rng = np.random.default_rng(0)
    with exp.context():
        state = exp.init_state(seed=0)
        losses = []
        for _ in range(steps):
            tokens = rng.integers(0, 257, size=(batch, seq_len + 1), dtype=np.int32)
            inputs = jax.device_put(tokens[:, :-1], exp.batch_sharding)
            targets = jax.device_put(tokens[:, 1:], exp.batch_sharding)
            state, out = exp.step_fn(state, inputs, targets)
            losses.append(float(out["loss"]))
    gin.clear_config()
    return np.array(losses), state, exp
