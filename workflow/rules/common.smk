# Config validation and the input functions and constants shared by the rules.

import functools
import os
import re
import time
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

from segrobust.atomic import confine_outputs
from segrobust.contract import (
    ANALYSIS_FIGURES,
    ANALYSIS_TABLES,
    ANALYSIS_TEXTS,
    FIGURES,
    Run,
    figure_table_paths,
    study_of_figure,
)
from segrobust.data.image_header import set_max_image_gb
from segrobust.spec import code_deps
from segrobust.spec.config import (
    canonical,
    check_against_schema,
    check_consistency,
    check_values,
    dataset_entry,
    load_schema,
)
from segrobust.spec.preflight import check as preflight_check
from segrobust.spec.profile_placeholders import (
    explain as explain_placeholders,
    placeholder_settings,
    refuse_placeholders,
)
from segrobust.spec.runs import (
    enabled_studies,
    study_runs,
    synthetic_dataset_names,
    evaluation_conditions,
    texture_dataset_spec,
    train_spec,
    window_settings,
)
from segrobust.spec.shifts import authors_dataset_names, authors_dataset_spec

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
REPO = Path(workflow.basedir).parent  # the Snakefile is workflow/Snakefile

# A clear message naming the key first (what no schema sees, then the schema), then Snakemake's
# validation fills in the defaults (segrobust.spec.config.validate_config runs the same steps).
check_values(config)
check_against_schema(config, load_schema(SCHEMA))
validate(config, SCHEMA)
check_consistency(config)
# Every job writes and deletes only below these folders (segrobust.atomic's path guard; the
# environment carries them to the jobs) and reads no image larger than max_image_gb
# (segrobust.data.image_header).
confine_outputs(["results", "resources", "logs"])
set_max_image_gb(config["max_image_gb"])
# key order must not matter to the params rerun trigger
_canonical = canonical(config)
config.clear()
config.update(_canonical)

STUDIES = enabled_studies(config)
RUNS = {study: study_runs(config, study) for study in STUDIES}

# What each study's statistics can reach, before any job: the table once per invocation (the
# main process; cluster jobs re-parse this file in another execution mode), a warning per claim
# out of reach, and an error naming the keys when a study can produce none (segrobust.spec.preflight).
if workflow.is_main_process:
    _preflight = preflight_check(config)
    logger.info(_preflight.table())
    for _line in _preflight.warnings():
        logger.warning(f"pre-flight: {_line}")
    # an unedited SLURM profile: warned here (a dry run), refused when a cluster run starts
    _placeholders = placeholder_settings(
        workflow.resource_settings.default_resources,
        workflow.resource_settings.overwrite_resources,
    )
    if _placeholders:
        logger.warning(f"profile: {explain_placeholders(_placeholders)}")


def refuse_profile_placeholders():
    """Stop a cluster run whose profile still has placeholders (called by onstart: after the
    DAG is built, before the first job is submitted; never for a dry run)."""
    refuse_placeholders(
        workflow.resource_settings.default_resources,
        workflow.resource_settings.overwrite_resources,
        local=workflow.local_exec,
    )


