"""The FP8 head of record 19: saturating FP8 rounding and the fused loss's FP8 forward and backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.models import losses

FP8 = losses.Fp8Head(x_scale=2.0, w_scale=32.0, grad_scale=2.0**29)


def test_to_fp8_rounds_and_saturates():
    a = jnp.array([0.0, 1.0, 1.05, 1.07, 300.0, 1e6, -1e6])
    got = np.asarray(losses.to_fp8(a, 1.0, jnp.float8_e4m3fn).astype(jnp.float32))
    np.testing.assert_array_equal(got, [0.0, 1.0, 1.0, 1.125, 288.0, 448.0, -448.0])  # 3 mantissa bits, max 448
    assert np.asarray(losses.to_fp8(jnp.array([1e9]), 1.0, jnp.float8_e5m2).astype(jnp.float32))[0] == 57344.0


def _problem(seed=0, vocab=96, dim=32):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(keys[0], (2, 16, dim), jnp.float32).astype(jnp.bfloat16)
    head = 0.05 * jax.random.normal(keys[1], (vocab, dim), jnp.float32)
    targets = jax.random.randint(keys[2], (2, 16), 0, vocab)
    return x, head, targets


def _dequantised_reference(x, head, targets, softcap):
    """The FP8 forward written out: the loss of the rounded operands, and the record's three products."""
    x8 = losses.to_fp8(x, FP8.x_scale, jnp.float8_e4m3fn).astype(jnp.float32) / FP8.x_scale
    w8 = losses.to_fp8(head, FP8.w_scale, jnp.float8_e4m3fn).astype(jnp.float32) / FP8.w_scale

    def loss_of_logits(z):
        z = softcap * jnp.tanh(z / softcap)
        return jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, targets[..., None], -1)[..., 0])

    z = jnp.einsum("btd,vd->btv", x8, w8)
    loss, dz = jax.value_and_grad(loss_of_logits)(z)
    g8 = losses.to_fp8(dz, FP8.grad_scale, jnp.float8_e5m2).astype(jnp.float32) / FP8.grad_scale
    return loss, jnp.einsum("btv,vd->btd", g8, w8), jnp.einsum("btv,btd->vd", g8, x8)


@pytest.mark.parametrize("chunk_tokens", [0, 8])
def test_fp8_loss_and_gradients_follow_the_written_out_products(chunk_tokens):
    x, head, targets = _problem()
    fused = lambda x, h: losses.fused_cross_entropy(x, h, targets, 15.0, chunk_tokens, 0, FP8)
    loss, (dx, dhead) = jax.value_and_grad(fused, (0, 1))(x, head)
    want_loss, want_dx, want_dhead = _dequantised_reference(x, head, targets, 15.0)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dx, np.float32), want_dx, rtol=2e-2, atol=1e-6)  # dx is stored in bf16
    np.testing.assert_allclose(dhead, want_dhead, rtol=1e-4, atol=1e-9)


def test_fp8_head_stays_close_to_the_bf16_head():
    # The record's grad scale 2**29 fits its mean over ~65k tokens per device; 32 tokens need a smaller one.
    scales = losses.Fp8Head(2.0, 32.0, 2.0**12)
    x, head, targets = _problem(1)
    plain = jax.value_and_grad(lambda x, h: losses.fused_cross_entropy(x, h, targets, 15.0), (0, 1))(x, head)
    fp8 = jax.value_and_grad(lambda x, h: losses.fused_cross_entropy(x, h, targets, 15.0, 0, 0, scales), (0, 1))(x, head)
    assert abs(float(fp8[0]) - float(plain[0])) < 0.02
    for got, want in zip(fp8[1], plain[1]):
        got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.15  # FP8 rounding, not a different gradient
        assert np.linalg.norm(got - want) > 0  # and it does round


def test_gpt_trains_through_the_fp8_head_and_evaluates_in_bf16():
    import dataclasses

    from libs.models import gpt
    from libs.train.launch import ConfigError
    from libs.train.state import strip_boxes

    cfg = gpt.GPTConfig(vocab_size=64, num_layers=1, num_heads=2, model_dim=32, max_seq_len=16, positional="rotary",
                        norm="rmsnorm", tie_embeddings=False, logit_softcap=15.0,
                        head_fp8=True, head_fp8_scales=[2.0, 32.0, 2.0**14])
    assert cfg.head_fp8_scales == (2.0, 32.0, 16384.0)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 16), 0, 64)
    params = strip_boxes(gpt.GPT(cfg).init(jax.random.PRNGKey(1), tokens)["params"])
    plain = dataclasses.replace(cfg, head_fp8=False)
    train = lambda c: jax.value_and_grad(lambda p: gpt.GPT(c).apply({"params": p}, tokens, tokens))(params)
    (fp8_loss, fp8_grads), (bf16_loss, bf16_grads) = train(cfg), train(plain)
    assert abs(float(fp8_loss) - float(bf16_loss)) < 0.05 and float(fp8_loss) != float(bf16_loss)
    assert not np.allclose(fp8_grads["head"], bf16_grads["head"])
    evaluate = lambda c: gpt.GPT(c).apply({"params": params}, tokens, tokens, train=False)
    assert float(evaluate(cfg)) == float(evaluate(plain))  # evaluation keeps the bf16 head
    with pytest.raises(ConfigError, match="head_fp8_scales"):
        dataclasses.replace(cfg, head_fp8_scales=(2.0, 0.0, 1.0))
