"""The MaestroMotif pipeline as phases of one run directory (gin `maestromotif.run`).

    collect   random-policy rollouts -> distinct captioned events (events.npz) and pairs to annotate (pairs.npz)
    annotate  each skill's preference over every pair: the rule-based stand-in (fast, offline) or an LLM through
              the gateway (gin LLMConfig; the embedded local model offline); LLM labels are compared with the
              stand-in's (annotation_agreement.json)
    rewards   one Motif reward model per skill (reward_models/<skill>/)
    skills    the skill program: the hand-written defaults, or an LLM-written one checked in the sandbox
              (skill_code/: versions and the journal of every attempt)
    train     the skill-conditioned PPO policy (policy/: checkpoints, metrics.jsonl, tensorboard/)
    evaluate  the descender check against a random policy, and per-task success rates (results.md/.json)

Each phase leaves its outputs in the workdir and is skipped when they are there, so a relaunch goes on where
the last one stopped (and a finished run reports its results).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any

import gin
import numpy as np
from absl import logging

from libs.agents.maestromotif import annotate as annotate_lib
from libs.agents.maestromotif import collect, evaluation, skill_code, training
from libs.agents.maestromotif import skills as skills_lib
from libs.envs.nethack.env import ACTIONS, CROP_SIZE
from libs.models.motif import RewardModelConfig, TrainedRewardModel, train_reward_model
from libs.train import rundir
from libs.train.errors import ConfigError, UserError

PHASES = ("collect", "annotate", "rewards", "skills", "train", "evaluate")
ANNOTATORS = ("rule_based", "llm")
SKILL_CODE = ("default", "llm")
STANDIN_LABEL = "rule-based stand-in annotator"


@gin.configurable("maestromotif")
def run(workdir: str, phases: Sequence[str] = PHASES, annotator: str = "rule_based", skill_code_source: str = "default",
        skills: Sequence[str] = skills_lib.SKILLS, eval_episodes: int = 100, eval_step_limit: int = 500,
        task_episodes: int = 20, task_max_steps: int = 1000, tasks: Sequence[str] = (),
        eval_seed: int = 10_000, eval_workers: int = 2) -> dict[str, Any]:
    """Runs `phases` in order in `workdir`; returns what the last one produced.

    annotator: "rule_based" (the stand-in, labelled as such everywhere its labels are used) or "llm".
    skill_code_source: "default" (hand-written, run in process) or "llm" (generated, checked and run in the sandbox).
    skills: the skills to annotate and train reward models for.
    eval_*: the descender check (episodes per method, env steps per episode, seed, worker processes);
    task_*: the task table.
    """
    for name, value, allowed in (("annotator", annotator, ANNOTATORS), ("skill_code_source", skill_code_source,
                                                                         SKILL_CODE)):
        if value not in allowed:
            raise ConfigError(f"maestromotif.{name} {value!r}: use one of {allowed}")
    unknown = [p for p in phases if p not in PHASES] + [s for s in skills if s not in skills_lib.SKILLS]
    if unknown:
        raise ConfigError(f"maestromotif: unknown phase(s)/skill(s) {unknown}; phases are {PHASES}, skills "
                          f"{skills_lib.SKILLS}")
    result: dict[str, Any] = {"status": "complete"}
    for phase in PHASES:
        if phase not in phases:
            continue
        if rundir.stop_requested():
            return {"status": "incomplete", "stopped_before": phase}
        logging.info("maestromotif: phase %s", phase)
        if phase == "collect":
            pool, finished = collect.collect_events(workdir, collect.CollectConfig())
            if not finished:
                return {"status": "incomplete", "phase": "collect", "events": len(pool)}
            collect.draw_pairs(workdir, pool, collect.CollectConfig())
        elif phase == "annotate":
            if not _annotate(workdir, annotator, skills):
                return {"status": "incomplete", "phase": "annotate"}
        elif phase == "rewards":
            _reward_models(workdir, annotator, skills)
        elif phase == "skills":
            _skill_program(workdir, skill_code_source)
        elif phase == "train":
            missing = [s for s in skills if not os.path.exists(os.path.join(_model_dir(workdir, annotator, s),
                                                                            "reward_model.json"))]
            if missing:
                raise ConfigError(f"no {annotator} reward model for {missing} in {workdir}/reward_models: run the "
                                  "phases collect, annotate and rewards first")
            models = {s: TrainedRewardModel.load(_model_dir(workdir, annotator, s)) for s in skills}
            program, sandboxed = _current_program(workdir, skill_code_source)
            runner = training.skill_runner(training.SkillTrainingConfig().only_skill, program, sandboxed)
            result = training.train_skills(os.path.join(workdir, "policy"), models, runner=runner)
            if result["status"] != "complete":
                return result
        elif phase == "evaluate":
            result = _evaluate(workdir, annotator, eval_episodes, eval_step_limit, task_episodes, task_max_steps,
                               tasks, eval_seed, skill_code_source, eval_workers)
    return result


# --- annotate / rewards ---------------------------------------------------------------------------------------

def _labels_path(workdir: str, annotator: str, skill: str) -> str:
    return os.path.join(workdir, "annotations", f"{skill}.{annotator}.jsonl")


def _pairs(workdir: str) -> tuple[collect.EventPool, np.ndarray]:
    path = os.path.join(workdir, collect.EVENTS_FILE)
    if not os.path.exists(path) or not os.path.exists(os.path.join(workdir, collect.PAIRS_FILE)):
        raise ConfigError(f"no collected pairs in {workdir}: run phase 'collect' first")
    pool, _ = collect.EventPool.load(path)
    return pool, collect.draw_pairs(workdir, pool, collect.CollectConfig())


def rule_based_labels(pool: collect.EventPool, pairs: np.ndarray, skill: str) -> np.ndarray:
    """The stand-in's labels (0 first, 1 second, 2 none) for every pair."""
    return np.asarray([annotate_lib.rule_based_preference(skill, pool.messages[a], pool.diffs[a], pool.messages[b],
                                                          pool.diffs[b]) for a, b in pairs], np.int32)


