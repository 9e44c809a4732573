"""Optimizers: Muon orthogonalises, groups are right, schedules have their shape."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from libs.train import optim


def _params():
    return {
        "embed": {"embedding": jnp.zeros((64, 32))},
        "head": jnp.zeros((32, 64)),
        "block_0": {"mlp": {"fc": {"kernel": jnp.zeros((32, 128)), "bias": jnp.zeros((128,))}},
                    "skip_lambdas": jnp.zeros((2,))},
    }


def test_param_groups():
    groups = optim.param_groups(_params())
    assert groups["embed"]["embedding"] == "embed" and groups["head"] == "head"
    assert groups["block_0"]["mlp"]["fc"]["kernel"] == "muon"
    assert groups["block_0"]["mlp"]["fc"]["bias"] == "scalar"
    assert groups["block_0"]["skip_lambdas"] == "scalar"


@pytest.mark.parametrize("scale, factor", [("out_in", 2.0), ("max_dim", 128**0.5), ("none", 1.0)])
def test_muon_update_is_orthogonal(scale, factor):
    params = _params()
    tx = optim.make_optimizer(params, total_steps=10, kind="muon", muon_lr=1.0, muon_scale=scale, grad_clip=0.0)
    # An ill-conditioned gradient: singular values spread over 1.5 decades.
    u, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(32, 32)))
    v, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(128, 32)))
    grad_fc = (u * np.logspace(0, -1.5, 32)) @ v.T
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    grads["block_0"]["mlp"]["fc"]["kernel"] = jnp.asarray(grad_fc, jnp.float32)
    updates, _ = tx.update(grads, tx.init(params), params)
    sv = np.linalg.svd(np.asarray(updates["block_0"]["mlp"]["fc"]["kernel"]) / -factor, compute_uv=False)
    assert np.all(sv > 0.5) and np.all(sv < 1.3), sv  # Newton-Schulz lands singular values near 1.
    assert abs(np.mean(sv) - 1.0) < 0.2
    # Adam groups are not orthogonalised: a uniform gradient gives a uniform update.
    head = np.asarray(updates["head"])
    assert np.allclose(head, head.flat[0])


def test_trapezoid_schedule():
    sched = optim.lr_schedule(100, warmup_fraction=0.1, decay="trapezoid", decay_fraction=0.2)
    assert float(sched(0)) == pytest.approx(0.1)
    assert float(sched(9)) == pytest.approx(1.0)
    assert float(sched(50)) == pytest.approx(1.0)
    assert float(sched(90)) == pytest.approx(0.5)  # (100 - 90) / 20
    assert float(sched(99)) == pytest.approx(0.05)


def test_cosine_schedule_reaches_final_fraction():
    sched = optim.lr_schedule(1000, warmup_fraction=0.1, decay="cosine", final_fraction=0.1)
    assert float(sched(99)) == pytest.approx(1.0)
    assert float(sched(550)) == pytest.approx(0.55, abs=1e-3)
    assert float(sched(1000)) == pytest.approx(0.1)


def test_momentum_warmup():
    mom = optim.momentum_warmup(1000, start=0.85, end=0.95, fraction=0.5)
    assert float(mom(0)) == pytest.approx(0.85) and float(mom(250)) == pytest.approx(0.90)
    assert float(mom(900)) == pytest.approx(0.95)


def test_normalize_per_parameter():
    grads = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, 7.0), _params())
    normed, _ = optim.normalize_per_parameter().update(grads, optax.EmptyState())
    for leaf in jax.tree_util.tree_leaves(normed):
        assert float(jnp.linalg.norm(leaf)) == pytest.approx(1.0, rel=1e-5)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="make_optimizer.kind"):
        optim.make_optimizer(_params(), 10, kind="sgd")
