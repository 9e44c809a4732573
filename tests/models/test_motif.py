"""Motif reward model: the Bradley-Terry loss on known values, learning a synthetic preference, statistics,
save / load, and one-line errors."""

from __future__ import annotations

import dataclasses
import math
import os

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from libs.models import motif
from libs.train.errors import ConfigError, UserError

TINY = motif.RewardModelConfig(char_embed_dim=8, conv_channels=16, diff_hidden_dim=16, hidden_dim=32,
                               learning_rate=3e-3, batch_size=128, epochs=6, holdout_fraction=0.2, seed=0)
GOLD = ["You see here {n} gold pieces.", "{n} gold pieces.", "You pick up {n} gold coins.",
        "There are {n} gold pieces here."]
OTHER = ["You see here a {item}.", "You hit the {monster}!", "The {monster} misses!", "You kill the {monster}!",
         "There is a {item} here.", "You find a hidden {item}.", "The {monster} bites!", "{n} {item}s."]
ITEMS = ["dagger", "scroll labeled ZELGO MER", "ring", "wand", "food ration", "lamp", "boulder", "chest"]
MONSTERS = ["newt", "jackal", "grid bug", "kobold", "gnome lord", "sewer rat", "lichen", "goblin"]


def encode(text: str) -> np.ndarray:
    out = np.zeros(motif.MESSAGE_LEN, np.uint8)
    raw = text.encode()
    out[:len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def random_message(rng: np.random.Generator, gold: bool) -> str:
    template = rng.choice(GOLD if gold else OTHER)
    return template.format(n=int(rng.integers(1, 500)), item=rng.choice(ITEMS), monster=rng.choice(MONSTERS))


def gold_pairs(n: int, seed: int) -> dict[str, np.ndarray]:
    """Pairs where a message about gold is preferred; pairs of two alike are labelled none."""
    rng = np.random.default_rng(seed)
    gold_a, gold_b = rng.random(n) < 0.5, rng.random(n) < 0.5
    labels = np.where(gold_a == gold_b, 2, np.where(gold_a, 0, 1))
    return {"msg_a": np.stack([encode(random_message(rng, g)) for g in gold_a]),
            "msg_b": np.stack([encode(random_message(rng, g)) for g in gold_b]),
            "diff_a": rng.integers(-1, 2, size=(n, 5)).astype(np.float32),
            "diff_b": rng.integers(-1, 2, size=(n, 5)).astype(np.float32), "labels": labels}


@pytest.fixture(scope="module")
def trained():
    return motif.train_reward_model(gold_pairs(1200, seed=0), TINY)


def test_preference_loss_known_values():
    r_a, r_b, labels = jnp.array([0.0, 1.0, 2.0, 3.0]), jnp.array([0.0, 0.0, 0.0, 3.0]), jnp.array([0, 1, 2, 2])
    log_sigmoid = lambda x: -math.log1p(math.exp(-x))
    expected = [math.log(2.0),  # equal rewards, first preferred
                -log_sigmoid(-1.0),  # the second preferred but the first scores 1 higher
                -(0.5 * log_sigmoid(2.0) + 0.5 * log_sigmoid(-2.0)),  # none: soft label (0.5, 0.5)
                math.log(2.0)]  # none with equal rewards: the minimum, log 2
    np.testing.assert_allclose(motif.preference_loss(r_a, r_b, labels), np.mean(expected), rtol=1e-6)
    np.testing.assert_allclose(motif.soft_labels(labels), [[1, 0], [0, 1], [0.5, 0.5], [0.5, 0.5]])
    weights = jnp.array([1.0, 0.0, 0.0, 0.0])  # padding rows weigh nothing
    np.testing.assert_allclose(motif.preference_loss(r_a, r_b, labels, weights), math.log(2.0), rtol=1e-6)
    # A none label pulls the two rewards together: no gradient at equality, towards it otherwise.
    grad = jax.grad(lambda a: motif.preference_loss(a, jnp.zeros(1), jnp.array([2])))
    assert float(grad(jnp.zeros(1))[0]) == 0.0 and float(grad(jnp.ones(1))[0]) > 0.0


def test_model_shapes_and_padding_embeds_to_zero():
    model = motif.make_model(TINY)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 256), jnp.uint8), jnp.zeros((1, 5)))["params"]
    messages = np.stack([encode("You see here a dagger."), encode("")])
    diffs = np.array([[1, 0, 0, 0, 0], [0, 0, -1, 0, 0]], np.float32)
    apply = jax.jit(model.apply)
    rewards = apply({"params": params}, messages, diffs)
    assert rewards.shape == (2,) and rewards.dtype == jnp.float32
    # Byte 0 is padding (PyTorch's padding_idx=0): its embedding row has no effect.
    table = params["char_embed"]["embedding"]
    moved = {**params, "char_embed": {"embedding": table.at[0].set(100.0)}}
    np.testing.assert_array_equal(apply({"params": moved}, messages, diffs), rewards)
    changed = {**params, "char_embed": {"embedding": table.at[ord("Y")].set(100.0)}}
    assert not np.allclose(apply({"params": changed}, messages, diffs)[0], rewards[0])