def _annotate(workdir: str, annotator: str, skills: Sequence[str]) -> bool:
    pool, pairs = _pairs(workdir)
    os.makedirs(os.path.join(workdir, "annotations"), exist_ok=True)
    agreement = {}
    for skill in skills:
        path = _labels_path(workdir, annotator, skill)
        if annotator == "rule_based":
            if not os.path.exists(path):
                labels = rule_based_labels(pool, pairs, skill)
                tmp = path + ".tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    for i, label in enumerate(labels.tolist()):
                        f.write(json.dumps({"index": i, "skill": skill, "label": label,
                                            "annotator": STANDIN_LABEL}) + "\n")
                os.replace(tmp, path)
            continue
        from libs.llm.gateway import Gateway  # pylint: disable=import-outside-toplevel  (litellm: seconds)

        gateway = Gateway.for_run(workdir)
        captions = [(pool.caption(int(a)), pool.caption(int(b))) for a, b in pairs]
        labels = asyncio.run(annotate_lib.annotate(gateway, skill, captions, path, should_stop=rundir.stop_requested))
        if len(labels) < len(pairs):
            return False
        agreement[skill] = annotate_lib.agreement(labels, rule_based_labels(pool, pairs, skill).tolist())
        logging.info("annotate: %s agreement with the %s: %.3f (kappa %.3f)", skill, STANDIN_LABEL,
                     agreement[skill]["agreement"], agreement[skill]["cohen_kappa"])
    if agreement:
        with open(os.path.join(workdir, "annotation_agreement.json"), "w", encoding="utf-8") as f:
            json.dump(agreement, f, indent=1)
    return True


def _read_labels(path: str, n: int) -> np.ndarray:
    records = rundir.read_jsonl(path)
    labels = np.full(n, 2, np.int32)
    seen = 0
    for record in records:
        labels[int(record["index"])] = int(record["label"])
        seen += 1
    if seen < n:
        raise ConfigError(f"{path}: {seen} of {n} pairs annotated; rerun phase 'annotate'")
    return labels


def _model_dir(workdir: str, annotator: str, skill: str) -> str:
    return os.path.join(workdir, "reward_models", f"{skill}.{annotator}")


def _reward_models(workdir: str, annotator: str, skills: Sequence[str]) -> None:
    pool, pairs = _pairs(workdir)
    messages, diffs = np.stack(pool.messages), np.stack(pool.diffs)
    for skill in skills:
        out = _model_dir(workdir, annotator, skill)
        if os.path.exists(os.path.join(out, "reward_model.json")):
            continue
        labels = _read_labels(_labels_path(workdir, annotator, skill), len(pairs))
        logging.info("rewards: %s from %d pairs (%s labels: %s)", skill, len(pairs),
                     STANDIN_LABEL if annotator == "rule_based" else "LLM", np.bincount(labels, minlength=3).tolist())
        data = {"msg_a": messages[pairs[:, 0]], "diff_a": diffs[pairs[:, 0]], "msg_b": messages[pairs[:, 1]],
                "diff_b": diffs[pairs[:, 1]], "labels": labels}
        model = train_reward_model(data, RewardModelConfig(), should_stop=rundir.stop_requested)
        if model.stats.get("stopped"):
            raise UserError("reward-model training interrupted")  # not saved: a rerun trains it again
        model.save(out)


