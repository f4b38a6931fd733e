"""What every pipeline script does around its one library call.

:func:`job` opens the rule's log file, sets torch's thread count to the job's ``threads`` (only if
the job uses torch, so light jobs do not pay for importing it), routes warnings and Python logging
into the log, and records the traceback there before re-raising so Snakemake marks the job failed.
It also writes timing lines (``timing <what> <epoch seconds>``: process start, job start, the
first and last training / inference step through :func:`mark`, exit with CPU time and peak
memory), which ``benchmarks/job_overhead.py`` reads to measure each job's fixed cost.

:func:`run_script` is the ``__main__`` of the scripts of the network rules: it runs the script in
a child of the preload server (``segrobust.preload``), which has torch and MONAI imported
already, and falls back to this process when there is none.

:func:`console` writes the few lines a person follows on the console (the job's stderr, which
Snakemake shows): :class:`Throttle` keeps a long job's progress to one line per interval, and
:func:`train_summary` / :func:`evaluate_summary` give the one line each job ends with.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from segrobust import preload
from segrobust.gpus import slots_per_device

#: What the preload server imports: everything heavy the training and evaluation scripts import
#: (MONAI's package imports all of its subpackages), plus what Snakemake's script preamble needs.
PRELOAD = (
    "torch",
    "torch._dynamo",  # imported by every torch optimizer's add_param_group: ~0.8 s per job
    "monai",
    "pandas",
    "snakemake.iocontainers",
    "snakemake.logging",
    "segrobust.contract",
    "segrobust.training.device",
    "segrobust.training.train",
    "segrobust.evaluation.evaluate",
)
#: Seconds between two progress lines of one job on the console (an epoch may take longer).
PROGRESS_SECONDS = 30.0

_log_stream: IO[str] | None = None  # the running job's log, for mark()


def process_start() -> float:
    """When this job's process started (epoch seconds): the job process a preloaded child
    serves, else this process.

    On Linux from ``/proc/self/stat`` (start in clock ticks since boot, 10 ms) against
    ``CLOCK_BOOTTIME``: ``psutil``'s ``create_time`` adds the boot time, which Linux gives in
    whole seconds, and would misplace the start by up to a second.
    """
    started = preload.child_started()
    if started is not None:
        return started
    if sys.platform.startswith("linux"):
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 on
        ticks_since_boot = int(fields[19])  # field 22, starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks_since_boot / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    import psutil  # a dependency of Snakemake

    return psutil.Process().create_time()


def _timing(stream: IO[str], what: str, when: float, extra: str = "") -> None:
    stream.write(f"timing {what} {when:.3f}{extra}\n")


def mark(what: str) -> None:
    """Record ``timing <what> <now>`` in the running job's log (nothing outside a job).

    The library marks ``first_step`` and ``last_step`` around a job's work (the training epochs,
    the predictions); everything before and after is the job's fixed cost.
    """
    if _log_stream is not None:
        _timing(_log_stream, what, time.time())


@contextlib.contextmanager
def job(snakemake: Any, *, uses_torch: bool = False) -> Iterator[Callable[[str], None]]:
    """Context for a script's body; yields ``log(message)`` writing timestamped lines."""
    global _log_stream
    log_path = Path(snakemake.log[0]) if snakemake.log else None
    stream = open(log_path, "w", buffering=1) if log_path else sys.stderr  # noqa: SIM115
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)

    def log(message: str) -> None:
        stream.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    if uses_torch:
        import torch

        torch.set_num_threads(max(1, int(snakemake.threads)))
    log(f"rule {snakemake.rule}: threads={snakemake.threads}")
    _timing(stream, "process_start", process_start(), f" pid={os.getpid()}")
    _timing(stream, "job_start", time.time(), f" preloaded={preload.child_started() is not None}")
    _log_stream = stream
    try:
        yield log
    except BaseException as exc:
        stream.write(traceback.format_exc())
        console(failure_line(snakemake, exc, log_path))
        raise
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu, peak_mb = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
        _timing(stream, "exit", time.time(), f" cpu_s={cpu:.2f} max_rss_mb={peak_mb:.0f}")
        _log_stream = None
        root.removeHandler(handler)
        logging.captureWarnings(False)
        if log_path:
            stream.close()


