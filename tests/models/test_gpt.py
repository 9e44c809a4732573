"""The GPT model: loss chunking, causality, switches, FLOP counting."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.models import gpt, losses
from libs.train.state import strip_boxes

TINY = gpt.GPTConfig(vocab_size=64, num_layers=2, num_heads=2, model_dim=32, max_seq_len=16, dtype="float32")


def _init(cfg, tokens):
    return strip_boxes(gpt.GPT(cfg).init(jax.random.key(0), tokens)["params"])


@pytest.mark.parametrize("softcap, valid_vocab, chunk_tokens", [(0.0, 0, 0), (30.0, 0, 16), (5.0, 45, 8)])
def test_fused_loss_matches_plain_autodiff(softcap, valid_vocab, chunk_tokens):
    x = jax.random.normal(jax.random.key(1), (4, 8, 16))
    head = jax.random.normal(jax.random.key(2), (50, 16))
    targets = jax.random.randint(jax.random.key(3), (4, 8), 0, valid_vocab or 50)

    def plain(x, head):  # Whole-batch logits, differentiated by JAX.
        logits, _ = losses.logits_of(x, head, softcap, valid_vocab)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1))

    fused = lambda x, head: losses.fused_cross_entropy(x, head, targets, softcap, chunk_tokens, valid_vocab)
    forward = losses.cross_entropy(x, head, targets, softcap, chunk_tokens, valid_vocab)
    np.testing.assert_allclose(fused(x, head), plain(x, head), rtol=1e-5)
    np.testing.assert_allclose(forward, plain(x, head), rtol=1e-5)
    for got, want in zip(jax.grad(fused, (0, 1))(x, head), jax.grad(plain, (0, 1))(x, head)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_loss_chunks_split_the_sequence_axis():
    assert losses.num_chunks(64, 1024, 8192) == 8  # 64 rows x 128 positions per chunk
    assert losses.num_chunks(4, 12, 10) == 6  # 5 chunks would not divide 12
    assert losses.num_chunks(4, 12, 0) == 1


def test_masked_padding_rows_take_no_probability():
    cfg = dataclasses.replace(TINY, logit_vocab_size=50)
    tokens = jnp.zeros((1, 8), jnp.int32)
    logits = gpt.GPT(cfg).apply({"params": _init(cfg, tokens)}, tokens)
    assert jnp.all(jnp.isneginf(logits[..., 50:])) and jnp.all(jnp.isfinite(logits[..., :50]))


ALL_SWITCHES = dataclasses.replace(
    TINY, positional="rotary", norm="rmsnorm", use_bias=False, activation="relu2", qk_norm=True,
    zero_init_proj=True, tie_embeddings=False, embed_norm=True, logit_softcap=15.0, embed_skip=True,
    value_residual=True, unet_skips=True, value_embeddings=1, init_scheme="torch",
)


@pytest.mark.parametrize("cfg", [TINY, ALL_SWITCHES], ids=["baseline", "all_switches"])
def test_causal(cfg):
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, 64)
    params = _init(cfg, tokens)
    if cfg.zero_init_proj:  # Zero projections make every position trivially independent.
        params = jax.tree_util.tree_map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(5), p.shape), params)
    model = gpt.GPT(cfg)
    base = model.apply({"params": params}, tokens)
    changed = model.apply({"params": params}, tokens.at[:, 8:].set(3))
    np.testing.assert_allclose(base[:, :8], changed[:, :8], rtol=1e-5, atol=1e-5)
    assert not np.allclose(base[:, 8:], changed[:, 8:])


def test_softcap_bounds_logits():
    cfg = dataclasses.replace(TINY, logit_softcap=2.0)
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = jax.tree_util.tree_map(lambda p: p * 100.0, _init(cfg, tokens))
    logits = gpt.GPT(cfg).apply({"params": params}, tokens)
    assert float(jnp.max(jnp.abs(logits))) <= 2.0


def test_switches_add_their_parameters():
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = _init(ALL_SWITCHES, tokens)
    assert "head" in params and "pos_embed" not in params and "skip_weights" in params
    assert "value_embed_0" in params
    attn = params["block_1"]["attn"]
    assert "value_lambda" in attn and "bias" not in attn["query"]
    np.testing.assert_array_equal(params["block_0"]["mlp"]["proj"]["kernel"], 0.0)


def test_bad_switch_value_is_rejected():
    with pytest.raises(ValueError, match="GPTConfig.activation"):
        gpt.GPTConfig(activation="swish")


def test_flops_per_token_of_gpt2_small():
    cfg = gpt.GPTConfig()
    params = jax.eval_shape(gpt.GPT(cfg).init, jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"]
    n = gpt.count_params(params)
    pos = cfg.max_seq_len * cfg.model_dim
    expected = 6 * (n - pos) + 12 * 12 * 768 * 1024
    assert gpt.flops_per_token(cfg, params, 1024) == expected
