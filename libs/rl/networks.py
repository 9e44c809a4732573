"""Actor-critic networks for PPO: `(params, obs) -> (logits (B, A), value (B,))` through `module.apply`.

`MLPActorCritic` is purejaxrl's CartPole network (separate 64-64 tanh towers, orthogonal init).
`NetHackActorCritic` reads a skill-conditioned NetHack observation: a 9x9 glyph crop around the hero,
the 27 bottom-line stats and the active skill's id (MaestroMotif appends the skill to the stats).
"""

from __future__ import annotations

from collections.abc import Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen.initializers import constant, orthogonal

# nle.nethack.MAX_GLYPH (nle 1.3.0; tests check it against nle). Glyph ids are < MAX_GLYPH; the crop
# pads outside the map with MAX_GLYPH itself, so the embedding has MAX_GLYPH + 1 rows.
MAX_GLYPH = 5976
PAD_GLYPH = MAX_GLYPH
NUM_CONDITION_BITS = 13  # nle.nethack.BL_MASK_BITS: stone, slime, strangled, ..., riding

# nle.nethack.NLE_BL_* indices of the 27 bottom-line stats.
BL_X, BL_Y, BL_STR25, BL_STR125, BL_DEX, BL_CON, BL_INT, BL_WIS, BL_CHA = range(9)
BL_SCORE, BL_HP, BL_HPMAX, BL_DEPTH, BL_GOLD, BL_ENE, BL_ENEMAX, BL_AC, BL_HD = range(9, 18)
BL_XP, BL_EXP, BL_TIME, BL_HUNGER, BL_CAP, BL_DNUM, BL_DLEVEL, BL_CONDITION, BL_ALIGN = range(18, 27)


def normalise_blstats(blstats: jax.Array) -> jax.Array:
    """(B, 27) raw bottom-line stats -> (B, 39) features of order 1 by a fixed scaling (no statistics)."""
    b = blstats.astype(jnp.float32)
    log = lambda i, scale: jnp.log1p(jnp.maximum(b[:, i], 0.0)) / scale
    ratio = lambda i, j: b[:, i] / jnp.maximum(b[:, j], 1.0)
    features = [
        b[:, BL_X] / 79.0, b[:, BL_Y] / 21.0,
        *(b[:, i] / 25.0 for i in (BL_STR25, BL_DEX, BL_CON, BL_INT, BL_WIS, BL_CHA)),
        b[:, BL_STR125] / 125.0,
        log(BL_SCORE, 10.0),
        ratio(BL_HP, BL_HPMAX), log(BL_HPMAX, 5.0),
        b[:, BL_DEPTH] / 50.0,
        log(BL_GOLD, 10.0),
        ratio(BL_ENE, BL_ENEMAX), log(BL_ENEMAX, 5.0),
        b[:, BL_AC] / 10.0,
        b[:, BL_HD] / 30.0, b[:, BL_XP] / 30.0, log(BL_EXP, 10.0),
        log(BL_TIME, 10.0),
        b[:, BL_HUNGER] / 6.0, b[:, BL_CAP] / 5.0,
        b[:, BL_DNUM] / 8.0, b[:, BL_DLEVEL] / 50.0,
        b[:, BL_ALIGN],
    ]
    condition = blstats[:, BL_CONDITION].astype(jnp.int32)
    bits = (condition[:, None] >> jnp.arange(NUM_CONDITION_BITS)) & 1
    return jnp.concatenate([jnp.stack(features, axis=-1), bits.astype(jnp.float32)], axis=-1)


def patches3x3(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, H-2, W-2, 9C): every 3x3 neighbourhood (valid padding) as one feature vector."""
    h, w = x.shape[1] - 2, x.shape[2] - 2
    return jnp.concatenate([x[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=-1)


class PatchConv3x3(nn.Module):
    """A 3x3 valid convolution as patches + Dense.

    Same function as nn.Conv, but XLA:CPU runs a convolution inside a loop (the PPO update's scan over
    minibatches) about 10x slower than outside one; the matmul form has no such cliff.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.features)(patches3x3(x))


