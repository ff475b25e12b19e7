# speedlab: `make run` runs the quickstart study, `make test` runs the tests. Both set up .venv.
#
#   make run DATA='../shared/data/fineweb/*.jsonl'   read local documents instead of the hub
#   make run SET='defaults.train.steps=10'           settings by dotted key (space-separated)
#   make run CORES=8 ARGS='-n'                        extra snakemake arguments
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128   pick a torch build
#
# TORCH pins torch before the package installs, so pip never picks a build by accident: on Linux
# PyPI's torch wheel is the CUDA build (GPU users get CUDA as is); a CPU-only machine can point
# TORCH_INDEX at the CPU index, or rely on a local CPU wheel pip already finds (as CI does).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
CORES ?= all
DATA ?=
SET ?=
ARGS ?=

BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
comma := ,
# DATA overrides data.source/data.local (the rest of `data` stays as is); SET is typed by the
# schema (speedlab.config.apply_command_line). Snakemake keeps only the last --config, so
# $(call with_config,ITEMS,ARGS) puts ITEMS into the --config (or -C) of ARGS, or adds one.
CONFIG_ITEMS := $(if $(DATA),"data={source: local$(comma) local: '$(DATA)'}") \
	$(if $(SET),"set=$(SET)")
config_into = $(patsubst --config,--config $1,$(patsubst -C,-C $1,$2))
with_config = $(if $(strip $1),$(if $(filter --config -C,$2),$(call config_into,$1,$2),$2 --config $1),$2)
SNAKEMAKE_ARGS := $(call with_config,$(strip $(CONFIG_ITEMS)),$(ARGS))

.PHONY: setup run plan test test-fast lint report studies-smoke clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) $(SNAKEMAKE_ARGS)

# Runs done and pending per study, GPU-hours and cost still needed (make plan ARGS='--config scale=full').
plan: setup
	$(BIN)/snakemake plan --cores 1 --quiet all $(SNAKEMAKE_ARGS)

# The study catalogue (config/studies/*.yaml) at smoke scale on this machine, each to its report;
# each study's smoke scale reads the quickstart's documents (the hub, or ../shared when offline).
CATALOGUE ?= lmd_sweep lmd_ablation lr_sweep muon_upgrades wd_scaling ngpt_alpha scaling_ladder
studies-smoke: setup
	for s in $(CATALOGUE); do \
		$(BIN)/snakemake --profile profiles/local --cores $(CORES) --configfile \
			config/studies/$$s.yaml $(call with_config,scale=smoke $(CONFIG_ITEMS),$(ARGS)) \
			|| exit 1; \
	done

test: setup
	$(BIN)/python -m pytest

# The fast lane: everything but the tests marked slow (snakemake end to end, SLURM, chromium,
# torchrun, long training runs).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

report: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --report report.html

clean:
	rm -rf results logs benchmarks .snakemake report.html
