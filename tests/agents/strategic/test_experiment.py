"""The strategic-games study end to end: synthetic players with injected biases over real HTTP, and offline."""

import json
import os

import gin
import pytest

from libs.agents.strategic import experiment, prompts
from libs.agents.strategic.players import SyntheticPlayer, read_prompt
from libs.agents.strategic.testing import players_responder
from libs.envs import matrix_games
from libs.train import launch, rundir
from tests.conftest import run_binary

PLAYERS = {
    "positional": SyntheticPlayer(bias="positional", direction="y", strength=0.35, accuracy=0.85, invalid=0.03),
    "payoff": SyntheticPlayer(bias="payoff", direction="x", strength=0.3, accuracy=0.85),
    "behavioural": SyntheticPlayer(bias="behavioural", direction="y", strength=0.3, accuracy=0.85),
    "unbiased": SyntheticPlayer(bias="none", accuracy=0.85, invalid=0.03),
}


@pytest.fixture
def server(monkeypatch, clean_gin):
    from libs.llm.testing import LocalOpenAIServer  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-SECRET-321")
    with LocalOpenAIServer(responder=players_responder(PLAYERS)) as s:
        yield s


def _parse(server, model, *bindings):
    gin.clear_config()
    launch.parse_config(["configs/strategic_games/llm.gin"], [
        "strategic_games.labels = ['semantic']", "strategic_games.cot = [False]", "strategic_games.samples = 20",
        "strategic_games.confidence = 0.99", "strategic_games.n_boot = 1000", f"LLMConfig.model = 'openai/{model}'",
        f"LLMConfig.api_base = '{server.base_url}'", "LLMConfig.api_key_env = 'TEST_LLM_KEY'",
        "LLMConfig.budget_usd = 0.0", "LLMConfig.max_in_flight = 32", "strategic_games.in_flight = 32", *bindings])


@pytest.mark.parametrize("model", list(PLAYERS))
def test_measures_recover_each_injected_bias_over_http(server, tmp_path, model):
    _parse(server, model)
    result = experiment.run(str(tmp_path))
    assert result["status"] == "complete" and result["respondents"] == [f"openai/{model}"]
    measured = json.load(open(tmp_path / "results.json"))["conditions"]["semantic"]
    player = PLAYERS[model]
    for game in ("prisoners_dilemma", "stag_hunt"):
        biases = measured[f"openai/{model} / {game}"]
        if player.bias == "none":  # no bias: every drop's interval holds 0
            for name, m in biases.items():
                assert m["drop_ci"][0] <= 0 <= m["drop_ci"][1], (game, name, m)
            continue
        m = biases[player.bias]
        assert m["drop_ci"][0] <= player.strength <= m["drop_ci"][1], (game, m)
        if m["identifiable"]:
            labels = {"positional": ("first-listed", "second-listed"), "payoff": ("max-self-gain", "max-common-gain"),
                      "behavioural": ("self-gain behaviour", "common-gain behaviour")}[player.bias]
            assert m["direction"] == labels[player.direction == "y"]
        if player.bias == "positional":  # nothing else pulls this player
            assert all(o["drop_ci"][0] <= 0 <= o["drop_ci"][1] for b, o in biases.items() if b != "positional")
    samples = rundir.read_jsonl(str(tmp_path / "samples.jsonl"))
    assert len(samples) == 2 * 16 * 20
    invalid = sum(not s["valid"] for s in samples) / len(samples)
    assert (0.01 < invalid < 0.06) if player.invalid else invalid == 0
    assert b"sk-test-SECRET-321" not in open(tmp_path / "llm_cache.sqlite", "rb").read()
    assert os.path.exists(tmp_path / "plots" / f"openai_{model}__stag_hunt__semantic__biases.png")


def test_constrained_answers_and_a_rerun_that_asks_nothing(server, tmp_path):
    _parse(server, "unbiased", "strategic_games.answer_formats = ['constrained']", "strategic_games.samples = 2",
           "LLMConfig.structured_outputs = True")
    experiment.run(str(tmp_path))
    asked = server.num_requests
    requests = [r["json"] for r in server.requests if r["json"]]
    assert all(r["response_format"]["json_schema"]["schema"]["properties"]["action"]["enum"] for r in requests)
    assert {json.loads(s["reply"])["action"] for s in rundir.read_jsonl(str(tmp_path / "samples.jsonl"))
            if s["valid"]} <= {"cooperate", "defect", "stag", "hare"}
    _parse(server, "unbiased", "strategic_games.answer_formats = ['constrained']", "strategic_games.samples = 3",
           "LLMConfig.structured_outputs = True")
    experiment.run(str(tmp_path))
    assert server.num_requests == asked + 32  # only the third sample of each configuration
    _parse(server, "unbiased", "strategic_games.answer_formats = ['constrained']")
    with pytest.raises(launch.ConfigError, match="structured_outputs"):
        experiment.run(str(tmp_path / "other"))


