"""Data-, fsdp- and tensor-parallel meshes train to the same losses as one device.

Runs on eight fake CPU devices (set in tests/conftest.py).
"""

import jax
import numpy as np
import pytest

from libs.train import launch, sharding
from tests.conftest import train_losses

FILES = ["configs/speedrun/record_11.gin", "configs/speedrun/cpu_scale.gin"]  # Muon, U-net, every switch
TINY = [
    "GPTConfig.dtype = 'float32'",
    "GPTConfig.num_layers = 2",
    "GPTConfig.model_dim = 64",
    "GPTConfig.num_heads = 4",
    "GPTConfig.max_seq_len = 32",
]
STEPS, BATCH, SEQ = 4, 16, 32


def _losses(mesh_bindings):
    losses, state, _ = train_losses(FILES, TINY + mesh_bindings, STEPS, BATCH, SEQ)
    return losses, state


@pytest.fixture(scope="module")
def single_device():
    assert jax.device_count() == 8
    return _losses(["make_mesh.data = 1", "make_mesh.fsdp = 1", "make_mesh.tensor = 1"])


@pytest.mark.parametrize(
    "name, mesh",
    [
        ("data", ["make_mesh.data = 8"]),
        ("fsdp", ["make_mesh.data = 1", "make_mesh.fsdp = 8"]),
        ("tensor", ["make_mesh.data = 2", "make_mesh.tensor = 4"]),
        ("all", ["make_mesh.data = 2", "make_mesh.fsdp = 2", "make_mesh.tensor = 2"]),
    ],
)
def test_mesh_matches_single_device(name, mesh, single_device, clean_gin):
    expected, _ = single_device
    losses, state = _losses(mesh)
    assert losses[-1] < losses[0]  # It trains...
    np.testing.assert_allclose(losses, expected, rtol=2e-5, err_msg=name)  # ...to the same losses.
    if name in ("fsdp", "tensor"):  # ...with parameters really split across devices.
        kernel = state["params"]["block_0"]["mlp"]["fc"]["kernel"]
        assert len({str(s.index) for s in kernel.addressable_shards}) > 1, kernel.sharding


def test_mesh_config_errors(clean_gin):
    with pytest.raises(launch.ConfigError, match="needs 16 devices"):
        sharding.make_mesh(data=16)
    with pytest.raises(launch.ConfigError, match="at most one axis"):
        sharding.make_mesh(data=-1, fsdp=-1)
