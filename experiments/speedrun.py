r"""NanoGPT speedrun: train a GPT to a target validation loss as fast as possible.

    python -m experiments.speedrun --gin_file=configs/speedrun/record_05.gin \
        --gin_bindings='train.total_steps = 100' --workdir=runs/r5

Rerunning with the same --workdir resumes from its latest checkpoint.
"""

from absl import app, flags

from libs.train import launch, trainer

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")

DEFAULT_GIN_FILE = "configs/speedrun/smoke.gin"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    gin_files = _GIN_FILE.value or [DEFAULT_GIN_FILE]
    launch.run(trainer.train, gin_files, _GIN_BINDINGS.value, _WORKDIR.value,
               user_errors=(trainer.TrainingDiverged,))


if __name__ == "__main__":
    app.run(main)