def test_the_sixteen_configurations_and_their_prompts():
    games = matrix_games.all_games(["prisoners_dilemma", "stag_hunt"])
    configs = prompts.configurations(games)
    assert len(configs) == 32 and len({c.id for c in configs if c.game.name == "stag_hunt"}) == 16
    for config in configs:
        for condition in (prompts.Condition("semantic"), prompts.Condition("letters", cot=True),
                          prompts.Condition("neutral", answer_format="constrained")):
            text = prompts.messages(config, condition)[-1]["content"]
            labels, game, acting, fellow = read_prompt(text)  # the players read what a model reads
            names = prompts.labels_for(config, condition)
            assert labels == (names[config.listed[0]], names[config.listed[1]])
            assert (acting, fellow) == (config.acting, config.fellow)
            assert labels[game.correct_action(acting, fellow)] == names[config.facts()["correct"]]
            assert ("step by step" in text) == condition.cot
    letters = [c for c in configs if c.order == "cooperative_second"][0]
    assert prompts.labels_for(letters, prompts.Condition("letters"))[letters.listed[0]] == "A"


@pytest.mark.parametrize("reply,choice", [
    ("Answer: stag", 0), ("I think hare is safer.\nAnswer: **Hare**.", 1), ('{"action": "hare"}', 1),
    ("Stag is tempting but hare is safe.", None), ("I choose stag.", 0), ("No idea.", None),
    ("Answer: rabbit", None), ('{"reasoning": "x", "action": "stag"}', 0)])
def test_parse_choice_never_guesses(reply, choice):
    assert prompts.parse_choice(reply, ("stag", "hare")) == choice


def test_single_letter_labels_are_case_sensitive():
    assert prompts.parse_choice("a choice is needed", ("A", "B")) is None
    assert prompts.parse_choice("I pick B", ("A", "B")) == 1


def test_offline_binary_resumes_and_bad_configs_end_in_one_line(tmp_path):
    args = ["--gin_file=configs/strategic_games/offline.gin", f"--workdir={tmp_path / 'run'}",
            "--gin_bindings=strategic_games.samples = 3"]
    first = run_binary("experiments.strategic_games", *args)
    assert first.returncode == 0, first.stderr[-2000:]
    samples = open(tmp_path / "run" / "samples.jsonl").read()
    assert len(samples.splitlines()) == 4 * 32 * 3
    assert "injected vs recovered" in open(tmp_path / "run" / "results.md").read()
    again = run_binary("experiments.strategic_games", *args)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert open(tmp_path / "run" / "samples.jsonl").read() == samples
    bad = run_binary("experiments.strategic_games", "--gin_file=configs/strategic_games/offline.gin",
                     f"--workdir={tmp_path / 'bad'}", "--gin_bindings=strategic_games.games = ['chicken']")
    assert bad.returncode == 2 and "chicken" in bad.stderr.strip().splitlines()[-1]
    game = tmp_path / "game.json"
    game.write_text('{"name": "x", "actions": ["a", "b", "c"], "symmetric": {"R": 1, "S": 0, "T": 2, "P": 1}}')
    bad = run_binary("experiments.strategic_games", "--gin_file=configs/strategic_games/offline.gin",
                     f"--workdir={tmp_path / 'bad2'}", f"--gin_bindings=strategic_games.game_files = ['{game}']")
    assert bad.returncode == 2 and "game.json" in bad.stderr.strip().splitlines()[-1]
    bad = run_binary("experiments.strategic_games", "--gin_file=configs/strategic_games/offline.gin",
                     f"--workdir={tmp_path / 'bad3'}", f"--gin_bindings=strategic_games.prompts_dir = '{tmp_path}'")
    assert bad.returncode == 2 and "prompt templates" in bad.stderr.strip().splitlines()[-1]
