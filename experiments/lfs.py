r"""LLM-First Search and its baselines on Countdown and Sudoku.

    python -m experiments.lfs --gin_file=configs/lfs/offline.gin       # heuristic scorer, minutes on CPU
    OPENAI_API_KEY=... python -m experiments.lfs --gin_file=configs/lfs/llm.gin \
        --gin_bindings="LLMConfig.model = 'openai/gpt-4o'"

Rerunning with the same --workdir skips finished games and resumes the others.
"""

from absl import app, flags

from libs.agents import lfs_experiment
from libs.train import launch

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")

DEFAULT_GIN_FILE = "configs/lfs/offline.gin"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    launch.run(lfs_experiment.run, _GIN_FILE.value or [DEFAULT_GIN_FILE], _GIN_BINDINGS.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
