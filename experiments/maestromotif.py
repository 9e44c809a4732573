r"""MaestroMotif on NetHack: Motif reward models per skill, skill code, one skill-conditioned PPO policy.

    python -m experiments.maestromotif --gin_file=configs/maestromotif/descender.gin --workdir=runs/mm_descender

Phases (collect, annotate, rewards, skills, train, evaluate; `libs.agents.maestromotif.experiment`) run in
order in the workdir; each one's outputs are kept, so rerunning with the same --workdir resumes.
"""

from absl import app, flags

from libs.agents.maestromotif import experiment
from libs.llm import gateway  # noqa: F401  (registers LLMConfig with gin; the library imports it only to annotate)
from libs.train import launch

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    launch.run(experiment.run, _GIN_FILE.value or ["configs/maestromotif/descender.gin"], _GIN_BINDINGS.value,
               _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
