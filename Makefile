# Quick start:  make run   (install into .venv, then the default study)
#               make test  (install into .venv, then the test suite)
#
# Everything runs in the virtual environment VENV (default .venv, created on first use with
# PYTHON, able to see that interpreter's packages, so an installed CUDA build of torch is kept).
# Use an existing environment instead with `make run VENV=$CONDA_PREFIX` (or any venv path).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SNAKEMAKE := $(PY) -m snakemake
# Written after a successful install; redone when pyproject.toml changes.
INSTALLED := $(VENV)/.segrobust-installed

.PHONY: install run reproduce test lint format paper-dry-run

# Without ensurepip (Debian's python3 lacks it unless python3-venv is installed) the venv is
# made without its own pip and uses the system's, which then installs into the venv.
$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV) 2>/dev/null \
		|| $(PYTHON) -m venv --system-site-packages --without-pip $(VENV)
	@$(PY) -m pip --version >/dev/null || { echo "make: $(VENV) has no pip: install pip \
		for $(PYTHON) (Debian/Ubuntu: apt install python3-pip python3-venv)" >&2; exit 1; }

# torch first, pinned, and only where none is present: an unpinned torch would pull a multi-GB
# CUDA build; a torch the environment already has (e.g. a CUDA build) is kept.
$(INSTALLED): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[test]"
	@touch $@

install: $(INSTALLED)

# --quiet rules: the console shows one line per finished job, each model job's own summary and
# a failed job's reason and log (segrobust's `segrobust:` lines), not Snakemake's block of
# inputs, outputs and reasons per job; `snakemake -n` lists those.
QUIET := --quiet rules

# Training and evaluation jobs each hold one unit of the `gpu` resource. With NVIDIA GPUs as many
# run at once as there are GPUs, each on its own (segrobust.execution.gpu_slots); on a machine
# without one they run on the CPU, as many at once as there are cores allow (each with the
# config's threads.train / threads.evaluate threads), instead of one at a time.
GPUS ?= $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
NETWORK_SLOTS ?= $(if $(filter-out 0,$(GPUS)),$(GPUS),$(shell nproc))

run: install
	$(SNAKEMAKE) --cores all --resources gpu=$(NETWORK_SLOTS) $(QUIET)

# The papers' findings at CPU scale (config/reproduce.yaml; README, "Configuration").
reproduce: install
	$(SNAKEMAKE) --configfile config/reproduce.yaml --cores all --resources gpu=$(NETWORK_SLOTS) \
		$(QUIET)

# Two test processes, each taking whole files (--dist loadfile): a file's module fixtures (the
# tiny workflow run, the SLURM cluster) start once, and the SLURM tests, which own the machine's
# /etc/slurm/slurm.conf and ports, never run beside each other. The SLURM pipeline test mostly
# waits on the queue, so the other process's tests fill that time (measured: 6.3 min with 2
# processes, 12 min with 1, on 2 cores). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(SNAKEMAKE) --lint
	$(PY) -m ruff check src tests workflow/scripts benchmarks
	$(PY) -m snakefmt --check workflow/Snakefile workflow/rules
	$(VENV)/bin/lint-imports

format: install
	$(PY) -m ruff format src tests workflow/scripts benchmarks
	$(PY) -m ruff check --fix src tests workflow/scripts benchmarks
	$(PY) -m snakefmt workflow/Snakefile workflow/rules

paper-dry-run: install
	$(SNAKEMAKE) -n --configfile config/paper.yaml --quiet rules
