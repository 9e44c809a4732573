"""The strategic-games bias study: respondents x games x configurations x conditions x samples -> bias measures.

Respondents are a model (through the LLM gateway; `llm = True`) and / or rule-based synthetic players with a known
injected bias (`standins`, labelled as stand-ins everywhere). Each answer is appended to `samples.jsonl` as it
comes, so a rerun skips it (and the gateway's cache makes a repeated call free); SIGTERM / Ctrl-C stop after the
calls in flight. The run ends with `results.md` (the study's table: aligned, misaligned and drop per bias, per
respondent and game, for each condition; the injected vs recovered bias of each stand-in), `results.json`, and
plots in `plots/`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import time
from collections.abc import Sequence
from typing import Annotated, Any

import gin
from absl import logging

from libs.agents.strategic import prompts
from libs.agents.strategic.players import SyntheticPlayer
from libs.envs import matrix_games
from libs.evals import game_biases
from libs.train import rundir
from libs.train.errors import ConfigError
from libs.train.launch import POSITIVE
from libs.train.metrics import format_duration


@gin.configurable("strategic_games", denylist=["workdir"])
def run(
    workdir: str,
    games: Sequence[str] = ("prisoners_dilemma", "stag_hunt"),
    game_files: Sequence[str] = (),
    labels: Sequence[str] = ("semantic",),
    cot: Sequence[bool] = (False,),
    answer_formats: Sequence[str] = ("free",),
    samples: Annotated[int, POSITIVE] = 10,
    llm: bool = False,
    standins: Sequence[SyntheticPlayer] = (),
    in_flight: Annotated[int, POSITIVE] = 16,
    confidence: float = 0.95,
    n_boot: Annotated[int, POSITIVE] = 2000,
    prompts_dir: str = prompts.PROMPTS_DIR,
) -> dict[str, Any]:
    """Asks every respondent every configuration under every condition `samples` times, then measures the biases.

    Args:
      workdir: the run directory (samples.jsonl, results.md, results.json, plots/, llm_cache.sqlite).
      games: bundled games (`libs.envs.matrix_games.GAMES`: prisoners_dilemma, stag_hunt; two payoff variants each).
      game_files: further 2x2 games as JSON files (`matrix_games.load_game`).
      labels, cot, answer_formats: the conditions, every combination: label styles (`prompts.LABELS`), with and
        without chain-of-thought, "free" text or "constrained" to the labels (needs LLMConfig.structured_outputs).
      samples: answers per configuration and condition (the model samples at LLMConfig.temperature).
      llm: ask the gin-configured LLMConfig model; standins: synthetic players (`@scope/SyntheticPlayer()`).
      in_flight: model calls at once.
      prompts_dir: a folder with game.j2 and system.txt (default: configs/strategic_games/prompts); the prompts
        must keep the lines the synthetic players read (see `players.read_prompt`).
    """
    conditions = [prompts.Condition(lab, c, fmt) for lab, c, fmt in itertools.product(labels, cot, answer_formats)]
    if not llm and not standins:
        raise ConfigError("strategic_games: no respondent; set llm = True and / or standins = [...]")
    configs = prompts.configurations(matrix_games.all_games(list(games), list(game_files)))
    prompts.check_templates(configs, conditions, prompts_dir)
    gateway = _gateway(workdir) if llm else None
    if gateway and any(c.answer_format == "constrained" for c in conditions) and not gateway.structured_outputs:
        raise ConfigError("answer_formats 'constrained' needs LLMConfig.structured_outputs = True (a provider that "
                          "enforces JSON schemas)")
    respondents = ([gateway.config.model] if gateway else []) + [p.label for p in standins]
    if len(set(respondents)) != len(respondents):
        raise ConfigError(f"strategic_games.standins: two respondents share a label: {respondents}")
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "samples.jsonl")
    done = {_key(r) for r in rundir.read_jsonl(path)}
    jobs = [(who, cond, cfg, k) for who in respondents for cond in conditions for cfg in configs
            for k in range(samples) if (who, cond.name, cfg.game.name, cfg.id, k) not in done]
    logging.info("strategic games: %d configurations x %d conditions x %d samples x %d respondents; %d answers to "
                 "get (%d already done)", len(configs), len(conditions), samples, len(respondents), len(jobs),
                 len(done))
    players = {p.label: p for p in standins}
    try:
        status = asyncio.run(_answer_all(jobs, path, gateway, players, in_flight, prompts_dir))
    finally:
        if gateway:
            gateway.write_usage(os.path.join(workdir, "llm_usage.jsonl"))
            gateway.close()
    records = rundir.read_jsonl(path)
    results = write_results(workdir, records, respondents, conditions, standins, confidence, n_boot)
    return {"status": status, **results["headline"]}


def _key(record: dict) -> tuple:
    return record["respondent"], record["condition"], record["game"], record["config"], record["sample"]


def _gateway(workdir: str):
    from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel (litellm is slow to import)
    return llm.Gateway.for_run(workdir)


async def _answer_all(jobs, path: str, gateway, players: dict[str, SyntheticPlayer], in_flight: int,
                      prompts_dir: str) -> str:
    semaphore = asyncio.Semaphore(in_flight)
    start, count, failed, last = time.perf_counter(), [0], [0], [time.perf_counter()]
    call_errors: tuple = ()
    if gateway:
        from libs.llm import gateway as llm  # pylint: disable=import-outside-toplevel
        call_errors = (llm.LLMError,)
        budget = llm.BudgetExceeded
    else:
        budget = ()
    stop = asyncio.Event()

    async def one(who, condition, config, sample):
        async with semaphore:
            if stop.is_set() or rundir.stop_requested():
                return
            messages = prompts.messages(config, condition, prompts_dir)
            names = prompts.labels_for(config, condition)
            constrained = condition.answer_format == "constrained"
            try:
                if who in players:
                    reply = players[who].reply(messages[-1]["content"], sample, constrained=constrained)
                else:
                    extra = {"response_format": prompts.response_format(names, condition.cot)} if constrained else {}
                    reply = (await gateway.complete(messages, cache_tag=f"sample-{sample}", **extra)).text
            except budget as e:  # pylint: disable=catching-non-exception
                logging.warning("LLM budget spent (%s); stopping after the calls in flight", e)
                stop.set()
                return
            except call_errors as e:  # pylint: disable=catching-non-exception
                failed[0] += 1
                logging.warning("%s %s sample %d: model call failed, left for a rerun: %s", config.game.name,
                                config.id, sample, str(e).splitlines()[0][:200])
                return
            choice = prompts.parse_choice(reply, names)
            rundir.append_jsonl(path, {"respondent": who, "condition": condition.name, "labels": condition.labels,
                                       "cot": condition.cot, "answer_format": condition.answer_format,
                                       **config.facts(), "sample": sample, "action_labels": list(names),
                                       "choice": choice, "valid": choice is not None, "reply": reply[-600:]})
            count[0] += 1
            if count[0] % 500 == 0 or count[0] == len(jobs) or time.perf_counter() - last[0] > 15:
                last[0] = time.perf_counter()
                elapsed = last[0] - start
                logging.info("answers %d/%d | %.1f per second | %s elapsed | ETA %s", count[0], len(jobs),
                             count[0] / elapsed, format_duration(elapsed),
                             format_duration(elapsed / count[0] * (len(jobs) - count[0])))

    await asyncio.gather(*(one(*job) for job in jobs))
    if stop.is_set():
        return "budget"
    if rundir.stop_requested():
        return "interrupted"
    return "incomplete" if failed[0] else "complete"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60]


def write_results(workdir: str, records: list[dict], respondents: Sequence[str], conditions, standins,
                  confidence: float, n_boot: int) -> dict[str, Any]:
    """results.md / results.json / plots/ from every recorded answer."""
    plots = os.path.join(workdir, "plots")
    os.makedirs(plots, exist_ok=True)
    legend = ("Accuracy = the rate of choosing the correct action (consistent with both players' preferred "
              "behaviours). Aligned / misaligned: the respondent's own bias direction points to the correct action "
              f"or not; drop = aligned - misaligned, with {confidence:.0%} bootstrap intervals. Stand-ins are "
              "rule-based synthetic players, not models.")
    lines = ["# LLM decision biases in 2x2 games", "", legend, ""]
    out: dict[str, Any] = {"conditions": {}, "headline": {}}
    short = {p.label: p.short_label for p in standins}
    for condition in conditions:
        groups = {}
        for who in respondents:
            for game in sorted({r["game"] for r in records}):
                rows = [r for r in records if r["respondent"] == who and r["condition"] == condition.name
                        and r["game"] == game]
                if not rows:
                    continue
                groups[f"{who} / {game}"] = rows
                measures = game_biases.measure_all(rows, confidence=confidence, n_boot=n_boot)
                name = short.get(who, who)
                stem = os.path.join(plots, f"{_slug(name)}__{game}__{_slug(condition.name)}")
                title = f"{name}: {game}, {condition.name}"
                game_biases.plot_accuracy_by_config(rows, stem + "__by_config.png", title=title)
                game_biases.plot_aligned_vs_misaligned(measures, stem + "__biases.png", title=title)
                out["conditions"].setdefault(condition.name, {})[f"{who} / {game}"] = {
                    b: _measure_json(m) for b, m in measures.items()}
        lines += [f"## Condition: {condition.name}", "",
                  game_biases.summary_table(groups, confidence=confidence, n_boot=n_boot), ""]
    if standins:
        lines += injected_vs_recovered(records, standins, conditions, confidence, n_boot, out)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(out, f, indent=1, default=str)
    out["headline"] = {"answers": len(records), "respondents": list(respondents)}
    return out


def _measure_json(m) -> dict[str, Any]:
    return {"direction": m.direction_label, "identifiable": m.identifiable, "aligned": m.aligned.rate,
            "misaligned": m.misaligned.rate, "drop": m.drop, "drop_ci": [m.drop_low, m.drop_high],
            "follow": m.follow.rate if m.follow else None}


def injected_vs_recovered(records, standins, conditions, confidence, n_boot, out) -> list[str]:
    """For each synthetic player: its injected bias and strength against the measured direction and drop."""
    lines = ["## Stand-ins: injected vs recovered bias", "",
             "| player | game | injected | recovered direction | recovered drop [CI] | other biases' drops |",
             "|---|---|---|---|---|---|"]
    recovered = out.setdefault("recovered", {})
    for player in standins:
        for game in sorted({r["game"] for r in records}):
            rows = [r for r in records if r["respondent"] == player.label and r["game"] == game
                    and r["condition"] == conditions[0].name]
            if not rows:
                continue
            measures = game_biases.measure_all(rows, confidence=confidence, n_boot=n_boot)
            injected = "none" if player.bias == "none" else f"{player.bias} {player.direction}, {player.strength:.2f}"
            target = measures.get(player.bias)
            others = ", ".join(f"{b} {m.drop:+.2f} [{m.drop_low:+.2f}, {m.drop_high:+.2f}]"
                               for b, m in measures.items() if b != player.bias)
            if target is None:
                found = "-", "-"
            else:
                found = (target.direction_label,
                         f"{target.drop:+.2f} [{target.drop_low:+.2f}, {target.drop_high:+.2f}]")
            lines.append(f"| {player.label} | {game} | {injected} | {found[0]} | {found[1]} | {others} |")
            recovered[f"{player.label} / {game}"] = {"injected": {"bias": player.bias, "direction": player.direction,
                                                                  "strength": player.strength},
                                                     "measured": {b: _measure_json(m) for b, m in measures.items()}}
    return lines + [""]
