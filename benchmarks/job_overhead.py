"""Fixed cost per job: how much of the training and evaluation jobs' time is not their work.

A job's *work* is the span between the ``first_step`` and ``last_step`` timing lines its log
holds (``segrobust.execution.job.mark``: the epoch loop of a training job; reading the test sets,
predicting and scoring of an evaluation job). Everything else of the job's wall time (its
benchmark file, ``s``) is *fixed cost*: interpreter start, imports, data loading, model
construction, writing the outputs, exit. The report splits it into process start -> first step,
last step -> the end of the job body, and the rest (shell, interpreter start-up and teardown),
and gives its share of the summed job time (target: <= 15 %).

Logs of a run made before the timing lines existed have none: training jobs then count the
summed epoch seconds of ``train_log.csv`` as work (their checkpoint writes fall into the fixed
cost), evaluation jobs are reported as unmeasured.

    # a finished run (its results/ and logs/), e.g. after `make run`:
    python benchmarks/job_overhead.py
    python benchmarks/job_overhead.py --workdir /path/to/a/run

    # run the default study in a fresh copy of this repository first (15-20 min on 2 cores):
    python benchmarks/job_overhead.py --run /tmp/overhead-run [--cores 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULES = {"train": "train_model", "evaluate": "evaluate_model"}
TARGET_SHARE = 0.15


@dataclass
class JobTime:
    """One job's wall time split into work and fixed cost (seconds; None: not measured)."""

    rule: str
    path: str
    total: float
    work: float | None
    to_first: float | None = None
    after_last: float | None = None

    @property
    def fixed(self) -> float | None:
        return None if self.work is None else self.total - self.work

    @property
    def outside(self) -> float | None:
        """Wall time outside the job body's own clock (shell, interpreter start and exit)."""
        if self.to_first is None or self.after_last is None or self.work is None:
            return None
        return self.total - (self.to_first + self.work + self.after_last)


def read_timing(log: Path) -> dict[str, tuple[float, str]]:
    """``timing <what> <epoch seconds> [details]`` lines of a job log: what -> (time, details);
    the first ``first_step`` and the last ``last_step`` count."""
    marks: dict[str, tuple[float, str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = re.match(r"^timing (\w+) ([0-9.]+)\s*(.*)$", line)
        if match:
            what, when, details = match.group(1), float(match.group(2)), match.group(3)
            if what != "first_step" or what not in marks:
                marks[what] = (when, details)
    return marks


def benchmark_seconds(tsv: Path) -> float:
    """The wall time Snakemake's ``benchmark:`` recorded for a job (column ``s``)."""
    with tsv.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return float(rows[-1]["s"])


def epoch_seconds(workdir: Path, study: str, path: str) -> float | None:
    """Summed epoch seconds of a training run's ``train_log.csv`` (None if it is missing)."""
    train_log = workdir / "results" / study / "models" / path / "train_log.csv"
    if not train_log.is_file():
        return None
    with train_log.open() as handle:
        return sum(float(row["seconds"]) for row in csv.DictReader(handle))


def job_times(workdir: Path) -> list[JobTime]:
    """Every training and evaluation job of a finished run in ``workdir``."""
    times = []
    for tsv in sorted((workdir / "results").glob("*/benchmarks/*/**/*.tsv")):
        study = tsv.relative_to(workdir / "results").parts[0]
        stage = tsv.relative_to(workdir / "results" / study / "benchmarks").parts[0]
        if stage not in RULES:
            continue
        path = str(
            tsv.relative_to(workdir / "results" / study / "benchmarks" / stage).with_suffix("")
        )
        job = JobTime(RULES[stage], f"{study}/{path}", benchmark_seconds(tsv), None)
        log = workdir / "logs" / study / stage / f"{path}.log"
        marks = read_timing(log) if log.is_file() else {}
        if {"process_start", "first_step", "last_step", "exit"} <= set(marks):
            job.work = marks["last_step"][0] - marks["first_step"][0]
            job.to_first = marks["first_step"][0] - marks["process_start"][0]
            job.after_last = marks["exit"][0] - marks["last_step"][0]
        elif stage == "train":
            job.work = epoch_seconds(workdir, study, path)
        times.append(job)
    return times


def _sum(values) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _fmt(value: float | None, width: int = 9) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.1f}"


def report(times: list[JobTime]) -> float | None:
    """Print the table; return the fixed-cost share of the summed job time (None when some
    job's work is unmeasured)."""
    header = (
        f"{'rule':<16}{'jobs':>5}{'summed s':>10}{'work s':>9}{'fixed s':>9}{'fixed/job':>10}"
        f"{'start->1st':>11}{'last->end':>10}{'outside':>9}"
    )
    print(header)
    groups = {rule: [t for t in times if t.rule == rule] for rule in RULES.values()}
    groups["both"] = times
    for name, group in groups.items():
        if not group:
            continue
        total, work = sum(t.total for t in group), _sum(t.work for t in group)
        fixed = None if work is None else total - work
        print(
            f"{name:<16}{len(group):>5}{_fmt(total, 10)}{_fmt(work)}{_fmt(fixed)}"
            f"{_fmt(None if fixed is None else fixed / len(group), 10)}"
            f"{_fmt(_sum(t.to_first for t in group), 11)}"
            f"{_fmt(_sum(t.after_last for t in group), 10)}{_fmt(_sum(t.outside for t in group))}"
        )
    total, fixed = sum(t.total for t in times), _sum(t.fixed for t in times)
    if fixed is None:
        print("\nsome jobs have no timing lines (a run older than the timing marks): no share")
        return None
    share = fixed / total
    verdict = "meets" if share <= TARGET_SHARE else "misses"
    print(
        f"\nfixed cost: {fixed:.1f} s of {total:.1f} s summed job time = {share:.1%} "
        f"({verdict} the target of <= {TARGET_SHARE:.0%})"
    )
    return share


def run_study(workdir: Path, cores: int) -> float:
    """Copy the repository to ``workdir`` and run the default study there; returns the wall
    time. ``PYTHONPATH`` points at the copy's ``src`` (the installed package may be another)."""
    if workdir.exists():
        sys.exit(f"{workdir} exists; give a new directory")
    shutil.copytree(
        REPO, workdir,
        ignore=shutil.ignore_patterns(".git", "results", "resources", "logs", ".snakemake",
                                      "__pycache__"),
    )  # fmt: skip
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--resources", "gpu=1"]
    print(f"running in {workdir}: PYTHONPATH={workdir / 'src'} {' '.join(command)}", flush=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    (workdir / "console.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"the run failed; see {workdir / 'console.txt'}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path.cwd(),
                        help="a finished run's directory (holding results/ and logs/)")  # fmt: skip
    parser.add_argument("--run", type=Path, help="run the default study in this new directory")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    workdir = args.workdir
    if args.run is not None:
        wall = run_study(args.run, args.cores)
        print(f"default study: {wall:.0f} s wall on {args.cores} cores")
        workdir = args.run
    times = job_times(workdir)
    if not times:
        sys.exit(f"no training or evaluation benchmark files under {workdir / 'results'}")
    print(f"jobs of the run in {workdir}:")
    report(times)


if __name__ == "__main__":
    main()