# --- skill code ----------------------------------------------------------------------------------------------

def _skill_program(workdir: str, source: str) -> None:
    if source == "default":
        return
    from libs.llm.gateway import Gateway  # pylint: disable=import-outside-toplevel
    from libs.sandbox import Sandbox  # pylint: disable=import-outside-toplevel

    store = skill_code.SkillCodeStore(os.path.join(workdir, "skill_code"))
    if store.current().version > 0:
        return
    result = asyncio.run(skill_code.generate(Gateway.for_run(workdir), store, Sandbox()))
    logging.info("skills: LLM-written program %s (%s)", "accepted" if result.ok else "rejected; the defaults stay",
                 result.reason)


def _current_program(workdir: str, source: str) -> tuple[str | None, bool]:
    if source == "default":
        return None, False
    current = skill_code.SkillCodeStore(os.path.join(workdir, "skill_code")).current()
    return current.source, current.version > 0


# --- evaluate ---------------------------------------------------------------------------------------------------

def _evaluate(workdir: str, annotator: str, episodes: int, step_limit: int, task_episodes: int, task_max_steps: int,
              tasks: Sequence[str], seed: int, skill_code_source: str, workers: int) -> dict[str, Any]:
    network, params = training.load_policy(os.path.join(workdir, "policy"), len(ACTIONS), CROP_SIZE)
    def learned(chunk: int) -> evaluation.Policy:
        return evaluation.learned_policy(network, params, seed + chunk)

    def rand(chunk: int) -> evaluation.Policy:
        return evaluation.random_policy(len(ACTIONS), seed + chunk)

    results: dict[str, Any] = {"annotator": STANDIN_LABEL if annotator == "rule_based" else "llm",
                               "step_limit": step_limit}
    for name, factory in (("descender", learned), ("random", rand)):
        rate = evaluation.descender_rate(factory, episodes, step_limit, num_envs=max(50, 8 * workers),
                                         num_workers=workers, seed=seed)
        if rate is None:
            return {"status": "incomplete", "phase": "evaluate"}
        results[f"descender_check/{name}"] = rate.__dict__
        logging.info("evaluate: deeper level within %d steps, %s policy: %s", step_limit, name, rate.text())
    table = ""
    if tasks:
        if skill_code_source == "llm":
            raise ConfigError("maestromotif: task policies written by an LLM are not wired up yet; evaluate tasks "
                              "with skill_code_source = 'default'")
        rows = {}
        for name, factory in (("MaestroMotif (this run)", learned), ("random policy", rand)):
            rates = evaluation.task_rates(factory, tasks, skills_lib.default_program_source, task_episodes,
                                          task_max_steps, num_envs=max(25, 4 * workers), num_workers=workers,
                                          seed=seed + 50_000)
            if any(r is None for r in rates.values()):
                return {"status": "incomplete", "phase": "evaluate"}
            rows[name] = rates
            results[f"tasks/{name}"] = {t: r.__dict__ for t, r in rates.items()}
        table = evaluation.results_table(rows, tasks)
    _write_results(workdir, results, table, annotator, episodes, step_limit, task_max_steps)
    return {"status": "complete", **{k: v["rate"] for k, v in results.items() if k.startswith("descender_check/")}}


def _write_results(workdir: str, results: dict, table: str, annotator: str, episodes: int, step_limit: int,
                   task_max_steps: int) -> None:
    with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    learned, rand = (evaluation.Rate(**results[f"descender_check/{k}"]) for k in ("descender", "random"))
    lines = [
        "# MaestroMotif results",
        "",
        f"Rewards from: {results['annotator']}.",
        "",
        (f"Descender check: {episodes} episodes per policy from a fresh game; success = a deeper dungeon level "
         f"within {step_limit} env steps (Wilson 95% intervals)."),
        "",
        "| policy | success |",
        "|---|---|",
        f"| descender skill (trained) | {learned.text()} |",
        f"| random actions | {rand.text()} |",
    ]
    if table:
        lines += ["", f"Tasks (each task's policy over skills, up to {task_max_steps} env steps per episode):", "",
                  table]
    with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
