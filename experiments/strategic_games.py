r"""LLM decision biases in one-shot Stag Hunt and Prisoner's Dilemma (positional, payoff, behavioural).

    python -m experiments.strategic_games --gin_file=configs/strategic_games/offline.gin   # synthetic players
    python -m experiments.strategic_games --gin_file=configs/strategic_games/local.gin     # embedded SmolLM2-135M
    OPENAI_API_KEY=... python -m experiments.strategic_games --gin_file=configs/strategic_games/llm.gin \
        --gin_bindings="LLMConfig.model = 'openai/gpt-4o'"

Asks every configuration under every condition, appends each answer to samples.jsonl and writes results.md (the
study's aligned / misaligned / drop table), results.json and plots/ (`libs.agents.strategic.experiment`); rerunning
with the same --workdir resumes.
"""

from absl import app, flags

from libs.agents.strategic import experiment
from libs.train import launch

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    launch.run(experiment.run, _GIN_FILE.value or ["configs/strategic_games/offline.gin"], _GIN_BINDINGS.value,
               _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
