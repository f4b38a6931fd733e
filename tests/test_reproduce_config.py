"""config/reproduce.yaml: the papers' findings at CPU scale. It validates on top of the default
config (as Snakemake reads it), its grid is the documented design, and its DAG builds (dry run)."""

import os
import re
import subprocess
import sys

import pytest
import yaml
from snakemake.utils import update_config, validate
from workflow_helpers import REPO, copy_workflow

from segrobust.data.bundles import BUNDLES
from segrobust.data.spheres import expected_fg_ratio
from segrobust.perturb.catalog import PAPER_LEVELS
from segrobust.spec.config import check_against_schema, check_consistency
from segrobust.spec.runs import study_runs

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
ALL_2D_ARCHS = {"unet", "noskip_unet", "attention_unet", "unetpp", "vnet", "noskip_vnet"}
#: The design (config/reproduce.yaml's comments): 2 directions x 3 alphas x 6 architectures x
#: 3 seeds; 1 dataset x 2 architectures x 3 seeds; 3 patch sizes x 3 architectures x 3 seeds.
EXPECTED_RUNS = {"texture": 108, "perturbation": 6, "context": 27}


@pytest.fixture(scope="module")
def config():
    """config/config.yaml updated with config/reproduce.yaml, as Snakemake merges them, then
    checked and filled in as the Snakefile does."""
    merged = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(merged, yaml.safe_load((REPO / "config" / "reproduce.yaml").read_text()))
    check_against_schema(merged, yaml.safe_load(SCHEMA_PATH.read_text()))
    validate(merged, str(SCHEMA_PATH))
    check_consistency(merged)
    return merged


def test_the_grid_is_the_documented_design(config):
    assert {study: len(study_runs(config, study)) for study in EXPECTED_RUNS} == EXPECTED_RUNS
    assert len(config["seeds"]) >= 3
    assert all(config["studies"][s]["seeds"] is None for s in EXPECTED_RUNS)
    # train and evaluate jobs run one at a time (gpu=1): one thread each, measured in the YAML
    assert config["threads"] == {"train": 1, "evaluate": 1, "data": 1}


def test_texture_spans_easy_and_hard_alphas_with_every_2d_architecture(config):
    texture = config["studies"]["texture"]
    assert set(texture["archs"]) == ALL_2D_ARCHS
    assert set(texture["directions"]) == {"background", "foreground"}
    alphas = sorted(texture["alphas"])
    # the papers' easy (< 0.5) and hard (> 0.8) regimes, at least one harder alpha per level
    assert len(alphas) >= 3 and alphas[0] < 0.5 and alphas[-1] > 0.8
    assert texture["n_test"] >= 100 and texture["n_calibration"] >= 100


def test_perturbation_tests_the_papers_five_levels_on_the_bundled_anatomy(config):
    study = config["studies"]["perturbation"]
    tested = {(p, s) for p in study["perturbations"] for s in study["severities"]}
    named = {condition for condition in PAPER_LEVELS.values() if condition is not None}
    assert named <= tested and len(PAPER_LEVELS) == 5
    (name,) = study["datasets"]
    entry = config["datasets"][name]
    assert entry["source"] == "msd_import"
    # the path is the output of rule bundled_anatomy, so the study runs with one command
    assert entry["path"] == "resources/bundled/mni152_wm" and "mni152_wm" in BUNDLES


def test_context_patch_sizes_reach_the_volume_and_test_radii_leave_the_training_range(config):
    study = config["studies"]["context"]
    assert study["archs"] == ["unet", "attention_unet", "unetr"]
    (name,) = study["datasets"]
    spheres = config["datasets"][name]
    assert len(study["patch_sizes"]) >= 3 and max(study["patch_sizes"]) == spheres["volume_size"]
    assert spheres["noise_model"] == "uniform_max" and spheres["radius_sampling"] == "integer"
    assert spheres["n_test"] >= 100 and spheres["n_calibration"] >= 100
    # integer radii: low .. high - 1. At the whole-volume patch the training ratios are the
    # training spheres' own, and most test radii give a ratio outside them.
    train = range(*spheres["train_radii"])
    test = list(range(*spheres["test_radii"]))
    size = spheres["volume_size"]
    low, high = expected_fg_ratio(min(train), size), expected_fg_ratio(max(train), size)
    outside = [r for r in test if not low <= expected_fg_ratio(r, size) <= high]
    assert len(outside) / len(test) >= 0.6
    assert min(test) < min(train) and max(test) > max(train)  # outside on both sides


def planned_jobs(workdir) -> dict[str, int]:
    """Rule -> jobs of ``snakemake --dry-run --configfile config/reproduce.yaml`` in ``workdir``,
    importing the copied library (not an installed segrobust)."""
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dry-run", "--quiet", "rules", "--cores", "2",
         "--resources", "gpu=1", "--configfile", "config/reproduce.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    counts = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        match = re.fullmatch(r"\s*([a-z_]+)\s+(\d+)\s*", line)
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def test_the_dag_builds_with_the_job_counts_of_the_design(tmp_path):
    runs = sum(EXPECTED_RUNS.values())
    assert planned_jobs(copy_workflow(tmp_path)) == {
        "bundled_anatomy": 1,  # resources/bundled/mni152_wm from the installed nilearn
        "prepare_dataset": 1,  # mni_wm
        "generate_synthetic_dataset": 1,  # spheres48
        "generate_texture_dataset": 6,  # 2 directions x 3 alphas
        "generate_authors_dataset": 6,  # the second generator's test set like each of them
        "perturb_test_split": 2,  # speckle, background blur
        "train_model": runs,
        "evaluate_model": runs,  # each also writes the run's calibration.json
        "aggregate_study": 3,
        "plot_figure": 11,
        "analyze": 1,
        "build_report": 1,
        "all": 1,
    }