def failure_line(snakemake: Any, exc: BaseException, log_path: Path | None) -> str:
    """The console line of a failed job: which job, why, and where its log is (``make run``
    keeps Snakemake's per-job blocks, its error block included, off the console)."""
    wildcards = ", ".join(f"{key}={value}" for key, value in snakemake.wildcards.items())
    where = f" ({wildcards})" if wildcards else ""
    log = f"; its log: {log_path}" if log_path else ""
    return f"rule {snakemake.rule}{where} failed: {type(exc).__name__}: {exc}{log}"


def run_script(main: Callable[[Any], None], snakemake: Any) -> None:
    """Run a script's ``main(snakemake)`` in a preloaded child (``segrobust.preload``) when
    config ``execution.preload`` allows it, else in this process.

    A script using it keeps its heavy imports inside ``main``: the job process then imports
    nothing heavy and the child finds everything imported. Exits with the child's status.
    """
    if preload.child_started() is not None or not preload_wanted(snakemake.config, os.environ):
        main(snakemake)
        return
    try:
        status = preload.run_in_server(sys.argv[0], preload=PRELOAD, started=process_start())
    except preload.PreloadUnavailable as exc:
        console(f"{exc}; this job imports torch itself")
        main(snakemake)
        return
    if status:
        sys.exit(status)


def preload_wanted(config: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Whether jobs should use the preload server: config ``execution.preload``, on Linux, and
    not inside a SLURM job (a server started there dies with the allocation and would only add
    its start-up to the job's)."""
    return (
        bool(config["execution"]["preload"])
        and preload.supported()
        and ("SLURM_JOB_ID" not in environ)
    )


def gpu_placement(snakemake: Any) -> dict[str, Any]:
    """The arguments of ``segrobust.training.device.job_device`` for this job: its rule's
    jobs per GPU and the GPU's slots (config ``execution.gpu_jobs_per_device``), and whether it
    holds the ``gpu``/``gpu_slots`` resource."""
    sharing = snakemake.config["execution"]["gpu_jobs_per_device"]
    resources = snakemake.resources
    held = any(int(resources.get(name, 0) or 0) > 0 for name in ("gpu", "gpu_slots"))
    return {
        "jobs_per_device": int(sharing[snakemake.rule]),
        "slots_per_gpu": slots_per_device(sharing),
        "holds_gpu_resource": held or bool(resources.get("gres")),
    }


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
        f"trained {what}: best validation Dice {result['best_val_dice']:.3f} at epoch "
        f"{result['best_epoch']}/{epochs}, {seconds:.0f} s on {device}"
    )


def evaluate_summary(what: str, per_image: Any, seconds: float, device: str) -> str:
    """The line an evaluation job ends with: what, images and conditions, mean Dice per split,
    time, device."""
    means = per_image.groupby("split", sort=True)["dice"].mean()
    dice = ", ".join(f"{split} {value:.3f}" for split, value in means.items())
    conditions = per_image[["condition", "split"]].drop_duplicates()
    return (
        f"evaluated {what}: {len(per_image)} images in {len(conditions)} test sets, mean Dice "
        f"{dice}, {seconds:.0f} s on {device}"
    )


def workflow_summary(
    snakemake_logs: str | os.PathLike | Sequence[str | os.PathLike] | None,
    results: str | os.PathLike = "results",
    report: str | os.PathLike = "results/report/index.html",
) -> str:
    """The message a finished Snakemake run ends with (the Snakefile's ``onsuccess``, whose
    ``log`` is the list of Snakemake's log files of the run): where the report is, how many
    models exist and how many this run trained (the ``train_model`` jobs those logs say
    finished, a line Snakemake writes also under ``--quiet rules``), and where the per-job logs
    are."""
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
