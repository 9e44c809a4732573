"""Motif reward models: a Bradley-Terry reward over NetHack messages and stat changes.

The architecture follows the reference (facebookresearch/motif, mklissa/maestromotif `TorchBeastEncoder` with
`use_diffstats`): a character-level message encoder (byte embedding with 0 as padding -> Conv1d stack with
max-pooling -> Dense) concatenated with an MLP encoding of the change vector (5 values: dungeon depth, gold,
HP, XP, hunger), then Dense -> Dense -> ReLU -> Dense(1). It is trained on preference pairs with the
Bradley-Terry cross-entropy; afterwards the mean, the std and the quantiles of its (normalised) rewards over
the dataset's distinct (message, change) entries are stored for the RL shaping (libs/rl/intrinsic.py).

Labels: 0 = the first of the pair is preferred, 1 = the second, 2 = no preference (soft label 0.5 / 0.5).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import linen as nn
from flax import serialization

from libs.train.errors import ConfigError, UserError
from libs.train.metrics import format_duration

MESSAGE_LEN = 256  # NLE's `message` observation: uint8 bytes, zero-padded
DIFF_SIZE = 5  # [dungeon depth, gold, HP, XP, hunger]
FIRST, SECOND, NO_PREFERENCE = 0, 1, 2
DATA_KEYS = ("msg_a", "diff_a", "msg_b", "diff_b", "labels")
PARAMS_FILE = "params.msgpack"
META_FILE = "reward_model.json"
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)  # stored quantiles of the normalised dataset rewards


@gin.configurable("motif_reward_model")
@dataclasses.dataclass(frozen=True)
class RewardModelConfig:
    """Sizes and training settings of a Motif reward model.

    The sizes default to the reference's (char embedding 32, conv channels 64, change-vector MLP 128,
    encoder output 512). The reference trains with Adam at lr 1e-5, batch 1000, 20 epochs on 80k-200k
    pairs; the default lr here is 3e-4 because our datasets are small (a few thousand pairs), where 1e-5
    barely moves in 20 epochs. `depth_change_only` zeroes all but the depth change before the model sees
    it, as the reference does (rlaif/data.py `diffstats[1:] = 0`, and its env wrapper likewise).
    """

    char_embed_dim: int = 32
    conv_channels: int = 64
    diff_hidden_dim: int = 128
    hidden_dim: int = 512
    depth_change_only: bool = False
    learning_rate: float = 3e-4
    batch_size: int = 256
    epochs: int = 20
    holdout_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        sizes = ("char_embed_dim", "conv_channels", "diff_hidden_dim", "hidden_dim", "batch_size", "epochs")
        for name in sizes:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"motif_reward_model.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.depth_change_only, bool):
            raise ConfigError(f"motif_reward_model.depth_change_only must be True or False, "
                              f"got {self.depth_change_only!r}")
        if self.hidden_dim < 2:
            raise ConfigError(f"motif_reward_model.hidden_dim must be >= 2, got {self.hidden_dim}")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ConfigError(f"motif_reward_model.learning_rate must be > 0, got {self.learning_rate!r}")
        if not (isinstance(self.holdout_fraction, (int, float)) and 0 <= self.holdout_fraction < 1):
            raise ConfigError(f"motif_reward_model.holdout_fraction must be in [0, 1), got {self.holdout_fraction!r}")


class RewardModel(nn.Module):
    """messages uint8 (B, 256), diffs float32 (B, 5) -> rewards float32 (B,)."""

    char_embed_dim: int = 32
    conv_channels: int = 64
    diff_hidden_dim: int = 128
    hidden_dim: int = 512
    depth_change_only: bool = False

    @nn.compact
    def __call__(self, messages: jax.Array, diffs: jax.Array) -> jax.Array:
        chars = messages.astype(jnp.int32)
        # PyTorch's padding_idx=0: the padding byte embeds to zero (and gets no gradient).
        x = nn.Embed(256, self.char_embed_dim, name="char_embed")(chars) * (chars != 0)[..., None]
        h = self.conv_channels
        pool = lambda y: nn.max_pool(y, window_shape=(3,), strides=(3,))
        x = pool(nn.relu(nn.Conv(h, (7,), padding="VALID", name="conv1")(x)))  # 256 -> 250 -> 83
        x = pool(nn.relu(nn.Conv(h, (7,), padding="VALID", name="conv2")(x)))  # 83 -> 77 -> 25
        for i in range(3, 7):
            x = nn.relu(nn.Conv(h, (3,), padding="VALID", name=f"conv{i}")(x))  # 25 -> 17
        x = pool(x)  # 17 -> 5
        x = x.reshape(x.shape[0], -1)
        message = nn.relu(nn.Dense(2 * h, name="message_fc")(x))

        d = diffs.astype(jnp.float32)
        if self.depth_change_only:
            d = d * jnp.array([1.0, 0.0, 0.0, 0.0, 0.0])
        d = nn.relu(nn.Dense(self.diff_hidden_dim, name="diff_fc1")(d))
        d = nn.relu(nn.Dense(self.diff_hidden_dim, name="diff_fc2")(d))

        z = jnp.concatenate([d, message], axis=-1)
        z = nn.relu(nn.Dense(self.hidden_dim // 2, name="fc1")(z))
        z = nn.Dense(self.hidden_dim, name="fc2")(z)
        return nn.Dense(1, name="reward")(nn.relu(z))[:, 0]


def make_model(config: RewardModelConfig) -> RewardModel:
    return RewardModel(config.char_embed_dim, config.conv_channels, config.diff_hidden_dim, config.hidden_dim,
                       config.depth_change_only)


def soft_labels(labels: jax.Array) -> jax.Array:
    """(B,) int labels -> (B, 2) targets: 0 -> (1, 0), 1 -> (0, 1), 2 -> (0.5, 0.5)."""
    p_second = jnp.where(labels == NO_PREFERENCE, 0.5, (labels == SECOND).astype(jnp.float32))
    return jnp.stack([1.0 - p_second, p_second], axis=-1)


def preference_loss(r_a: jax.Array, r_b: jax.Array, labels: jax.Array,
                    weights: jax.Array | None = None) -> jax.Array:
    """Bradley-Terry cross-entropy -(y . log_softmax([r_a, r_b])), averaged (weighted by `weights`)."""
    log_probs = jax.nn.log_softmax(jnp.stack([r_a, r_b], axis=-1), axis=-1)
    per_pair = -(soft_labels(labels) * log_probs).sum(-1)
    if weights is None:
        return per_pair.mean()
    return (weights * per_pair).sum() / jnp.maximum(weights.sum(), 1.0)


@dataclasses.dataclass
class TrainedRewardModel:
    """A trained reward model with its dataset reward statistics.

    stats: mean and std of the raw rewards over the dataset's distinct (message, change) entries,
    `quantile_levels` / `quantile_values` of the normalised rewards (the shaping threshold), held-out and
    train accuracy on decided pairs, counts, and the epochs trained.
    """

    config: RewardModelConfig
    params: Any
    stats: dict[str, Any]
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        model = make_model(self.config)
        self._apply = jax.jit(lambda p, m, d: model.apply({"params": p}, m, d))

    @property
    def mean(self) -> float:
        return float(self.stats["mean"])

    @property
    def std(self) -> float:
        return float(self.stats["std"])

    def apply(self, messages: np.ndarray, diffs: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Raw rewards (N,) float32 for messages (N, 256) and diffs (N, 5)."""
        messages, diffs = _check_inputs(messages, diffs)
        n = messages.shape[0]
        out = np.empty((n,), np.float32)
        for start in range(0, n, batch_size):
            m, d = messages[start:start + batch_size], diffs[start:start + batch_size]
            size = len(m)
            padded = min(batch_size, 1 << max(size - 1, 0).bit_length())  # few distinct shapes to compile
            if padded > size:
                m = np.concatenate([m, np.zeros((padded - size, MESSAGE_LEN), np.uint8)])
                d = np.concatenate([d, np.zeros((padded - size, DIFF_SIZE), np.float32)])
            out[start:start + size] = np.asarray(self._apply(self.params, m, d))[:size]
        return out

    def reward_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """A pure, jittable (messages, diffs) -> raw rewards over this model's parameters."""
        model, params = make_model(self.config), self.params
        return lambda messages, diffs: model.apply({"params": params}, messages, diffs)

    def normalised(self, messages: np.ndarray, diffs: np.ndarray) -> np.ndarray:
        """(raw - mean) / std, as the shaping uses it."""
        return (self.apply(messages, diffs) - self.mean) / self.std

    def threshold(self, quantile: float) -> float:
        """The normalised reward at `quantile` of the dataset (0.0: no threshold, -inf, as the reference)."""
        if not 0.0 <= quantile <= 1.0:
            raise ConfigError(f"eps_threshold_quantile must be in [0, 1], got {quantile!r}")
        if quantile == 0.0:
            return -math.inf
        return float(np.interp(quantile, self.stats["quantile_levels"], self.stats["quantile_values"]))

    def save(self, path: str) -> None:
        """Writes `path/params.msgpack` and `path/reward_model.json` (atomically, the JSON last)."""
        os.makedirs(path, exist_ok=True)
        blob = serialization.to_bytes(jax.device_get(self.params))
        _atomic_write(os.path.join(path, PARAMS_FILE), blob)
        meta = {"config": dataclasses.asdict(self.config), "stats": _jsonable(self.stats),
                "history": [_jsonable(h) for h in self.history], "params_sha256": hashlib.sha256(blob).hexdigest()}
        _atomic_write(os.path.join(path, META_FILE), json.dumps(meta, indent=1).encode())

    @classmethod
    def load(cls, path: str) -> TrainedRewardModel:
        meta_path, params_path = os.path.join(path, META_FILE), os.path.join(path, PARAMS_FILE)
        if not os.path.exists(meta_path) or not os.path.exists(params_path):
            raise UserError(f"{path}: no saved reward model ({META_FILE} and {PARAMS_FILE} expected)")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            config = RewardModelConfig(**meta["config"])
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{meta_path}: not a reward model description ({e})") from None
        with open(params_path, "rb") as f:
            blob = f.read()
        if hashlib.sha256(blob).hexdigest() != meta.get("params_sha256"):
            raise UserError(f"{params_path}: does not match {META_FILE} (partial or mixed save); retrain or restore")
        target = _abstract_params(config)
        try:
            params = serialization.from_bytes(target, blob)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{params_path}: parameters do not fit the saved config ({e})") from None
        for want, got in zip(jax.tree.leaves(target), jax.tree.leaves(params)):
            if tuple(want.shape) != tuple(np.shape(got)):
                raise UserError(f"{params_path}: parameter shapes do not fit the saved config")
        stats = dict(meta["stats"])
        for key in ("quantile_levels", "quantile_values"):
            stats[key] = np.asarray(stats[key], np.float64)
        return cls(config, jax.tree.map(jnp.asarray, params), stats, list(meta.get("history", [])))


