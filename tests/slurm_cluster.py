"""Start and stop the single-node test SLURM cluster (ci/slurm/) from tests, and run Snakemake.

`running_cluster()` wraps ci/slurm/start.sh and ci/slurm/stop.sh in a context manager, so the
daemons are stopped even when a test fails. `slurm_test_profile()` writes the copy of
profiles/slurm a user would make on this cluster: the partition placeholders set to the test
cluster's CPU and GPU partitions, the account placeholder removed (the test cluster has no
accounts). `TEST_FLAGS` are the only settings the test adds on the command line, each for a
property of the test cluster, not of the workflow. `submitted_jobs()` reads what SLURM recorded
for the jobs of a run (partition, GPUs, time limit) with `scontrol show job`.

Policy on missing prerequisites: the cluster needs root (it installs packages and starts
daemons as root). Without root, outside CI, tests using it are skipped with that reason; in CI
(`CI=true`) they fail instead, and a cluster that cannot start always fails the test.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
START_SCRIPT = REPO / "ci" / "slurm" / "start.sh"
STOP_SCRIPT = REPO / "ci" / "slurm" / "stop.sh"
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
LOCAL_PROFILE = REPO / "profiles" / "local"

PARTITION = "ci"
GPU_PARTITION = "gpu"
#: The profile's placeholders, as a user finds them before editing.
PLACEHOLDERS = {
    "slurm_partition": '"EDIT_ME_partition"',
    "slurm_account": '"EDIT_ME_account"',
    "gpu_partition": '"EDIT_ME_gpu_partition"',
}
# Seconds start.sh may take: it may first apt-get install slurm-wlm and munge.
START_TIMEOUT_S = 900

# Command-line settings for the test cluster only (see docs/cluster.md):
TEST_FLAGS = [
    # No accounting database, so no sacct: ask squeue for job states.
    "--slurm-status-command",
    "squeue",
    # Jobs here finish in seconds; the default first status check comes after 40 s.
    "--slurm-init-seconds-before-status-checks",
    "1",
    # A failure in a test is a bug: report it at once instead of retrying the job.
    "--retries",
    "0",
]

# Environment variables that tell a process where (and on which GPUs) it runs: removed before
# every Snakemake run so a test behaves the same inside a CI job, a SLURM job or a shell.
_PLACEMENT_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_CONF")


class SlurmStartError(RuntimeError):
    """ci/slurm/start.sh failed; the message carries its output and the daemon logs."""


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster: where its files are and which partition takes jobs."""

    state_dir: Path
    partition: str
    gpu_partition: str = GPU_PARTITION

    @property
    def slurm_conf(self) -> Path:
        return self.state_dir / "slurm.conf"

    def env(self) -> dict[str, str]:
        """Environment for SLURM clients (sbatch, squeue, Snakemake) that talk to this cluster."""
        return {**clean_env(), "SLURM_CONF": str(self.slurm_conf)}


def in_ci() -> bool:
    """True when the CI environment variable says so (GitHub, GitLab and others set CI=true)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def clean_env() -> dict[str, str]:
    """This process's environment without SLURM job variables and GPU placement."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _PLACEMENT_VARS and not key.startswith(("SLURM_", "SBATCH_", "SRUN_"))
    }


