"""Optimizers: Muon orthogonalises, groups are right, schedules have their shape."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from libs.train import launch, optim


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
    with pytest.raises(launch.ConfigError, match="make_optimizer.kind"):
        optim.make_optimizer(_params(), 10, kind="sgd")


# --- a fused QKV kernel is one parameter; bf16 storage; config errors ------------------------------


def _fused_params():
    return {
        "embed": {"embedding": jnp.zeros((64, 32))},
        "block_0": {"attn": {"qkv": {"kernel": jnp.zeros((32, 96))}}},
    }


def _ill_conditioned(rows, cols, seed=0):
    """A (rows, cols) matrix, rows <= cols, with singular values spread over 1.5 decades."""
    u, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(rows, rows)))
    v, _ = np.linalg.qr(np.random.default_rng(seed + 1).normal(size=(cols, rows)))
    return jnp.asarray((u * np.logspace(0, -1.5, rows)) @ v.T, jnp.float32)


@pytest.mark.parametrize("scale, factor", [("none", 1.0), ("max_dim", 96**0.5), ("out_in", 3**0.5)])
def test_muon_orthogonalises_a_fused_qkv_kernel_as_one_matrix(scale, factor):
    params = _fused_params()
    assert optim.param_groups(params)["block_0"]["attn"]["qkv"]["kernel"] == "muon"
    tx = optim.make_optimizer(params, total_steps=10, kind="muon", muon_lr=1.0, muon_scale=scale, grad_clip=0.0)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    grads["block_0"]["attn"]["qkv"]["kernel"] = _ill_conditioned(32, 96)
    updates, _ = tx.update(grads, tx.init(params), params)
    update = np.asarray(updates["block_0"]["attn"]["qkv"]["kernel"]) / -factor  # Scale from the fused shape.
    sv = np.linalg.svd(update, compute_uv=False)
    # One orthogonalisation of the whole 32 x 96 matrix: singular values near 1. Three separate 32 x 32
    # orthogonalisations side by side would give singular values near sqrt(3).
    assert np.all(sv > 0.5) and np.all(sv < 1.3) and abs(np.mean(sv) - 1.0) < 0.2, sv


def test_gradient_normalisation_sees_a_fused_qkv_kernel_as_one_parameter():
    from libs.models import gpt  # pylint: disable=import-outside-toplevel
    from libs.train.state import strip_boxes  # pylint: disable=import-outside-toplevel

    cfg = gpt.GPTConfig(vocab_size=64, num_layers=1, num_heads=2, model_dim=32, max_seq_len=16, dtype="float32",
                        use_bias=False, fused_qkv=True)
    params = strip_boxes(gpt.GPT(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"])
    assert set(params["block_0"]["attn"]) == {"qkv", "out"}
    grads = jax.tree_util.tree_map(lambda p: jax.random.normal(jax.random.key(1), p.shape), params)
    scale = jnp.asarray([1.0] * 32 + [10.0] * 32 + [0.1] * 32)  # Q, K and V gradients of unequal size.
    grads["block_0"]["attn"]["qkv"]["kernel"] = grads["block_0"]["attn"]["qkv"]["kernel"] * scale
    normed, _ = optim.normalize_per_parameter().update(grads, optax.EmptyState())
    kernel = np.asarray(normed["block_0"]["attn"]["qkv"]["kernel"])
    assert np.linalg.norm(kernel) == pytest.approx(1.0, rel=1e-5)  # One norm for the whole matrix...
    thirds = [np.linalg.norm(kernel[:, i * 32 : (i + 1) * 32]) for i in range(3)]
    assert thirds[1] > 0.9 and thirds[0] < 0.2 and thirds[2] < 0.02, thirds  # ...not one per Q, K, V.


@pytest.mark.parametrize("microbatches", [1, 2])
def test_bf16_stored_params_keep_their_dtypes_through_a_train_step(microbatches):
    from libs.models import gpt  # pylint: disable=import-outside-toplevel
    from libs.train import state  # pylint: disable=import-outside-toplevel

    cfg = gpt.GPTConfig(vocab_size=64, num_layers=2, num_heads=2, model_dim=32, max_seq_len=16, dtype="float32",
                        positional="rotary", norm="rmsnorm", use_bias=False, tie_embeddings=False, embed_skip=True,
                        value_residual=True, unet_skips=True, embed_scalar_param_dtype="bfloat16")
    model = gpt.GPT(cfg)
    tokens = jax.random.randint(jax.random.key(0), (4, 16), 0, 64)
    params = state.strip_boxes(model.init(jax.random.key(0), tokens)["params"])
    assert params["embed"]["embedding"].dtype == jnp.bfloat16 and params["head"].dtype == jnp.float32
    for clip in (0.0, 1.0):
        tx = optim.make_optimizer(params, 10, kind="muon", scalar_lr=0.02, grad_clip=clip)
        before = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
                  "rng": jnp.zeros((2,), jnp.uint32)}
        loss_fn = lambda p, x, y, step: model.apply({"params": p}, x, y)
        step = jax.jit(state.make_train_step(loss_fn, tx, microbatches))
        after, metrics = step(before, tokens, jnp.roll(tokens, -1, axis=1))
        dtypes = lambda tree: [jnp.asarray(x).dtype for x in jax.tree_util.tree_leaves(tree)]
        assert dtypes(after) == dtypes(before)  # Adam moments of bf16 params stay bf16.
        assert jax.tree_util.tree_structure(after) == jax.tree_util.tree_structure(before)
        assert np.isfinite(float(metrics["loss"]))
        moments = [x for x in jax.tree_util.tree_leaves(after["opt_state"]) if x.dtype == jnp.bfloat16]
        assert moments and not np.array_equal(after["params"]["embed"]["embedding"], params["embed"]["embedding"])


@pytest.mark.parametrize("fn, kwargs, name", [
    (optim.make_optimizer, {"kind": "sgd"}, "make_optimizer.kind='sgd'"),
    (optim.make_optimizer, {"muon_scale": "spectral"}, "make_optimizer.muon_scale='spectral'"),
    (optim.make_optimizer, {"adam_lr": 0.0}, "make_optimizer.adam_lr=0.0"),
    (optim.make_optimizer, {"muon_lr": -0.02, "kind": "muon"}, "make_optimizer.muon_lr=-0.02"),
    (optim.make_optimizer, {"embed_lr": -1.0}, "make_optimizer.embed_lr=-1.0"),
    (optim.make_optimizer, {"b2": 1.0}, "make_optimizer.b2=1.0"),
    (optim.make_optimizer, {"weight_decay": -0.1}, "make_optimizer.weight_decay=-0.1"),
    (optim.make_optimizer, {"grad_clip": -1.0}, "make_optimizer.grad_clip=-1.0"),
    (optim.make_optimizer, {"muon_ns_steps": 0}, "make_optimizer.muon_ns_steps=0"),
    (optim.make_optimizer, {"total_steps": 0}, "make_optimizer: total_steps=0"),
    (optim.lr_schedule, {"decay": "step"}, "lr_schedule.decay='step'"),
    (optim.lr_schedule, {"warmup_fraction": 1.5}, "lr_schedule.warmup_fraction=1.5"),
    (optim.lr_schedule, {"decay_fraction": -0.2}, "lr_schedule.decay_fraction=-0.2"),
    (optim.lr_schedule, {"final_fraction": 2.0}, "lr_schedule.final_fraction=2.0"),
    (optim.lr_schedule, {"decay": "trapezoid", "warmup_fraction": 0.6, "decay_fraction": 0.6},
     "lr_schedule.decay_fraction=0.6: warmup"),
    (optim.lr_schedule, {"total_steps": -5}, "lr_schedule: total_steps=-5"),
    (optim.momentum_warmup, {"start": 1.2}, "momentum_warmup.start=1.2"),
    (optim.momentum_warmup, {"fraction": 2.0}, "momentum_warmup.fraction=2.0"),
])
def test_bad_values_are_config_errors(fn, kwargs, name):
    kwargs = {"total_steps": 10, **kwargs}
    args = (_params(),) if fn is optim.make_optimizer else ()
    with pytest.raises(launch.ConfigError) as info:
        fn(*args, **kwargs)
    assert str(info.value).splitlines()[0].startswith(name), str(info.value)


@pytest.mark.parametrize("kwargs, block, reference", [
    # record 13: 64 * ((step / N * (1792 - 64) + 64) // 64) tokens, token windows
    ({"start_tokens": 64, "growth_tokens": 1728, "quantum": 64}, 1,
     lambda step, n: 64 * ((step / n * (1792 - 64) + 64) // 64)),
    # record 16: int(((1 - frac) * 64 + frac * 1792 + 64) // 128) blocks of 128
    ({"start_tokens": 128, "growth_tokens": 1728, "quantum": 128}, 128,
     lambda step, n: int(((1 - step / n) * 64 + step / n * 1792 + 64) // 128)),
    # record 20: next_multiple_of_n(1728 * step / n, n=128) // 128 blocks
    ({"start_tokens": 0, "growth_tokens": 1728, "quantum": 128, "rounding": "ceil"}, 128,
     lambda step, n: math.ceil(1728 * step / n / 128)),
])
def test_window_schedules_follow_the_records(kwargs, block, reference):
    n = 1393
    schedule = optim.window_schedule(n, block, **kwargs)
    steps = np.arange(0, n + 1)
    got = np.asarray(jax.jit(jax.vmap(schedule))(steps))
    want = np.array([reference(int(s), n) for s in steps])
    np.testing.assert_array_equal(got, want)


def test_window_schedule_defaults_and_errors():
    assert optim.window_schedule(100, 1) is None  # no growth: the model's largest window throughout
    with pytest.raises(launch.ConfigError, match="window_schedule.rounding"):
        optim.window_schedule(100, 1, growth_tokens=10, rounding="round")
    with pytest.raises(launch.ConfigError, match="window_schedule.quantum=64"):
        optim.window_schedule(100, 128, growth_tokens=10, quantum=64)
