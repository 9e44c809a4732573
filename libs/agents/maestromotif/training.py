"""MaestroMotif's RL phase: one skill-conditioned PPO policy, each skill rewarded by its own Motif model.

The host loop steps the NetHack worker processes (`libs.envs.nethack.vector`) with actions from one jitted,
batched policy call per step, lets the skill program (`skills.SkillScheduler`: initiation, termination and the
policy over skills) pick each env's active skill, and after `num_steps` steps rewards every transition with the
reward model of the skill that took it:

    r_t = llm_coef * 1[r_hat > eps_skill] * r_hat / N(event)^beta + extrinsic_coef * score_change

where r_hat is the normalised model reward of the event the transition caused (the message shown after it and
the change vector; `collect` pools the same events), eps_skill the model's quantile at that skill's
`eps_threshold_quantile` and N the event's count so far in the episode (the reference counts messages; a
descent's message is usually empty, so a count of the empty message would silence the descender's reward).
Transitions that end an episode get no model reward (the next observation belongs to the next game). Then one
PPO update (`libs.rl.ppo`).
Checkpoints every `checkpoint_every` updates and at a stop; a relaunch resumes from the latest (games in flight
are not saved: they start over), and the env-step budget counts across relaunches.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import gin
import jax
import numpy as np
from absl import logging

from libs.agents.maestromotif import skills as skills_lib
from libs.envs.nethack import captions
from libs.envs.nethack.detectors import buc_identifies, price_identifies
from libs.envs.nethack.vector import Batch, VectorEnv
from libs.models.motif import TrainedRewardModel
from libs.rl import networks, ppo
from libs.rl.intrinsic import MessageCounter, shaped_reward
from libs.rl.rollout import RolloutBuffer
from libs.train import rundir, sharding
from libs.train.checkpoint import Checkpointer
from libs.train.errors import ConfigError
from libs.train.metrics import MetricWriter

SKILLS = skills_lib.SKILLS
POLICY_KEYS = ("crop", "blstats", "targets")  # of the env's policy obs; the skill id is added


@gin.configurable("maestromotif_train")
@dataclasses.dataclass(frozen=True)
class SkillTrainingConfig:
    """The RL phase's settings (PPO's own are gin `ppo`; the network's `nethack_network`).

    only_skill: train one skill alone (every env always runs it; its termination still restarts it), e.g.
      "descender" for the CPU-scale check; None: the skill program's policy over skills picks.
    eps_threshold_quantile: per skill in SKILLS order (the reference's [0.95, 0.85, 0.85, 0.85, 0.85]).
    """

    num_workers: int = 2
    llm_coef: float = 0.1
    extrinsic_coef: float = 0.0
    beta: float = 3.0
    eps_threshold_quantile: tuple[float, ...] = (0.95, 0.85, 0.85, 0.85, 0.85)
    only_skill: str | None = None
    checkpoint_every: int = 20  # updates
    log_every: int = 5  # updates
    seed: int = 0

    def __post_init__(self):
        if len(self.eps_threshold_quantile) != len(SKILLS):
            raise ConfigError(f"maestromotif_train.eps_threshold_quantile needs one value per skill {SKILLS}, got "
                              f"{self.eps_threshold_quantile}")
        if self.only_skill is not None and self.only_skill not in SKILLS:
            raise ConfigError(f"maestromotif_train.only_skill {self.only_skill!r}: not one of {SKILLS}")


class FixedSkillRunner(skills_lib.InProcessRunner):
    """The default program with its policy over skills replaced by one skill (`only_skill`)."""

    def __init__(self, skill: str):
        super().__init__(skills_lib.default_program_source())
        self.skill = skill

    def select_batch(self, ctxs: Sequence[dict], memories: Sequence[dict]) -> list[tuple[str, dict]]:
        return [(self.skill, memory) for memory in memories]


def skill_runner(only_skill: str | None, program_source: str | None = None,
                 sandboxed: bool = False) -> skills_lib.SkillRunner:
    """The runner that picks skills: one fixed skill, an accepted LLM-written program (sandboxed), or the
    hand-written defaults (in process)."""
    if only_skill is not None:
        return FixedSkillRunner(only_skill)
    if program_source is not None and sandboxed:
        return skills_lib.SandboxedRunner(program_source)
    return skills_lib.InProcessRunner(program_source or skills_lib.default_program_source())


def policy_inputs(obs: dict[str, np.ndarray], skill_ids: np.ndarray) -> dict[str, np.ndarray]:
    return {**{k: obs[k] for k in POLICY_KEYS}, "skill": skill_ids.astype(np.int32)}


class SkillStats:
    """Per-skill episode bookkeeping: how often a run of the skill reached its goal, and how long it ran."""

    def __init__(self, num_envs: int):
        self.started: list[tuple[str, dict] | None] = [None] * num_envs
        self.flags = [False] * num_envs  # a shop transaction / altar identification seen during the run
        self.runs: dict[str, list[tuple[bool, int]]] = {s: [] for s in SKILLS}

    def observe(self, i: int, skill: str, ctx: dict) -> None:
        message = ctx.get("message", "")
        if skill == "merchant" and (price_identifies(message) or "You sold" in message or "sells" in message):
            self.flags[i] = True
        if skill == "worshipper" and buc_identifies(message):
            self.flags[i] = True

    def end(self, i: int, ctx: dict) -> None:
        if self.started[i] is None:
            return
        skill, start = self.started[i]
        steps = ctx["step"] - start["step"]
        if skill == "descender":
            success = ctx["depth"] > start["depth"]
        elif skill == "ascender":
            success = ctx["depth"] < start["depth"]
        elif skill == "discoverer":
            success = ctx["depth"] == start["depth"]
        else:
            success = self.flags[i]
        self.runs[skill].append((bool(success), int(steps)))
        self.started[i], self.flags[i] = None, False

    def start(self, i: int, skill: str, ctx: dict) -> None:
        self.started[i], self.flags[i] = (skill, ctx), False

    def summary(self) -> dict[str, float]:
        out = {}
        for skill, runs in self.runs.items():
            if runs:
                out[f"{skill}/skill_success"] = float(np.mean([s for s, _ in runs]))
                out[f"{skill}/skill_duration"] = float(np.mean([d for _, d in runs]))
                out[f"{skill}/skill_runs"] = float(len(runs))
        self.runs = {s: [] for s in SKILLS}
        return out


class IntrinsicRewards:
    """Each skill's reward model over a rollout's events, cached per distinct (message, change) event."""

    def __init__(self, models: dict[str, TrainedRewardModel], config: SkillTrainingConfig):
        self.models = models
        self.config = config
        self.thresholds = {s: models[s].threshold(q) for s, q in zip(SKILLS, config.eps_threshold_quantile)
                           if s in models}
        self._cache: dict[str, dict[bytes, float]] = {s: {} for s in models}

    def raw(self, skill: str, messages: np.ndarray, diffs: np.ndarray) -> np.ndarray:
        """The skill's model reward for events (M, 256) + (M, 5); new events are scored in one batch."""
        cache = self._cache[skill]
        keys = [m.tobytes() + d.tobytes() for m, d in zip(messages, diffs)]
        first = {}
        for row, k in enumerate(keys):
            if k not in cache:
                first.setdefault(k, row)
        if first:
            rows = list(first.values())
            for k, r in zip(first, self.models[skill].apply(messages[rows], diffs[rows])):
                cache[k] = float(r)
        return np.asarray([cache[k] for k in keys], np.float32)

    def shape(self, skill_ids: np.ndarray, messages: np.ndarray, diffs: np.ndarray, valid: np.ndarray,
              counts: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """(T, N) rewards and per-skill means of the raw model reward."""
        rewards = self.config.extrinsic_coef * score.astype(np.float32)
        stats = {}
        for k, skill in enumerate(SKILLS):
            mask = valid & (skill_ids == k)
            if skill not in self.models or not mask.any():
                continue
            model = self.models[skill]
            raw = self.raw(skill, messages[mask], diffs[mask])
            rewards[mask] += shaped_reward(raw, model.mean, model.std, self.thresholds[skill], counts[mask],
                                           self.config.beta, self.config.llm_coef)
            stats[f"{skill}/rm_reward"] = float(raw.mean())
            stats[f"{skill}/shaped_reward"] = float(rewards[mask].mean())
        return rewards, stats


def make_network(num_actions: int) -> Any:
    return networks.make_nethack_network(num_actions=num_actions, num_skills=len(SKILLS))


def obs_example(num_envs: int, crop_size: int) -> dict[str, np.ndarray]:
    example = networks.nethack_obs_example(num_envs)
    example["crop"] = np.full((num_envs, crop_size, crop_size), networks.PAD_GLYPH, np.int16)
    return example


def train_skills(workdir: str, reward_models: dict[str, TrainedRewardModel], config: SkillTrainingConfig | None = None,
                 ppo_config: ppo.PPOConfig | None = None, runner: skills_lib.SkillRunner | None = None,
                 should_stop: Callable[[], bool] = rundir.stop_requested) -> dict[str, Any]:
    """Trains the skill policy in `workdir` (checkpoints/, metrics.jsonl, tensorboard/); returns a summary."""
    config = config or SkillTrainingConfig()
    ppo_config = ppo_config or ppo.PPOConfig()
    missing = [s for s in ([config.only_skill] if config.only_skill else SKILLS) if s not in reward_models]
    if missing:
        raise ConfigError(f"no reward model for skill(s) {missing}: train them first (phase 'rewards')")
    num_envs, num_steps = ppo_config.num_envs, ppo_config.num_steps
    runner = runner or skill_runner(config.only_skill)
    mesh = sharding.make_mesh()
    with VectorEnv(num_envs, config.num_workers, seed=config.seed) as venv:
        network = make_network(venv.num_actions)
        example = obs_example(num_envs, venv.settings.crop_size)
        optimizer = ppo.make_optimizer(ppo_config)
        ckpt = Checkpointer(workdir, every_steps=config.checkpoint_every, keep=2)
        restored = ckpt.restore_latest(ppo.abstract_state(network, example, optimizer, mesh))
        if restored is None:
            update_index, env_steps = 0, 0
            state = ppo.create_state(network, example, optimizer, config.seed, mesh)
        else:
            update_index, state, meta = restored
            env_steps = int(meta["env_steps"])
            logging.info("train: resuming at update %d (%d env steps)", update_index, env_steps)
        update = ppo.make_update(network.apply, optimizer, ppo_config, mesh)
        act = ppo.policy_step(network.apply)
        rewards = IntrinsicRewards(reward_models, config)
        writer = MetricWriter(workdir)
        loop = _Loop(venv, runner, act, rewards, ppo_config, example, config.seed + update_index)
        total_updates = ppo_config.num_updates
        start = time.perf_counter()
        steps_at_start = env_steps
        warm: tuple[float, int] | None = None  # (time, env steps) after the first update (its compile excluded)
        try:
            while update_index < total_updates and not should_stop():
                batch_np, stats = loop.rollout(state["params"], should_stop)
                if batch_np is None:  # stopped mid-rollout
                    break
                key = jax.random.fold_in(jax.random.key(config.seed), update_index)
                state, metrics = update(state, batch_np, key)
                update_index += 1
                env_steps += num_envs * num_steps
                if warm is None:
                    jax.block_until_ready(state)
                    warm = (time.perf_counter(), env_steps)
                if update_index % config.log_every == 0 or update_index == total_updates:
                    rate = (env_steps - steps_at_start) / (time.perf_counter() - start)
                    scalars = {**{k: float(v) for k, v in jax.device_get(metrics).items()}, **stats,
                               **loop.skill_stats.summary(), **loop.episode_summary(), "env_steps": env_steps,
                               "env_steps_per_s": rate}
                    writer.write(update_index, "train", scalars)
                    logging.info("train: update %d/%d | %d env steps | %.0f steps/s | %s", update_index,
                                 total_updates, env_steps, rate, _headline(scalars))
                if ckpt.should_save(update_index):
                    ckpt.save(update_index, state, {"env_steps": env_steps})
            ckpt.save(update_index, state, {"env_steps": env_steps}, force=True)
        finally:
            ckpt.close()
            writer.close()
            runner.close()
    done = update_index >= total_updates
    result = {"status": "complete" if done else "incomplete", "updates": update_index, "env_steps": env_steps}
    if warm is not None and env_steps > warm[1]:
        result["env_steps_per_s"] = (env_steps - warm[1]) / (time.perf_counter() - warm[0])
    return result


def load_policy(workdir: str, num_actions: int, crop_size: int, ppo_config: ppo.PPOConfig | None = None) -> Any:
    """The latest checkpointed policy parameters of a training run in `workdir`."""
    ppo_config = ppo_config or ppo.PPOConfig()
    network = make_network(num_actions)
    example = obs_example(1, crop_size)
    ckpt = Checkpointer(workdir, keep=2)
    try:
        restored = ckpt.restore_latest(ppo.abstract_state(network, example, ppo.make_optimizer(ppo_config)))
    finally:
        ckpt.close()
    if restored is None:
        raise ConfigError(f"no skill-policy checkpoint in {os.path.join(workdir, 'checkpoints')}: run phase 'train'")
    return network, restored[1]["params"]


def _headline(scalars: dict[str, float]) -> str:
    keys = [k for k in scalars if k.endswith("/skill_success") or k in ("episode_score", "policy_loss", "entropy")]
    return " ".join(f"{k} {scalars[k]:.3g}" for k in keys)


class _Loop:
    """The host side of the rollouts: envs, skills, message counts and the rollout buffer."""

    def __init__(self, venv: VectorEnv, runner, act, rewards: IntrinsicRewards, ppo_config: ppo.PPOConfig, example,
                 seed: int):
        self.venv, self.act, self.rewards = venv, act, rewards
        self.num_steps, self.gamma, self.lam = ppo_config.num_steps, ppo_config.gamma, ppo_config.gae_lambda
        n, num_steps = venv.num_envs, self.num_steps
        self.scheduler = skills_lib.SkillScheduler(runner, n, seed)
        self.skill_stats = SkillStats(n)
        self.counter = MessageCounter(n)
        self.buffer = RolloutBuffer(num_steps, n, example)
        self.messages = np.zeros((num_steps, n, 256), np.uint8)
        self.diffs = np.zeros((num_steps, n, 5), np.float32)
        self.valid = np.zeros((num_steps, n), bool)
        self.counts = np.ones((num_steps, n), np.float32)
        self.score = np.zeros((num_steps, n), np.float32)
        self.skill_ids = np.zeros((num_steps, n), np.int32)
        self.key = jax.random.key(seed)
        self.episodes: list[Any] = []
        self.batch: Batch = venv.reset()
        self._skills(self.batch, np.ones(n, bool))

    def _skills(self, batch: Batch, starts: np.ndarray) -> None:
        names, changed = self.scheduler.update(batch.contexts, starts.tolist())
        for i, (name, change) in enumerate(zip(names, changed)):
            if change:
                if not starts[i]:
                    self.skill_stats.end(i, batch.contexts[i])
                self.skill_stats.start(i, name, batch.contexts[i])
            else:
                self.skill_stats.observe(i, name, batch.contexts[i])
        self.current = np.asarray([SKILLS.index(s) for s in names], np.int32)

    def rollout(self, params, should_stop: Callable[[], bool]) -> tuple[dict[str, Any] | None, dict[str, float]]:
        for t in range(self.num_steps):
            if should_stop():
                return None, {}
            obs = policy_inputs(self.batch.obs, self.current)
            self.key, sub = jax.random.split(self.key)
            actions, logprobs, values = jax.device_get(self.act(params, obs, sub))
            prev = self.batch
            self.batch = self.venv.step(np.asarray(actions))
            done = self.batch.done
            for record in self.batch.episodes:  # an ended episode ends its skill run where the game ended
                self.skill_stats.end(record.env_index, record.final_context)
                self.episodes.append(record)
            self.messages[t] = self.batch.obs["message"]
            self.diffs[t] = captions.diffstats(prev.obs["blstats"], self.batch.obs["blstats"])
            self.valid[t] = ~done
            # Counted per event (message and change vector), not per message: a descent's message is often empty,
            # and the empty message's episodic count would zero its reward.
            events = np.concatenate([self.messages[t], self.diffs[t].view(np.uint8)], axis=1)
            self.counts[t] = self.counter.update(events, done)
            self.score[t] = self.batch.reward
            self.skill_ids[t] = self.current
            self.buffer.add(t, obs, actions, logprobs, values, np.zeros(len(done), np.float32), done)
            self._skills(self.batch, done)
        rewards, stats = self.rewards.shape(self.skill_ids, self.messages, self.diffs, self.valid, self.counts,
                                            self.score)
        self.buffer.rewards[...] = rewards
        obs = policy_inputs(self.batch.obs, self.current)
        self.key, sub = jax.random.split(self.key)
        _, _, last_value = jax.device_get(self.act(params, obs, sub))
        return self.buffer.finish(last_value, self.gamma, self.lam), stats

    def episode_summary(self) -> dict[str, float]:
        done = [r for r in self.episodes if not r.dropped]
        out = {"episodes": float(len(done)), "dropped_episodes": float(len(self.episodes) - len(done))}
        if done:
            out["episode_score"] = float(np.mean([r.episode_return for r in done]))
            out["episode_length"] = float(np.mean([r.length for r in done]))
            out["episode_max_depth"] = float(np.mean([r.final_context.get("depth", 1) for r in done]))
        self.episodes = []
        return out