class MLPActorCritic(nn.Module):
    """purejaxrl's ActorCritic: separate actor and critic MLPs on a flat observation."""

    num_actions: int
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        act = nn.tanh if self.activation == "tanh" else nn.relu
        x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
        actor, critic = x, x
        for width in self.hidden:
            actor = act(nn.Dense(width, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(actor))
            critic = act(nn.Dense(width, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(critic))
        logits = nn.Dense(self.num_actions, kernel_init=orthogonal(0.01), bias_init=constant(0.0))(actor)
        value = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))(critic)
        return logits, value[:, 0]


class NetHackActorCritic(nn.Module):
    """A small skill-conditioned actor-critic for NetHack, sized for CPU inference.

    obs: {"crop": int (B, 9, 9) glyph ids (PAD_GLYPH outside the map), "blstats": (B, 27),
    "skill": int (B,), optional "targets": (B, T) landmark offsets (libs/envs/nethack/env.targets_into)}.
    Glyph embeddings -> `conv_layers` 3x3 convolutions (none by default) -> dense; normalised stats with the
    skill one-hot (and the targets) appended -> dense; both -> a shared dense layer -> policy
    logits and a value.
    """

    num_actions: int
    num_skills: int
    glyph_dim: int = 16
    conv_layers: int = 0  # 3x3 convolutions before the dense layer; 0 keeps CPU inference at B=64 near 0.5 ms
    conv_channels: int = 16
    hidden: int = 128

    @nn.compact
    def __call__(self, obs: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        glyphs = jnp.clip(obs["crop"].astype(jnp.int32), 0, PAD_GLYPH)
        x = nn.Embed(MAX_GLYPH + 1, self.glyph_dim, name="glyph_embed")(glyphs)  # (B, 9, 9, E)
        for _ in range(self.conv_layers):
            x = nn.relu(PatchConv3x3(self.conv_channels)(x))
        crop = nn.relu(nn.Dense(self.hidden, name="crop_dense")(x.reshape(x.shape[0], -1)))

        skill = jax.nn.one_hot(obs["skill"].astype(jnp.int32), self.num_skills)
        parts = [normalise_blstats(obs["blstats"]), skill]
        if "targets" in obs:
            parts.append(obs["targets"].astype(jnp.float32))
        stats = jnp.concatenate(parts, axis=-1)
        stats = nn.relu(nn.Dense(self.hidden // 2, name="stats_dense")(stats))

        torso = nn.relu(nn.Dense(self.hidden, kernel_init=orthogonal(np.sqrt(2)), name="torso")(
            jnp.concatenate([crop, stats], axis=-1)))
        logits = nn.Dense(self.num_actions, kernel_init=orthogonal(0.01), name="policy")(torso)
        value = nn.Dense(1, kernel_init=orthogonal(1.0), name="value")(torso)
        return logits, value[:, 0]


@gin.configurable("nethack_network", denylist=["num_actions", "num_skills"])
def make_nethack_network(num_actions: int, num_skills: int, glyph_dim: int = 16, conv_layers: int = 0,
                         conv_channels: int = 16, hidden: int = 128) -> NetHackActorCritic:
    """The NetHack actor-critic with gin-configurable sizes."""
    return NetHackActorCritic(num_actions, num_skills, glyph_dim=glyph_dim, conv_layers=conv_layers,
                              conv_channels=conv_channels, hidden=hidden)


def nethack_obs_example(batch: int = 1) -> dict[str, np.ndarray]:
    """Zero observations of the shape NetHackActorCritic reads (for init and abstract shapes)."""
    return {"crop": np.full((batch, 9, 9), PAD_GLYPH, np.int32), "blstats": np.zeros((batch, 27), np.float32),
            "skill": np.zeros((batch,), np.int32), "targets": np.zeros((batch, 16), np.float32)}