def train_reward_model(data: Mapping[str, np.ndarray], config: RewardModelConfig | None = None,
                       log_every: int = 1,
                       should_stop: Callable[[], bool] | None = None) -> TrainedRewardModel:
    """Trains a reward model on preference pairs and computes its dataset reward statistics.

    Args:
      data: msg_a, msg_b uint8 (N, 256); diff_a, diff_b float32 (N, 5); labels int (N,) in {0, 1, 2}.
      config: sizes and training settings (None: the gin-configured `motif_reward_model`).
      log_every: epochs between progress lines.
      should_stop: checked between steps (e.g. `libs.train.rundir.stop_requested`); when it turns true,
        training ends there and the statistics are computed for the model as it is (`stats["stopped"]`).
    """
    config = config or RewardModelConfig()
    msg_a, diff_a, msg_b, diff_b, labels = _check_data(data)
    n = len(labels)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(n)
    num_holdout = round(n * config.holdout_fraction)
    if num_holdout >= n:
        raise ConfigError(f"motif_reward_model.holdout_fraction={config.holdout_fraction} leaves no training pairs")
    holdout, train = order[:num_holdout], order[num_holdout:]

    model = make_model(config)
    params = jax.jit(model.init)(jax.random.PRNGKey(config.seed), jnp.zeros((1, MESSAGE_LEN), jnp.uint8),
                        jnp.zeros((1, DIFF_SIZE), jnp.float32))["params"]
    optimizer = optax.adam(config.learning_rate)
    opt_state = optimizer.init(params)
    batch = min(config.batch_size, len(train))

    def pair_rewards(p, ma, da, mb, db):
        rewards = model.apply({"params": p}, jnp.concatenate([ma, mb]), jnp.concatenate([da, db]))
        return rewards[:ma.shape[0]], rewards[ma.shape[0]:]

    @jax.jit
    def train_step(p, state, ma, da, mb, db, y, w):
        def loss_fn(p_):
            r_a, r_b = pair_rewards(p_, ma, da, mb, db)
            return preference_loss(r_a, r_b, y, w), (r_a, r_b)

        (loss, (r_a, r_b)), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss, _correct(r_a, r_b, y, w)

    eval_rewards = jax.jit(pair_rewards)

    def accuracy(p, idx) -> float:
        """Accuracy on the decided pairs (labels 0/1) among `idx`; nan when there are none."""
        idx = idx[labels[idx] != NO_PREFERENCE]
        if len(idx) == 0:
            return float("nan")
        hits = 0
        for start in range(0, len(idx), batch):
            j = idx[start:start + batch]
            cols = [_pad(a[j], batch) for a in (msg_a, diff_a, msg_b, diff_b)]
            r_a, r_b = (np.asarray(r)[:len(j)] for r in eval_rewards(p, *cols))
            hits += int(((r_b > r_a).astype(int) == labels[j]).sum())
        return hits / len(idx)

    history: list[dict[str, float]] = []
    steps_per_epoch = math.ceil(len(train) / batch)
    stopped, epoch = False, 0
    start_time = time.perf_counter()
    logging.info("reward model: %d pairs (%d held out), %d epochs of %d steps, batch %d", n, num_holdout,
                 config.epochs, steps_per_epoch, batch)
    for epoch in range(1, config.epochs + 1):
        perm = rng.permutation(train)
        loss_sum, correct, decided = 0.0, 0.0, 0.0
        for step in range(steps_per_epoch):
            if should_stop is not None and should_stop():
                stopped = True
                break
            j = perm[step * batch:(step + 1) * batch]
            w = _pad(np.ones(len(j), np.float32), batch)
            cols = [_pad(a[j], batch) for a in (msg_a, diff_a, msg_b, diff_b, labels)]
            params, opt_state, loss, (hits, count) = train_step(params, opt_state, *cols, w)
            loss_sum += float(loss) * len(j)
            correct, decided = correct + float(hits), decided + float(count)
        if stopped:
            epoch -= 1
            break
        record = {"epoch": epoch, "loss": loss_sum / len(train),
                  "train_accuracy": correct / decided if decided else float("nan"),
                  "heldout_accuracy": accuracy(params, holdout)}
        history.append(record)
        if epoch % max(log_every, 1) == 0 or epoch == config.epochs:
            elapsed = time.perf_counter() - start_time
            logging.info("reward model: epoch %d/%d | loss %.4f | train acc %.3f | held-out acc %.3f | "
                         "%.0f pairs/s | ETA %s", epoch, config.epochs, record["loss"], record["train_accuracy"],
                         record["heldout_accuracy"], epoch * len(train) / elapsed,
                         format_duration(elapsed / epoch * (config.epochs - epoch)))

    stats = _reward_stats(TrainedRewardModel(config, params, {"mean": 0.0, "std": 1.0}), msg_a, diff_a, msg_b,
                          diff_b)
    stats.update(num_pairs=n, num_holdout=num_holdout, epochs=epoch, stopped=stopped,
                 train_accuracy=history[-1]["train_accuracy"] if history else float("nan"),
                 heldout_accuracy=accuracy(params, holdout))
    logging.info("reward model: done | held-out acc %.3f | reward mean %.4f std %.4f over %d distinct entries",
                 stats["heldout_accuracy"], stats["mean"], stats["std"], stats["num_messages"])
    return TrainedRewardModel(config, params, stats, history)


