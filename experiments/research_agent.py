r"""Research agents: an operator set x a search policy on MLGym-style research tasks (aira-dojo, MLGym).

    python -m experiments.research_agent --gin_file=configs/research_agent/offline.gin        # stand-in, 1 task
    python -m experiments.research_agent --gin_file=configs/research_agent/offline_suite.gin  # stand-in, all tasks
    python -m experiments.research_agent --gin_file=configs/research_agent/local.gin          # embedded model
    OPENAI_API_KEY=... python -m experiments.research_agent --gin_file=configs/research_agent/llm.gin \
        --gin_bindings="LLMConfig.model = 'openai/gpt-4o'"

Rerunning with the same --workdir resumes every task's search from its journal.
"""

from absl import app, flags

from libs.agents.research import experiment
from libs.train import launch

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin config files, applied in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<last gin file's name>).")

DEFAULT_GIN_FILE = "configs/research_agent/offline.gin"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    launch.run(experiment.run, _GIN_FILE.value or [DEFAULT_GIN_FILE], _GIN_BINDINGS.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
