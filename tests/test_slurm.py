"""Run workflows through profiles/slurm on a real single-node SLURM and compare with local runs.

The cluster (ci/slurm/start.sh) is started once for this module and stopped at its end. Each test
runs the same workflow twice in fresh directories: locally with profiles/local, and through
SLURM with profiles/slurm as a user would edit it (slurm_cluster.slurm_test_profile) plus
slurm_cluster.TEST_FLAGS, then requires the same output files.

- test_smoke_workflow_*: tests/data/slurm_smoke/Snakefile (seconds of work, about a minute of
  SLURM round trips). Also checks that every job ran as its own SLURM job, that rules with
  `resources: gpu=1` were given a GPU by SLURM in the GPU partition and CPU-only rules none in
  the default partition (as `scontrol show job` records them), and that the outputs are
  byte-identical.
- test_start_refuses_*: start.sh neither starts a second copy of a running cluster nor replaces
  an existing /etc/slurm/slurm.conf.
- test_pipeline_tiny_config_*: the project's Snakefile with tests/configs/tiny.yaml; skipped
  while either file is missing. Outputs must be the same set of files (not bytes: timings and
  logs differ between runs). Every training job must have run in the GPU partition with a GPU,
  the time limit and memory segrobust.spec.resources derives for it; their `scontrol show job`
  records are printed (visible with `pytest -s`) and written to
  $SEGROBUST_SLURM_RECORD (default: none) for the documentation.

Tests without the `slurm` marker need no cluster and run in well under a second: both profiles
use only options Snakemake 9 (with the SLURM plugin) knows, and the test helpers' rules.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path

import pytest
import slurm_cluster
import yaml
from slurm_cluster import (
    GPU_PARTITION,
    LOCAL_PROFILE,
    PARTITION,
    REPO,
    START_SCRIPT,
    TEST_FLAGS,
    SlurmCluster,
    clean_env,
    output_digests,
    parse_scontrol_jobs,
    requests_a_gpu,
    require_root,
    run_snakemake,
    running_cluster,
    slurm_test_profile,
    submitted_jobs,
    time_limit_minutes,
)
from snakemake.cli import get_argument_parser
from snakemake.utils import update_config, validate

from segrobust.spec.resources import GPU_RULES, request, rule_cost
from segrobust.spec.runs import enabled_studies, study_runs

SMOKE_SNAKEFILE = REPO / "tests" / "data" / "slurm_smoke" / "Snakefile"
PIPELINE_SNAKEFILE = REPO / "workflow" / "Snakefile"
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"

# Logs of the smoke workflow's jobs, by whether their rule declares `resources: gpu=1`.
SMOKE_GPU_LOGS = ["logs/train.log", "logs/evaluate/a.log", "logs/evaluate/b.log"]
SMOKE_GPU_RULES = {"train_model", "evaluate_model"}
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
# Time limits above the floor in the pipeline test: tiny jobs take seconds, which the default
# min_runtime would round up to the same 10 minutes for every job.
VISIBLE_TIME_LIMITS = {"resources": {"min_runtime": 1, "runtime_factor": 50}}
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
    # A global cpus_per_task would win over cpus_per_gpu for GPU jobs in the plugin; a global
    # runtime or mem_mb would be dead text: every rule derives its own.
    assert names == {"slurm_partition", "slurm_account", "cpus_per_gpu"}


def test_test_profile_sets_partition_and_drops_account(tmp_path):
    cluster = SlurmCluster(state_dir=tmp_path, partition="debugq")
    written = yaml.safe_load(
        (slurm_test_profile(cluster, tmp_path / "p") / "config.yaml").read_text()
    )
    resources = written["default-resources"]
    assert 'slurm_partition="debugq"' in resources
    assert not any(entry.startswith("slurm_account") for entry in resources)
    assert written["executor"] == "slurm"
    assert written["set-resources"] == [
        f'{rule}:slurm_partition="{GPU_PARTITION}"'
        for rule in ("train_model", "evaluate_model", "predict_images")
    ]


def test_test_profile_names_a_missing_placeholder(tmp_path, monkeypatch):
    profile = tmp_path / "config.yaml"
    profile.write_text("executor: slurm\ndefault-resources:\n  - slurm_partition=x\n")
    monkeypatch.setattr(slurm_cluster, "SLURM_PROFILE", profile)
    with pytest.raises(ValueError, match="slurm_account"):
        slurm_test_profile(SlurmCluster(tmp_path, "ci"), tmp_path / "p")
    profile.write_text(
        "executor: slurm\ndefault-resources:\n  - slurm_partition=x\n  - slurm_account=y\n"
    )
    with pytest.raises(ValueError, match="EDIT_ME_gpu_partition"):
        slurm_test_profile(SlurmCluster(tmp_path, "ci"), tmp_path / "p")


def test_scontrol_records_are_parsed():
    text = (
        "JobId=7 JobName=abc UserId=root(0) Comment=rule_train_model_wildcards_a_1 "
        "TimeLimit=1-02:03:00 Partition=gpu TRES=cpu=1,mem=100M,node=1,billing=1 "
        "MinMemoryNode=100M TresPerJob=gres:gpu:1 WorkDir=/tmp/x\n"
        "JobId=8 Partition=ci TimeLimit=00:10:00 TRES=cpu=1,mem=2G,node=1 WorkDir=/tmp/x\n"
        "JobId=9 Partition=gpu TimeLimit=00:04:30 AllocTRES=cpu=1,node=1,gres/gpu=1\n"
    )
    first, second, third = parse_scontrol_jobs(text)
    assert second["_line"] == text.splitlines()[1]
    assert first["Partition"] == "gpu" and requests_a_gpu(first) and requests_a_gpu(third)
    assert first["Comment"] == "rule_train_model_wildcards_a_1"
    assert not requests_a_gpu(second)
    assert time_limit_minutes(first["TimeLimit"]) == (24 + 2) * 60 + 3
    assert time_limit_minutes(second["TimeLimit"]) == 10
    assert time_limit_minutes(third["TimeLimit"]) == 5  # seconds rounded up
    with pytest.raises(ValueError, match="UNLIMITED"):
        time_limit_minutes("UNLIMITED")


def test_without_root_the_cluster_tests_fail_in_ci_and_skip_elsewhere(monkeypatch):
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_root()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_root()


@pytest.mark.slurm
def test_start_replaces_the_link_left_by_a_killed_test_cluster(tmp_path):
    """A test cluster killed before stop.sh (a cancelled CI job) leaves /etc/slurm/slurm.conf
    pointing into its state directory; the next start must take over, not refuse forever.
    Runs before the module's `cluster` fixture starts a cluster (tests run in file order)."""
    slurm_cluster.require_root()
    dead = tmp_path / "dead"
    (dead / "run").mkdir(parents=True)
    (dead / "slurm.conf").write_text("# from a killed test cluster\n")
    (dead / "env.sh").write_text(f"export SLURM_CONF={dead / 'slurm.conf'}\n")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs a SLURM daemon
    (dead / "run" / "slurmctld.pid").write_text(f"{gone.pid}\n")
    system_conf = Path("/etc/slurm/slurm.conf")
    system_conf.parent.mkdir(parents=True, exist_ok=True)
    if system_conf.is_symlink() or system_conf.exists():
        assert system_conf.is_symlink(), f"{system_conf} is a real file; not touching it"
        system_conf.unlink()
    system_conf.symlink_to(dead / "slurm.conf")
    try:
        with running_cluster() as running:
            assert system_conf.resolve() == running.slurm_conf.resolve()
        assert not system_conf.is_symlink(), "stop.sh leaves no link behind"
    finally:
        if system_conf.is_symlink() and system_conf.resolve() == (dead / "slurm.conf").resolve():
            system_conf.unlink()


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

    # What SLURM recorded: GPU rules in the GPU partition with a GPU, the others in the default
    # partition without one (profiles/slurm's set-resources, as a user edits it).
    jobs = submitted_jobs(cluster, slurm_dir)
    assert len(jobs) == len(all_logs), jobs
    for job in jobs:
        rule = re.match(r"rule_([a-z_]+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)
        gpu_rule = rule in SMOKE_GPU_RULES
        assert job["Partition"] == (GPU_PARTITION if gpu_rule else PARTITION), job
        assert requests_a_gpu(job) == gpu_rule, job

    # The SLURM run left a complete, consistent state: nothing is left to do.
    dry = run_snakemake(
        [*snakefile, "--profile", str(profile), *TEST_FLAGS, "--dry-run"],
        slurm_dir,
        cluster.env(),
        timeout_s=120,
    )
    assert "Nothing to be done" in dry.stdout + dry.stderr


def expected_train_requests(configfiles: list[Path]) -> dict[str, tuple[int, int]]:
    """(runtime minutes, mem_mb) segrobust.spec.resources derives for every training job of the
    config Snakemake builds from config/config.yaml and ``configfiles``, keyed by the comment the
    SLURM plugin gives the job (``rule_train_model_wildcards_`` + the wildcard values)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for path in configfiles:
        update_config(config, yaml.safe_load(path.read_text()))
    validate(config, str(SCHEMA))
    expected = {}
    for study in enabled_studies(config):
        for run in study_runs(config, study):
            values = [run.study, run.dataset, run.arch, run.patch, str(run.seed)]
            wildcards = dict(
                zip(("study", "dataset", "arch", "patch", "seed"), values, strict=True)
            )
            wanted = request(rule_cost(config, "train_model", wildcards), config["resources"])
            expected["rule_train_model_wildcards_" + "_".join(values)] = (
                wanted.runtime,
                wanted.mem_mb,
            )
    return expected


def memory_mb(value: str) -> int:
    """SLURM's MinMemoryNode (e.g. 1234M, 2G) in MB."""
    number, unit = re.fullmatch(r"(\d+)([MGT]?)", value).groups()
    return int(number) * {"": 1, "M": 1, "G": 1024, "T": 1024**2}[unit]


def record_training_jobs(jobs: list[dict[str, str]]) -> str:
    """The `scontrol show job --oneliner` lines of the training jobs; printed, and written to
    $SEGROBUST_SLURM_RECORD when set."""
    text = "\n".join(job["_line"] for job in jobs) + "\n"
    print("scontrol show job (training jobs):\n" + text)
    if os.environ.get("SEGROBUST_SLURM_RECORD"):
        Path(os.environ["SEGROBUST_SLURM_RECORD"]).write_text(text)
    return text


@pytest.mark.slurm
@pytest.mark.workflow
def test_pipeline_tiny_config_on_slurm_matches_local_run(cluster, tmp_path):
    missing = [
        str(p.relative_to(REPO)) for p in (PIPELINE_SNAKEFILE, TINY_CONFIG) if not p.exists()
    ]
    if missing:
        pytest.skip(f"the pipeline is not in this checkout yet: missing {', '.join(missing)}")
    overlay = tmp_path / "time_limits.yaml"
    overlay.write_text(yaml.safe_dump(copy.deepcopy(VISIBLE_TIME_LIMITS)))
    configfiles = [TINY_CONFIG, overlay]
    args = ["--snakefile", str(PIPELINE_SNAKEFILE), "--configfile", *map(str, configfiles)]
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

    # Each training job ran where profiles/slurm sends GPU rules, with a GPU, and with the time
    # limit and memory derived for it from the config (not a flat default).
    expected = expected_train_requests(configfiles)
    jobs = submitted_jobs(cluster, slurm_dir)
    training = [job for job in jobs if job["Comment"].startswith("rule_train_model_")]
    record_training_jobs(training)
    assert {job["Comment"] for job in training} == set(expected)
    for job in training:
        minutes, mem_mb = expected[job["Comment"]]
        assert job["Partition"] == GPU_PARTITION, job
        assert requests_a_gpu(job), job
        assert time_limit_minutes(job["TimeLimit"]) == minutes > 1, job
        assert memory_mb(job["MinMemoryNode"]) == mem_mb, job
    for job in jobs:
        rule = re.match(r"rule_([a-z_]+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)
        gpu_rule = rule in GPU_RULES
        assert job["Partition"] == (GPU_PARTITION if gpu_rule else PARTITION), job
        assert requests_a_gpu(job) == gpu_rule, job
