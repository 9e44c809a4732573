r"""NanoGPT speedrun: train a GPT to a target validation loss as fast as possible.

    python -m experiments.speedrun --gin_file=configs/speedrun/record_05.gin \
        --gin_bindings='train.total_steps = 100' --workdir=runs/r5

Rerunning with the same --workdir resumes from its latest checkpoint. Multi-process (multi-host) runs take
their topology from SLURM / Open MPI / TPU pod environments, from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
and JAX_PROCESS_ID (`python -m tools.launch_local` sets them), or from the three flags below.
"""

from absl import app, flags

from libs.train import launch, trainer

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-process runs: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process runs: how many processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index.")

DEFAULT_GIN_FILE = "configs/speedrun/smoke.gin"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    gin_files = _GIN_FILE.value or [DEFAULT_GIN_FILE]
    launch.run(trainer.train, gin_files, _GIN_BINDINGS.value, _WORKDIR.value,
               user_errors=(trainer.TrainingDiverged,),
               topology=(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value))


if __name__ == "__main__":
    app.run(main)
