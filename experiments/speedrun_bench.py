r"""The Automated LLM Speedrunning Benchmark over this codebase's record ladder, at proxy scale.

    python -m experiments.speedrun_bench --gin_file=configs/speedrun_bench/oracle.gin --workdir=runs/srb_oracle

References (each record trained from its own config), then an agent on every task (harness checks
"oracle" / "noop", or the research agent with a scaffold from gin), then FSR tables and a plot in the
workdir. Rerunning with the same --workdir resumes.
"""

from absl import app, flags

from libs.agents.research import speedrun_bench
from libs.train import launch

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    launch.run(speedrun_bench.run, _GIN_FILE.value or ["configs/speedrun_bench/oracle.gin"], _GIN_BINDINGS.value,
               _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
