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
