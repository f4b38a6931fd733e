"""Run workflows through profiles/slurm on a real single-node SLURM and compare with local runs.

The cluster (ci/slurm/start.sh) is started once for this module and stopped at its end. Each test
runs the same workflow twice in fresh directories: locally with profiles/local, and through
SLURM with profiles/slurm as a user would edit it (slurm_cluster.slurm_test_profile) plus
slurm_cluster.TEST_FLAGS, then requires the same output files.

- test_smoke_workflow_*: tests/data/slurm_smoke/Snakefile (seconds of work, about a minute of
  SLURM round trips). Also checks that every job ran as its own SLURM job, that rules with
  `resources: gpu=1` were given a GPU by SLURM and CPU-only rules none, and that the outputs are
  byte-identical.
- test_start_refuses_*: start.sh neither starts a second copy of a running cluster nor replaces
  an existing /etc/slurm/slurm.conf.
- test_pipeline_tiny_config_*: the project's Snakefile with tests/configs/tiny.yaml; skipped
  while either file is missing. Outputs must be the same set of files (not bytes: timings and
  logs differ between runs).

Tests without the `slurm` marker need no cluster and run in well under a second: both profiles
use only options Snakemake 9 (with the SLURM plugin) knows, and the test helpers' rules.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import slurm_cluster
import yaml
from slurm_cluster import (
    LOCAL_PROFILE,
    REPO,
    START_SCRIPT,
    TEST_FLAGS,
    SlurmCluster,
    clean_env,
    output_digests,
    require_root,
    run_snakemake,
    running_cluster,
    slurm_test_profile,
)
from snakemake.cli import get_argument_parser

SMOKE_SNAKEFILE = REPO / "tests" / "data" / "slurm_smoke" / "Snakefile"
PIPELINE_SNAKEFILE = REPO / "Snakefile"
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"

# Logs of the smoke workflow's jobs, by whether their rule declares `resources: gpu=1`.
SMOKE_GPU_LOGS = ["logs/train.log", "logs/evaluate/a.log", "logs/evaluate/b.log"]
SMOKE_CPU_LOGS = ["logs/make_sample/a.log", "logs/make_sample/b.log", "logs/summarize.log"]
_WHERE = re.compile(r"^slurm_job_id=(\S+) gpus=(\S+)$")


@pytest.fixture(scope="module")
def cluster():
    with running_cluster() as running:
        yield running


def where_jobs_ran(workdir: Path, logs: list[str]) -> dict[str, tuple[str, str]]:
    """Map each smoke job log to (SLURM job id, CUDA_VISIBLE_DEVICES), "none" when unset."""
    placements = {}
    for log in logs:
        text = (workdir / log).read_text().strip()
        match = _WHERE.match(text)
        assert match, f"{log}: unexpected content {text!r}"
        placements[log] = match.groups()
    return placements


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_profile_keys_are_snakemake_options(profile):
    options = {opt for action in get_argument_parser()._actions for opt in action.option_strings}
    config = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    unknown = sorted(key for key in config if f"--{key}" not in options)
    assert not unknown, f"profiles/{profile}: not Snakemake options: {unknown}"


def test_local_profile_limits_gpu_jobs_to_one():
    config = yaml.safe_load((LOCAL_PROFILE / "config.yaml").read_text())
    assert config["cores"] == "all"
    assert "gpu=1" in config["resources"]


def test_slurm_profile_maps_gpu_rules_to_cpus_per_gpu_not_cpus_per_task():
    config = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert config["executor"] == "slurm"
    names = {entry.split("=", 1)[0] for entry in config["default-resources"]}
    # A global cpus_per_task would win over cpus_per_gpu for GPU jobs in the plugin.
    assert "cpus_per_gpu" in names and "cpus_per_task" not in names
    assert {"slurm_partition", "slurm_account", "runtime", "mem_mb"} <= names


def test_test_profile_sets_partition_and_drops_account(tmp_path):
    cluster = SlurmCluster(state_dir=tmp_path, partition="debugq")
    written = yaml.safe_load(
        (slurm_test_profile(cluster, tmp_path / "p") / "config.yaml").read_text()
    )
    resources = written["default-resources"]
    assert 'slurm_partition="debugq"' in resources
    assert not any(entry.startswith("slurm_account") for entry in resources)
    assert written["executor"] == "slurm"


def test_test_profile_names_a_missing_placeholder(tmp_path, monkeypatch):
    profile = tmp_path / "config.yaml"
    profile.write_text("executor: slurm\ndefault-resources:\n  - slurm_partition=x\n")
    monkeypatch.setattr(slurm_cluster, "SLURM_PROFILE", profile)
    with pytest.raises(ValueError, match="slurm_account"):
        slurm_test_profile(SlurmCluster(tmp_path, "ci"), tmp_path / "p")


def test_without_root_the_cluster_tests_fail_in_ci_and_skip_elsewhere(monkeypatch):
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_root()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_root()


@pytest.mark.slurm
def test_start_refuses_a_running_cluster_and_an_existing_slurm_conf(cluster, tmp_path):
    again = subprocess.run(
        ["bash", str(START_SCRIPT), str(cluster.state_dir)], capture_output=True, text=True
    )
    assert again.returncode == 1
    assert "still running" in again.stderr
    other = subprocess.run(
        ["bash", str(START_SCRIPT), str(tmp_path / "other")], capture_output=True, text=True
    )
    assert other.returncode == 1
    assert "/etc/slurm/slurm.conf exists" in other.stderr


@pytest.mark.slurm
def test_smoke_workflow_on_slurm_matches_local_run(cluster, tmp_path):
    snakefile = ["--snakefile", str(SMOKE_SNAKEFILE)]
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    run_snakemake(
        [*snakefile, "--profile", str(LOCAL_PROFILE)], local_dir, clean_env(), timeout_s=120
    )
    profile = slurm_test_profile(cluster, tmp_path / "profile")
    run_snakemake(
        [*snakefile, "--profile", str(profile), *TEST_FLAGS],
        slurm_dir,
        cluster.env(),
        timeout_s=600,
    )

    local_outputs = output_digests(local_dir)
    assert "results/summary.tsv" in local_outputs
    assert output_digests(slurm_dir) == local_outputs

    all_logs = SMOKE_GPU_LOGS + SMOKE_CPU_LOGS
    assert set(where_jobs_ran(local_dir, all_logs).values()) == {("none", "none")}
    placed = where_jobs_ran(slurm_dir, all_logs)
    job_ids = [job_id for job_id, _ in placed.values()]
    assert "none" not in job_ids, f"a job ran outside SLURM: {placed}"
    assert len(set(job_ids)) == len(job_ids), f"jobs shared a SLURM job: {placed}"
    assert all(placed[log][1] != "none" for log in SMOKE_GPU_LOGS), placed
    assert all(placed[log][1] == "none" for log in SMOKE_CPU_LOGS), placed

    # The SLURM run left a complete, consistent state: nothing is left to do.
    dry = run_snakemake(
        [*snakefile, "--profile", str(profile), *TEST_FLAGS, "--dry-run"],
        slurm_dir,
        cluster.env(),
        timeout_s=120,
    )
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slurm
@pytest.mark.workflow
def test_pipeline_tiny_config_on_slurm_matches_local_run(cluster, tmp_path):
    missing = [
        str(p.relative_to(REPO)) for p in (PIPELINE_SNAKEFILE, TINY_CONFIG) if not p.exists()
    ]
    if missing:
        pytest.skip(f"the pipeline is not in this checkout yet: missing {', '.join(missing)}")
    args = ["--snakefile", str(PIPELINE_SNAKEFILE), "--configfile", str(TINY_CONFIG)]
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    for workdir in (local_dir, slurm_dir):
        # As when run from the repository root: the Snakefile's own `configfile:` (relative to
        # the working directory) is found, and tiny.yaml is applied on top of it.
        workdir.mkdir()
        if (REPO / "config").is_dir():
            (workdir / "config").symlink_to(REPO / "config")
    run_snakemake([*args, "--profile", str(LOCAL_PROFILE)], local_dir, clean_env(), 1800)
    profile = slurm_test_profile(cluster, tmp_path / "profile")
    run_snakemake([*args, "--profile", str(profile), *TEST_FLAGS], slurm_dir, cluster.env(), 1800)

    local_files = set(output_digests(local_dir, skip=(".snakemake", "logs", "config")))
    assert local_files, "the local run produced no files"
    assert set(output_digests(slurm_dir, skip=(".snakemake", "logs", "config"))) == local_files