def require_root() -> None:
    """Skip the calling test without root outside CI; fail it in CI, where it must run."""
    if os.geteuid() == 0:
        return
    reason = (
        "the single-node SLURM test needs root: ci/slurm/start.sh installs slurm-wlm and "
        f"munge and runs the daemons as root (running as uid {os.geteuid()})"
    )
    if in_ci():
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@contextmanager
def running_cluster(
    partition: str = PARTITION, gpu_partition: str = GPU_PARTITION
) -> Iterator[SlurmCluster]:
    """Start the single-node cluster in a fresh state directory; stop it and clean up on exit.

    Set SEGROBUST_SLURM_KEEP=1 to keep the state directory (configs, daemon logs) afterwards.
    Raises SlurmStartError when start.sh fails.
    """
    require_root()
    state_dir = Path(tempfile.mkdtemp(prefix="segrobust-slurm."))
    env = {
        **clean_env(),
        "SEGROBUST_SLURM_PARTITION": partition,
        "SEGROBUST_SLURM_GPU_PARTITION": gpu_partition,
    }
    try:
        started = subprocess.run(
            ["bash", str(START_SCRIPT), str(state_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if started.returncode != 0:
            raise SlurmStartError(
                f"{START_SCRIPT} exited with {started.returncode}\n"
                f"--- stdout ---\n{started.stdout}\n--- stderr ---\n{started.stderr}"
            )
        yield SlurmCluster(state_dir=state_dir, partition=partition, gpu_partition=gpu_partition)
    finally:
        stopped = subprocess.run(
            ["bash", str(STOP_SCRIPT), str(state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if os.environ.get("SEGROBUST_SLURM_KEEP") != "1":
            shutil.rmtree(state_dir, ignore_errors=True)
        if stopped.returncode != 0:
            raise RuntimeError(f"{STOP_SCRIPT} failed:\n{stopped.stdout}\n{stopped.stderr}")


def slurm_test_profile(cluster: SlurmCluster, dest: Path) -> Path:
    """Write profiles/slurm as a user would edit it for `cluster` into `dest`; return `dest`.

    The partition placeholders become the cluster's CPU and GPU partitions, the account line is
    removed. Raises ValueError naming the key when the profile lacks a placeholder, since then
    the documented editing step no longer matches the file.
    """
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    resources = profile.get("default-resources", [])
    names = [entry.split("=", 1)[0].strip() for entry in resources]
    for key in ("slurm_partition", "slurm_account"):
        if key not in names:
            raise ValueError(f"{SLURM_PROFILE}: default-resources has no {key} entry")
    profile["default-resources"] = [
        f'slurm_partition="{cluster.partition}"' if name == "slurm_partition" else entry
        for name, entry in zip(names, resources, strict=True)
        if name != "slurm_account"
    ]
    gpu_entries = [
        entry
        for entry in profile.get("set-resources", [])
        if entry.endswith(f"slurm_partition={PLACEHOLDERS['gpu_partition']}")
    ]
    if not gpu_entries:
        raise ValueError(
            f"{SLURM_PROFILE}: set-resources has no <rule>:slurm_partition="
            f"{PLACEHOLDERS['gpu_partition']} entry"
        )
    profile["set-resources"] = [
        entry.replace(PLACEHOLDERS["gpu_partition"], f'"{cluster.gpu_partition}"')
        for entry in profile["set-resources"]
    ]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def parse_scontrol_jobs(text: str) -> list[dict[str, str]]:
    """The records of `scontrol show job --oneliner` output, one dict of its KEY=VALUE fields
    per job (values hold no spaces in the fields used here), the whole line under "_line"."""
    jobs = []
    for line in text.splitlines():
        if line.startswith("JobId="):
            jobs.append({**dict(re.findall(r"(\S+?)=(\S*)", line)), "_line": line})
    return jobs


def submitted_jobs(cluster: SlurmCluster, workdir: Path) -> list[dict[str, str]]:
    """What SLURM recorded for the jobs Snakemake submitted from `workdir`: `scontrol show job`
    fields (Partition, TimeLimit, ReqTRES, Comment = "rule_<name>_wildcards_...", ...). The test
    cluster keeps finished jobs visible for an hour (MinJobAge in start.sh)."""
    shown = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    where = str(workdir.resolve())
    return [job for job in parse_scontrol_jobs(shown.stdout) if job.get("WorkDir") == where]


def time_limit_minutes(value: str) -> int:
    """SLURM's TimeLimit as `scontrol show job` prints it ([days-]hours:minutes:seconds) in
    minutes, seconds rounded up."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+):(\d+)", value)
    if not match:
        raise ValueError(f"not a TimeLimit of scontrol: {value!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return (days * 24 + hours) * 60 + minutes + math.ceil(seconds / 60)


def requests_a_gpu(job: Mapping[str, str]) -> bool:
    """Whether SLURM recorded a GPU request for `job`: `--gpus=1` shows as
    TresPerJob=gres:gpu:1 (`--gres` as TresPerNode); clusters that account GPUs also list
    gres/gpu in the job's TRES."""
    fields = ("TresPerJob", "TresPerNode", "TresPerTask", "ReqTRES", "AllocTRES", "TRES")
    return any(marker in job.get(key, "") for key in fields for marker in ("gres:gpu", "gres/gpu"))


def run_snakemake(
    args: list[str], workdir: Path, env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess:
    """Run this interpreter's Snakemake in `workdir`; on failure, fail with its output's tail."""
    workdir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-6000:]
        pytest.fail(f"snakemake {' '.join(args)} exited with {done.returncode}:\n{output}")
    return done


def output_digests(workdir: Path, skip: tuple[str, ...] = (".snakemake", "logs")) -> dict:
    """Map every file under `workdir` (outside the top-level dirs in `skip`) to its sha256."""
    digests = {}
    for path in sorted(workdir.rglob("*")):
        rel = path.relative_to(workdir)
        if path.is_file() and rel.parts[0] not in skip:
            digests[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests
