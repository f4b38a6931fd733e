# Config validation, wildcard constraints and input functions shared by every rule.

import re
from pathlib import Path

import yaml
from snakemake.utils import validate

from segrobust.config import check_against_schema, check_consistency
from segrobust.runs import (
    Run,
    dataset_dir,
    enabled_studies,
    perturbation_condition_dir,
    study_runs,
    synthetic_dataset_names,
    evaluation_conditions,
    texture_dataset_spec,
    texture_grid,
    train_spec,
)
from segrobust.naming import texture_dataset_name

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
REPO = Path(workflow.basedir)

# A clear message naming the key first, then Snakemake's validation fills in the defaults.
check_against_schema(config, yaml.safe_load(open(SCHEMA)))
validate(config, SCHEMA)
check_consistency(config)

STUDIES = enabled_studies(config)
RUNS = {study: study_runs(config, study) for study in STUDIES}


def regex_of(names):
    """A wildcard constraint matching exactly ``names`` (never matching when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


wildcard_constraints:
    study="texture|perturbation|context",
    direction="background|foreground",
    alpha=r"[0-9.]+",
    arch="[a-z_]+",
    patch=r"full|\d+",
    seed=r"\d+",
    severity=r"\d+",


def code(*modules):
    """Library files a rule depends on: declared as inputs so a code change re-runs the rule
    (Snakemake's code trigger only watches the script file itself)."""
    return [str(REPO / "src" / "segrobust" / m) for m in modules]


def run_of(wildcards):
    return Run(wildcards.study, wildcards.dataset, wildcards.arch, wildcards.patch, int(wildcards.seed))


def get_conditions(wildcards):
    """Test conditions of a model run (plain dicts, so they can be params)."""
    return evaluation_conditions(config, run_of(wildcards))


def get_condition_inputs(wildcards):
    """The dataset directories a model run's evaluation reads."""
    return sorted({c["input"] for c in get_conditions(wildcards)})


def get_train_spec(wildcards):
    return train_spec(config, wildcards.study, wildcards.arch, wildcards.patch)


def study_outputs(study, filename):
    """``filename`` of every model run of ``study``."""
    stage = "models" if filename in ("model.pt", "train_log.csv", "patches.csv") else "metrics"
    return [f"results/{study}/{stage}/{run.path}/{filename}" for run in RUNS[study]]
