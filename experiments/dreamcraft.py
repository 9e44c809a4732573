r"""DreamCraft: a quantized NeRF of Minecraft blocks with functional constraints, exported to real schematics.

    python -m experiments.dreamcraft --gin_file=configs/dreamcraft/house.gin --workdir=runs/dreamcraft_house

Trains the quantized field (and the quantize-after-training baseline) on the same targets for each seed
(`libs.dreamcraft.experiment`), then writes the comparison, renders, turntable GIFs and .schem / .litematic /
.mcfunction exports into the workdir; rerunning with the same --workdir resumes.
"""

from absl import app, flags

from libs.dreamcraft import experiment
from libs.train import launch

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    launch.run(experiment.run, _GIN_FILE.value or ["configs/dreamcraft/house.gin"], _GIN_BINDINGS.value,
               _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
