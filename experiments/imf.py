r"""The initial mass function's turnover (NGC 2024): broken power law vs power law vs log-normal, by evidence.

    python -m experiments.imf --gin_file=configs/imf/simulated.gin            # a simulated 48-object catalog
    python -m experiments.imf --gin_file=configs/imf/simulated.gin --gin_bindings="imf.catalog = 'masses.csv'"

Fits every model with NUTS (blackjax), computes each evidence with dynesty, and writes results.md, the mass
function with the models' bands, corner plots and results.json (`libs.astro.experiment`); rerunning with the same
--workdir fits only what is missing.
"""

from absl import app, flags

from libs.astro import experiment
from libs.train import launch

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    launch.run(experiment.run, _GIN_FILE.value or ["configs/imf/simulated.gin"], _GIN_BINDINGS.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
