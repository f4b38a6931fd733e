# Quick start:  make run   (install, then the default study)
#               make test  (install, then the test suite)
PYTHON ?= python3
PIP := $(PYTHON) -m pip
SNAKEMAKE := $(PYTHON) -m snakemake

.PHONY: install run test lint format paper-dry-run

# torch first, pinned, and only where none is present: an unpinned torch would pull a multi-GB
# CUDA build; a torch the user already has (e.g. a CUDA build) is kept.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[test]"

run: install
	$(SNAKEMAKE) --cores all --resources gpu=1

test: install
	$(PYTHON) -m pytest

lint:
	$(SNAKEMAKE) --lint
	$(PYTHON) -m ruff check src tests workflow/scripts benchmarks
	$(PYTHON) -m snakefmt --check Snakefile workflow/rules

format:
	$(PYTHON) -m ruff format src tests workflow/scripts benchmarks
	$(PYTHON) -m ruff check --fix src tests workflow/scripts benchmarks
	$(PYTHON) -m snakefmt Snakefile workflow/rules

paper-dry-run:
	$(SNAKEMAKE) -n --configfile config/paper.yaml --quiet rules
