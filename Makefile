# speedlab: `make run` runs the quickstart study, `make test` runs the tests. Both set up .venv.
#
#   make run DATA='../shared/data/fineweb/*.jsonl'   read local documents instead of the hub
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
ARGS ?=

BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
comma := ,
# DATA overrides data.source/data.local on the command line; the rest of `data` stays as is.
SNAKEMAKE_DATA := $(if $(DATA),--config "data={source: local$(comma) local: '$(DATA)'}")

.PHONY: setup run plan test lint report studies-smoke clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) $(SNAKEMAKE_DATA) $(ARGS)

# Runs done and pending per study, GPU-hours and cost still needed (make plan ARGS='--config scale=full').
plan: setup
	$(BIN)/snakemake plan --cores 1 $(SNAKEMAKE_DATA) $(ARGS) --quiet all

# The study catalogue (config/studies/*.yaml) at smoke scale on this machine, each to its report,
# on the quickstart's documents (the hub, or ../shared when offline).
CATALOGUE ?= lmd_sweep lmd_ablation lr_sweep muon_upgrades wd_scaling ngpt_alpha
SMOKE_DATA := "data={corpus: fineweb10B-sample$(comma) source: hf}"
studies-smoke: setup
	for s in $(CATALOGUE); do \
		$(BIN)/snakemake --profile profiles/local --cores $(CORES) \
			--configfile config/studies/$$s.yaml --config scale=smoke $(SMOKE_DATA) $(ARGS) \
			|| exit 1; \
	done

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

report: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --report report.html

clean:
	rm -rf results logs benchmarks .snakemake report.html
