"""The few lines a person follows on the console (a job's stderr, which Snakemake shows).

Per model job: one closing line (:func:`train_summary`, :func:`evaluate_summary`), and for a
job that runs longer than :data:`PROGRESS_SECONDS` a progress line that often (:class:`Throttle`).
Per run: :func:`workflow_summary`, the Snakefile's ``onsuccess`` message. Per-epoch and
per-condition detail stays in the job's log file.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Seconds between two progress lines of one job. Long enough that a run of many parallel
#: hour-long jobs stays readable, short enough to show that a job is alive.
PROGRESS_SECONDS = 300.0


def console(message: str) -> None:
    """One line on the job's console (stderr, shown by Snakemake), prefixed ``segrobust:``."""
    sys.stderr.write(f"segrobust: {message}\n")
    sys.stderr.flush()


class Throttle:
    """Passes messages to ``emit`` at most once per ``interval`` seconds, the first one only
    after ``interval``: a job reporting every epoch shows a line every ``interval`` seconds, or
    every epoch when epochs take longer."""

    def __init__(
        self,
        emit: Callable[[str], None],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit, self.interval, self.clock = emit, interval, clock
        self.last = clock()

    def __call__(self, message: str) -> None:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.emit(message)


def train_summary(
    what: str, result: Mapping[str, Any], epochs: int, seconds: float, device: str
) -> str:
    """The line a training job ends with: what, best validation Dice and its epoch, time, device."""
    return (
        f"trained {what}: best val Dice {result['best_val_dice']:.3f} "
        f"(epoch {result['best_epoch']}/{epochs}), {seconds:.0f} s on {device}"
    )


def evaluate_summary(what: str, per_image: Any, seconds: float, device: str) -> str:
    """The line an evaluation job ends with: what, the mean Dice of its test images and how
    many there were in how many test conditions, time, device. (The calibration split's Dice
    and the per-condition counts are in the job's log.)"""
    test = per_image[per_image["split"] == "test"]
    return (
        f"evaluated {what}: test Dice {test['dice'].mean():.3f} ({len(test)} images, "
        f"{test['condition'].nunique()} conditions), {seconds:.0f} s on {device}"
    )


def workflow_summary(
    snakemake_logs: str | os.PathLike | Sequence[str | os.PathLike] | None,
    results: str | os.PathLike = "results",
    report: str | os.PathLike = "results/report/index.html",
) -> str:
    """The message a finished Snakemake run ends with (the Snakefile's ``onsuccess``, whose
    ``log`` is the list of Snakemake's log files of the run): where the report is, how many
    models exist and how many this run trained (the ``train_model`` jobs those logs say
    finished, a line Snakemake writes also under ``--quiet rules``), and
    where the per-job logs are."""
    if isinstance(snakemake_logs, (str, os.PathLike)):
        snakemake_logs = [snakemake_logs]
    trained = 0
    for path in snakemake_logs or []:
        if Path(path).is_file():
            text = Path(path).read_text(errors="replace")
            trained += len(
                re.findall(r"^Finished jobid: \d+ \(Rule: train_model\)$", text, re.MULTILINE)
            )
    models = sum(1 for _ in Path(results).glob("*/models/**/model.pt"))
    report = Path(report)
    where = (
        f"the report is {report.resolve()} (open it in a browser)"
        if report.is_file()
        else f"no report yet ({report} is built by a run without targets)"
    )
    return (
        f"segrobust: done; {where}; {models} trained model(s) in {results}/, {trained} of them "
        "trained in this run; per-epoch and per-job logs are in logs/"
    )