def _correct(r_a, r_b, labels, weights):
    """(correct, decided) counts: argmax of the pair's rewards vs. the label, over decided pairs."""
    decided = weights * (labels != NO_PREFERENCE)
    hits = ((r_b > r_a).astype(jnp.int32) == labels) * decided
    return hits.sum(), decided.sum()


def _reward_stats(model: TrainedRewardModel, msg_a, diff_a, msg_b, diff_b) -> dict[str, Any]:
    """Mean, std and quantiles of the rewards over the distinct (message, change) entries of the dataset
    (the reference dedupes the same way before computing its running mean and variance)."""
    messages = np.concatenate([msg_a, msg_b])
    diffs = np.concatenate([diff_a, diff_b])
    rows = np.concatenate([messages.view(np.uint8), diffs.astype(np.float32).view(np.uint8)], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    first = np.sort(first)
    rewards = model.apply(messages[first], diffs[first]).astype(np.float64)
    mean, std = float(rewards.mean()), float(rewards.std())
    std = max(std, 1e-6)  # a constant reward model would otherwise divide by zero
    values = np.quantile((rewards - mean) / std, QUANTILE_LEVELS)
    return {"mean": mean, "std": std, "num_messages": len(first),
            "quantile_levels": QUANTILE_LEVELS.copy(), "quantile_values": values}


def _check_data(data: Mapping[str, np.ndarray]):
    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise UserError(f"reward model data lacks {', '.join(missing)} (needs {', '.join(DATA_KEYS)})")
    msg_a, diff_a = _check_inputs(data["msg_a"], data["diff_a"], "msg_a", "diff_a")
    msg_b, diff_b = _check_inputs(data["msg_b"], data["diff_b"], "msg_b", "diff_b")
    labels = np.asarray(data["labels"])
    n = len(msg_a)
    if len(msg_b) != n or labels.shape != (n,):
        raise UserError(f"reward model data: msg_a, msg_b and labels disagree on the number of pairs "
                        f"({n}, {len(msg_b)}, {labels.shape})")
    if n < 2:
        raise UserError(f"reward model data: needs at least 2 pairs, got {n}")
    if not np.isin(labels, (FIRST, SECOND, NO_PREFERENCE)).all():
        raise UserError("reward model data: labels must be 0 (first preferred), 1 (second) or 2 (none)")
    return msg_a, diff_a, msg_b, diff_b, labels.astype(np.int32)


def _check_inputs(messages, diffs, msg_name: str = "messages", diff_name: str = "diffs"):
    messages, diffs = np.asarray(messages), np.asarray(diffs)
    if messages.ndim != 2 or messages.shape[1] != MESSAGE_LEN:
        raise UserError(f"{msg_name} must be (N, {MESSAGE_LEN}) message bytes, got shape {messages.shape}")
    if diffs.shape != (messages.shape[0], DIFF_SIZE):
        raise UserError(f"{diff_name} must be (N, {DIFF_SIZE}) change vectors for N={messages.shape[0]}, "
                        f"got shape {diffs.shape}")
    if messages.dtype != np.uint8:
        if messages.size and (messages.min() < 0 or messages.max() > 255):
            raise UserError(f"{msg_name} must hold bytes (0..255)")
        messages = messages.astype(np.uint8)
    return messages, diffs.astype(np.float32)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if len(a) == size:
        return a
    return np.concatenate([a, np.zeros((size - len(a),) + a.shape[1:], a.dtype)])


def _abstract_params(config: RewardModelConfig):
    model = make_model(config)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, MESSAGE_LEN), jnp.uint8),
                            jnp.zeros((1, DIFF_SIZE), jnp.float32))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(stats: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in stats.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out
