"""What every pipeline script does around its one library call.

:func:`job` opens the rule's log file, sets torch's thread count to the job's ``threads`` (only if
the job uses torch, so light jobs do not pay for importing it), routes warnings and Python logging
into the log, and records the traceback there before re-raising so Snakemake marks the job failed.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def job(snakemake: Any, *, uses_torch: bool = False) -> Iterator[Callable[[str], None]]:
    """Context for a script's body; yields ``log(message)`` writing timestamped lines."""
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
    try:
        yield log
    except BaseException:
        stream.write(traceback.format_exc())
        raise
    finally:
        root.removeHandler(handler)
        logging.captureWarnings(False)
        if log_path:
            stream.close()
