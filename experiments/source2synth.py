r"""Source2Synth: grounded synthetic QA data from tables (SQL as reasoning) and linked documents (multi-hop).

    python -m experiments.source2synth --gin_file=configs/source2synth/offline.gin      # stand-in, seconds
    python -m experiments.source2synth --gin_file=configs/source2synth/local.gin        # embedded SmolLM2-135M
    OPENAI_API_KEY=... python -m experiments.source2synth --gin_file=configs/source2synth/llm.gin \
        --gin_bindings="LLMConfig.model = 'openai/gpt-4o-mini'"
    python -m experiments.source2synth --gin_file=configs/source2synth/llm.gin \
        --gin_file=configs/source2synth/evaluate.gin                          # score a model on an eval set

Generates, curates (slices, duplicates, imputation, answerability) and writes dataset/*.jsonl and stats.md
(`libs.source2synth.experiment`); rerunning with the same --workdir resumes where it stopped.
"""

from absl import app, flags

from libs.source2synth import experiment
from libs.train import launch

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    launch.run(experiment.run, _GIN_FILE.value or ["configs/source2synth/offline.gin"], _GIN_BINDINGS.value,
               _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
