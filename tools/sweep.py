r"""Config ablations: sweep gin bindings over a binary, each point its own run, through submitit.

    python -m tools.sweep --binary=experiments.speedrun --gin_file=configs/speedrun/smoke.gin \
        --gin_bindings='train.total_steps=20' \
        --sweep='make_optimizer.adam_lr=[1e-3,3e-3,1e-2]' --sweep='GPTConfig.num_layers=[2,4]' --seeds=2 \
        --sweep_dir=runs/sweeps/my_ablation --executor=local --max_parallel=2 --metric=val_loss

    # On a SLURM cluster: one job array, 8 runs at a time, one GPU each
    python -m tools.sweep ... --executor=slurm --slurm_partition=gpu --gpus_per_run=1 --cpus_per_run=8 \
        --timeout_min=120 --max_parallel=8

Writes sweep_dir/{sweep.json, <run>/..., jobs.jsonl, results.md, results.csv, results.png}. Rerunning
the same command skips finished runs and resumes the others. Exit codes: 0 every run finished, 1 some
did not, 2 bad input, 143 / 130 after SIGTERM / Ctrl-C. Flags can also come from a file: --flagfile=F.
"""

from __future__ import annotations

import sys

from absl import app, flags

from libs.train import sweep

_BINARY = flags.DEFINE_string("binary", "experiments.speedrun", "Module of the binary each run executes.")
_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin files of every run, in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings of every run (before the swept ones).")
_SWEEP = flags.DEFINE_multi_string("sweep", [], "An axis: 'Name.param=[v1, v2, ...]' (Python literals); repeatable.")
_MODE = flags.DEFINE_enum("mode", "product", ["product", "zip"], "Cross the axes, or zip axes of equal length.")
_SEEDS = flags.DEFINE_integer("seeds", 0, "N > 0: also sweep --seed_binding over 0..N-1 (crossed in either mode).")
_SEED_BINDING = flags.DEFINE_string("seed_binding", "train.seed", "The gin parameter --seeds sets.")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Folder of the sweep: one workdir per run, the table.")
_EXECUTOR = flags.DEFINE_enum("executor", "local", ["local", "slurm"], "submitit executor.")
_MAX_PARALLEL = flags.DEFINE_integer("max_parallel", 1, "Runs in flight at once (SLURM: array parallelism).")
_TIMEOUT_MIN = flags.DEFINE_integer("timeout_min", 24 * 60, "Time limit of each job, minutes.")
_GPUS = flags.DEFINE_integer("gpus_per_run", 0, "GPUs per run (SLURM: per node; local: disjoint sets, 0 = share).")
_CPUS = flags.DEFINE_integer("cpus_per_run", 0, "SLURM: CPUs per task (0: the partition's default).")
_PARTITION = flags.DEFINE_string("slurm_partition", "", "SLURM partition (empty: the default one).")
_SLURM_EXTRA = flags.DEFINE_multi_string("slurm_extra", [], "More sbatch options as key=value (account=..., qos=...).")
_STOP_TIMEOUT = flags.DEFINE_float("stop_timeout_s", 300, "After SIGTERM / Ctrl-C: how long running jobs may save.")
_PROGRESS_EVERY = flags.DEFINE_float("progress_every_s", 60, "A progress line at least this often (and on change).")
_METRIC = flags.DEFINE_string("metric", "val_loss", "The result / summary field the table is sorted by.")
_MAXIMIZE = flags.DEFINE_boolean("maximize", False, "Sort descending (best = largest).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    extra = [tuple(item.split("=", 1)) for item in _SLURM_EXTRA.value]
    if any(len(pair) != 2 for pair in extra):
        print(f"error: --slurm_extra takes key=value, got {_SLURM_EXTRA.value}", file=sys.stderr)
        sys.exit(sweep.EXIT_USER_ERROR)
    options = sweep.LaunchOptions(
        executor=_EXECUTOR.value, max_parallel=_MAX_PARALLEL.value, timeout_min=_TIMEOUT_MIN.value,
        gpus_per_run=_GPUS.value, cpus_per_run=_CPUS.value, slurm_partition=_PARTITION.value,
        slurm_extra=tuple(extra), stop_timeout_s=_STOP_TIMEOUT.value, progress_every_s=_PROGRESS_EVERY.value)
    sys.exit(sweep.launch_sweep(
        _SWEEP_DIR.value, options, metric=_METRIC.value, maximize=_MAXIMIZE.value, binary=_BINARY.value,
        gin_files=_GIN_FILE.value, gin_bindings=_GIN_BINDINGS.value, sweeps=_SWEEP.value, mode=_MODE.value,
        seeds=_SEEDS.value, seed_binding=_SEED_BINDING.value))


if __name__ == "__main__":
    app.run(main)