def test_learns_a_synthetic_gold_preference(trained):
    assert trained.stats["heldout_accuracy"] > 0.9
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    # Fresh messages never seen in training: gold beats the rest on > 90% of fresh pairs.
    fresh = gold_pairs(400, seed=1)
    decided = fresh["labels"] != 2
    r_a = trained.apply(fresh["msg_a"], fresh["diff_a"])
    r_b = trained.apply(fresh["msg_b"], fresh["diff_b"])
    assert np.mean((r_b > r_a)[decided] == fresh["labels"][decided].astype(bool)) > 0.9


def test_statistics_normalise_the_dataset_rewards(trained):
    data = gold_pairs(1200, seed=0)
    messages = np.concatenate([data["msg_a"], data["msg_b"]])
    diffs = np.concatenate([data["diff_a"], data["diff_b"]])
    rows = np.concatenate([messages, diffs.view(np.uint8)], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    norm = trained.normalised(messages[first], diffs[first])
    assert trained.stats["num_messages"] == len(first)
    np.testing.assert_allclose([norm.mean(), norm.std()], [0.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(trained.threshold(0.85), np.quantile(norm, 0.85), atol=1e-3)
    assert trained.threshold(0.0) == -math.inf
    with pytest.raises(ConfigError, match="eps_threshold_quantile"):
        trained.threshold(1.5)


def test_save_load_round_trip(trained, tmp_path):
    path = str(tmp_path / "reward")
    trained.save(path)
    loaded = motif.TrainedRewardModel.load(path)
    assert loaded.config == trained.config
    data = gold_pairs(50, seed=2)
    np.testing.assert_array_equal(loaded.apply(data["msg_a"], data["diff_a"]),
                                  trained.apply(data["msg_a"], data["diff_a"]))
    assert loaded.mean == trained.mean and loaded.std == trained.std
    assert loaded.threshold(0.95) == trained.threshold(0.95)
    assert len(loaded.history) == len(trained.history)
    assert not [f for f in os.listdir(path) if ".tmp" in f]
    with open(os.path.join(path, motif.PARAMS_FILE), "r+b") as f:  # a torn or foreign params file
        f.truncate(100)
    with pytest.raises(UserError, match="does not match"):
        motif.TrainedRewardModel.load(path)
    with pytest.raises(UserError, match="no saved reward model"):
        motif.TrainedRewardModel.load(str(tmp_path / "missing"))


def test_should_stop_ends_training_with_statistics():
    model = motif.train_reward_model(gold_pairs(64, seed=3), TINY, should_stop=lambda: True)
    assert model.stats["stopped"] and model.stats["epochs"] == 0 and model.history == []
    assert np.isfinite(model.stats["mean"]) and model.stats["std"] > 0


def test_bad_data_and_config_are_one_line_errors():
    data = gold_pairs(8, seed=4)
    with pytest.raises(UserError, match="labels must be 0"):
        motif.train_reward_model({**data, "labels": data["labels"] + 3}, TINY)
    with pytest.raises(UserError, match="lacks diff_b"):
        motif.train_reward_model({k: v for k, v in data.items() if k != "diff_b"}, TINY)
    with pytest.raises(UserError, match=r"msg_a must be \(N, 256\)"):
        motif.train_reward_model({**data, "msg_a": data["msg_a"][:, :10]}, TINY)
    with pytest.raises(ConfigError, match="motif_reward_model.holdout_fraction"):
        motif.RewardModelConfig(holdout_fraction=1.0)
    with pytest.raises(ConfigError, match="motif_reward_model.batch_size"):
        motif.RewardModelConfig(batch_size=0)


def test_depth_change_only_ignores_the_other_changes():
    config = dataclasses.replace(TINY, depth_change_only=True)
    model = motif.make_model(config)
    apply = jax.jit(model.apply)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 256), jnp.uint8), jnp.zeros((1, 5)))
    messages = np.stack([encode("You see here 5 gold pieces.")] * 3)
    diffs = np.array([[0, 0, 0, 0, 0], [0, 1, -1, 1, 1], [1, 1, -1, 1, 1]], np.float32)
    rewards = np.asarray(apply(params, messages, diffs))
    assert rewards[0] == rewards[1] and rewards[2] != rewards[0]


def test_config_is_gin_configurable(clean_gin):
    gin.parse_config(["motif_reward_model.epochs = 3", "motif_reward_model.learning_rate = 1e-5"])
    config = motif.RewardModelConfig()
    assert (config.epochs, config.learning_rate) == (3, 1e-5)