def regex_of(names):
    """A wildcard constraint matching exactly ``names`` (never matching when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


@functools.cache
def code_version(script, archs=(), modules=()):
    """The version of the code deciding the outputs of a job of ``workflow/scripts/<script>``
    (segrobust.spec.code_deps: the script and the library it imports, plumbing left out; with
    ``archs``, those architectures' records and builders). Passed as ``params: code=``, so
    Snakemake's params trigger re-runs a job exactly when its code changed."""
    return code_deps.code_version(
        REPO / "workflow" / "scripts" / script,
        REPO / "src",
        archs=archs,
        modules=modules,
    )


def run_of(wildcards):
    return Run(
        wildcards.study,
        wildcards.dataset,
        wildcards.arch,
        wildcards.patch,
        int(wildcards.seed),
    )


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
    stage = (
        "models"
        if filename in ("model.pt", "train_log.csv", "patches.csv")
        else "metrics"
    )
    return [f"results/{study}/{stage}/{run.path}/{filename}" for run in RUNS[study]]


# --- real datasets (rules in datasets.smk) ---
from segrobust.data.sources import SOURCES, download_settings, downloadable_sources


def real_datasets():
    """The config's datasets whose source is a registered real-data source."""
    return {
        name: entry
        for name, entry in (config.get("datasets") or {}).items()
        if isinstance(entry, dict) and entry.get("source") in SOURCES
    }


def get_download_settings(source_name):
    """The source's URL and checksum with the overrides of the datasets using it."""
    return download_settings(source_name, real_datasets())


def get_raw_input(wildcards):
    """The downloaded archive of a dataset's source, or the directory of an msd_import."""
    entry = config["datasets"][wildcards.name]
    source = SOURCES.get(entry["source"])
    if not source.downloadable:
        return entry["path"]
    return f"resources/downloads/{source.name}/{source.filename}"


def preparation_code(wildcards):
    """The code version of preparing a real dataset: the rule's script and library, and the
    module of its source's preparation (named by the source record, imported when used).
    """
    source = SOURCES.get(config["datasets"][wildcards.name]["source"])
    return code_version("prepare_dataset.py", modules=(source.prepare_module,))


def get_dataset_entry(wildcards):
    """The dataset's config entry, with the top-level split unless the entry overrides it."""
    return dataset_entry(config, wildcards.name)


# --- report (rules in report.smk) ---
ALL_FIGURES = [n for names in FIGURES.values() for n in names] + list(ANALYSIS_FIGURES)
# written when an invocation starts (onstart in the Snakefile); the report says when it was
RUN_STARTED = "logs/run_started.txt"


def report_figure_names():
    """Every figure the report shows, for the enabled studies."""
    return [n for s in STUDIES for n in FIGURES[s]] + list(ANALYSIS_FIGURES)


def figure_inputs(wildcards):
    """The tables a figure is drawn from (contract.FIGURE_TABLES)."""
    return figure_table_paths(wildcards.figure)


def figure_category(figure):
    """The --report category: the figure's study, or "analysis"."""
    return "analysis" if figure in ANALYSIS_FIGURES else study_of_figure(figure)


def caption_file(figure):
    """The caption of a figure, relative to the working directory (a moved project keeps it)."""
    return os.path.relpath(REPO / "workflow" / "report" / "captions" / f"{figure}.rst")


def caption_text(figure):
    return " ".join(Path(caption_file(figure)).read_text().split())


def table_caption_file(table):
    """The caption of an analysis table, relative to the working directory."""
    return os.path.relpath(REPO / "workflow" / "report" / "tables" / f"{table}.rst")


# --- calibration and predict (rules in predict.smk) ---
from segrobust.spec.predict_targets import PREDICT_DIR, predict_plan

PREDICT = predict_plan(config, RUNS)


def calibration_files():
    """calibration.json of every model run (beside its model.pt)."""
    return [f"{run.model_dir}/calibration.json" for s in STUDIES for run in RUNS[s]]


def required_predict_plan():
    """The predict plan; an error naming the key when predict.images is null."""
    if PREDICT is None:
        raise ValueError(
            f"{PREDICT_DIR} needs config key predict.images (a folder of NIfTI images); it is null"
        )
    return PREDICT


def predict_code():
    """The code version of the predict job: its script and library, and the builders of every
    architecture it may use."""
    archs = tuple(sorted({run.arch for run in required_predict_plan().runs}))
    return code_version("predict_images.py", archs=archs)


def predict_run_files(filename):
    """``filename`` of every model run the predict job may use."""
    return [f"{run.model_dir}/{filename}" for run in required_predict_plan().runs]


def predict_targets():
    """The default target's additions: every calibration file, and the predict folder when on."""
    return calibration_files() + ([PREDICT_DIR] if PREDICT is not None else [])


# --- cluster resources (segrobust.spec.resources; docs/cluster.md) ---
from segrobust.spec.resources import request, rule_cost


def job_request(rule, wildcards, attempt):
    """The runtime (minutes) and mem_mb of one job of ``rule``, from the config and the job's
    wildcards (and, for real data, its prepared dataset), scaled by the attempt number.
    """
    cost = rule_cost(config, rule, dict(wildcards.items()))
    return request(cost, config["resources"], attempt)


def runtime_of(rule):
    """``resources: runtime=`` of ``rule``: minutes, re-evaluated per job and attempt."""
    return lambda wildcards, attempt: job_request(rule, wildcards, attempt).runtime


def mem_mb_of(rule):
    """``resources: mem_mb=`` of ``rule``: MB, re-evaluated per job and attempt."""
    return lambda wildcards, attempt: job_request(rule, wildcards, attempt).mem_mb
