"""What every pipeline script does around its one library call: the job's log and timing lines.

:func:`job` opens the rule's log file, routes warnings and Python logging into it, and records
the traceback there before re-raising so Snakemake marks the job failed. It also writes timing
lines (``timing <what> <epoch seconds>``: process start, job start, the first and last training
/ inference step through :func:`mark`, exit with CPU time and peak memory), which
``benchmarks/job_overhead.py`` reads to measure each job's fixed cost.

It does not set torch's thread count: on the CPU that count changes float reduction order and
so the numbers a job writes (``segrobust.training.device.set_compute_threads``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from segrobust.execution.console import console

_log_stream: IO[str] | None = None  # the running job's log, for mark()


def process_start() -> float:
    """When this process started (epoch seconds): the job's real start, before its imports.

    On Linux from ``/proc/self/stat`` (start in clock ticks since boot, 10 ms) against
    ``CLOCK_BOOTTIME``: ``psutil``'s ``create_time`` adds the boot time, which Linux gives in
    whole seconds, and would misplace the start by up to a second.
    """
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
def job(snakemake: Any) -> Iterator[Callable[[str], None]]:
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

    log(f"rule {snakemake.rule}: threads={snakemake.threads}")
    _timing(stream, "process_start", process_start(), f" pid={os.getpid()}")
    _timing(stream, "job_start", time.time())
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
