"""The SLURM profile as shipped (EDIT_ME placeholders) warns on a dry run and submits nothing
on a real run, naming each key to set; no cluster is needed: fake SLURM commands on PATH record
whether anything was submitted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml
from snakemake.resources import Resources
from workflow_helpers import REPO, copy_workflow

from segrobust.spec.profile_placeholders import (
    ProfilePlaceholderError,
    placeholder_settings,
    refuse_placeholders,
)

pytestmark = pytest.mark.workflow

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
EXPECTED = [
    'default-resources: slurm_partition="EDIT_ME_partition"',
    'default-resources: slurm_account="EDIT_ME_account"',
    'set-resources: train_model:slurm_partition="EDIT_ME_gpu_partition"',
    'set-resources: evaluate_model:slurm_partition="EDIT_ME_gpu_partition"',
    'set-resources: predict_images:slurm_partition="EDIT_ME_gpu_partition"',
]


def profile_resources(profile: dict) -> tuple[Resources, dict[str, Resources]]:
    """The profile's resources as Snakemake's command line parses them."""
    defaults = Resources.parse(profile["default-resources"], allow_expressions=True)
    per_rule: dict[str, list[str]] = {}
    for entry in profile.get("set-resources", []):
        rule, assignment = entry.split(":", 1)
        per_rule.setdefault(rule, []).append(assignment)
    return defaults, {
        rule: Resources.parse(items, allow_expressions=True) for rule, items in per_rule.items()
    }


def test_every_placeholder_of_the_shipped_profile_is_named():
    defaults, per_rule = profile_resources(yaml.safe_load(PROFILE.read_text()))
    assert placeholder_settings(defaults, per_rule) == EXPECTED
    with pytest.raises(ProfilePlaceholderError) as refused:
        refuse_placeholders(defaults, per_rule, local=False)
    assert all(line in str(refused.value) for line in EXPECTED)
    assert "sinfo -s" in str(refused.value)
    refuse_placeholders(defaults, per_rule, local=True)  # a local run ignores partitions


def test_an_edited_profile_passes():
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"] = ['slurm_partition="cpu"', "cpus_per_gpu=threads"]
    profile["set-resources"] = ['train_model:slurm_partition="gpu"']
    defaults, per_rule = profile_resources(profile)
    assert placeholder_settings(defaults, per_rule) == []
    refuse_placeholders(defaults, per_rule, local=False)


FAKE_SLURM = """#!/bin/sh
echo "$(basename "$0") $*" >> "{record}"
case "$(basename "$0")" in
  sbatch) echo "Submitted batch job 1" ;;
esac
exit 0
"""


@pytest.fixture
def project(tmp_path):
    """A copy of the workflow with the shipped SLURM profile, and fake SLURM commands first on
    PATH that record every call."""
    (tmp_path / "wf").mkdir()
    work = copy_workflow(tmp_path / "wf")
    shutil.copytree(REPO / "profiles", work / "profiles")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "slurm_calls.txt"
    for command in ("sbatch", "squeue", "sacct", "sinfo", "scontrol", "sacctmgr", "scancel"):
        path = bin_dir / command
        path.write_text(FAKE_SLURM.format(record=record))
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SLURM_JOB_ID", None)
    return work, env, record


def _snakemake(work, env, *args):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
         "--configfile", "tiny.yaml", *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_dry_run_with_the_unedited_profile_warns_and_names_the_keys(project):
    work, env, _ = project
    done = _snakemake(work, env, "--dry-run")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "profile: the execution profile still has placeholder values" in output
    assert all(line in output for line in EXPECTED)


def test_a_slurm_run_with_the_unedited_profile_submits_nothing(project):
    work, env, record = project
    done = _snakemake(work, env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "refusing to submit jobs: the execution profile still has placeholder values" in output
    assert all(line in output for line in EXPECTED)
    calls = record.read_text() if record.exists() else ""
    assert "sbatch" not in calls, calls  # nothing reached the scheduler
    assert not (work / "resources").exists() and not (work / "results").exists()
