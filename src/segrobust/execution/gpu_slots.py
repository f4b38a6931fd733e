"""Which GPU a job takes (issue 15.3): one job per GPU, distinct GPUs for concurrent jobs, without
torch.

On a workstation with N GPUs Snakemake's ``--resources gpu=N`` bounds how many GPU jobs run at
once, but says nothing about which GPU each one uses: left alone, every job would start on
``cuda:0``. Each job therefore takes a GPU with :func:`claim_gpu`: one lock file per device,
held with ``fcntl.flock`` for the life of the process, so the kernel releases it on any exit,
crash and ``SIGKILL`` included, and the next job takes the GPU of a holder that died. The lock
files, not the scheduler's arithmetic, guarantee that no GPU runs two jobs: a job that finds
every GPU taken waits.

Several jobs sharing one GPU is not offered: it was never measured to pay
(``docs/decisions.md``); ``benchmarks/gpu_packing.py`` measures it on a GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class GpuSlotError(RuntimeError):
    """A GPU request that can never be met, naming what was asked and what exists."""


def device_labels(n_devices: int, environ: Mapping[str, str]) -> list[str]:
    """A stable name per visible device for its lock file: the entries of
    ``CUDA_VISIBLE_DEVICES`` (physical indices or UUIDs) when it lists them, else ``0..n-1``."""
    listed = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if len(listed) >= n_devices:
        return [re.sub(r"[^A-Za-z0-9_.-]", "_", v) for v in listed[:n_devices]]
    return [str(i) for i in range(n_devices)]


def lock_scope(environ: Mapping[str, str]) -> str:
    """Whose GPUs the locks are about: the SLURM allocation (jobs run inside one allocation
    share its GPUs, other allocations have their own), else this machine."""
    job_id = environ.get("SLURM_JOB_ID")
    if job_id:
        return f"slurm-{job_id}"
    return f"host-{socket.gethostname()}"


def private_dir(*parts: str, base: str | os.PathLike | None = None) -> Path:
    """``<tmp>/segrobust-<uid>/<parts...>``, every level created ``0700``: the user's
    machine-local state (the GPU locks).

    Raises:
        PermissionError: a level is not a directory owned by the user and closed to others
            (another user must not be able to plant files there).
    """
    path = Path(base) if base is not None else Path(tempfile.gettempdir())
    for name in (f"segrobust-{os.getuid()}", *parts):
        path = path / name
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        info = path.lstat()
        if (
            not path.is_dir()
            or path.is_symlink()
            or info.st_uid != os.getuid()
            or (info.st_mode & 0o077)
        ):
            raise PermissionError(
                f"{path} is not a private directory of this user (owner uid {info.st_uid}, "
                f"mode {info.st_mode & 0o777:o}); remove it or set TMPDIR elsewhere"
            )
    return path


def default_lock_dir(environ: Mapping[str, str]) -> Path:
    """``<tmp>/segrobust-<uid>/gpu-locks/<lock_scope>``: node-local (``flock`` is unreliable on
    network file systems) and shared by every project of the user, so two studies run side by
    side on one workstation do not land on the same GPU either."""
    return private_dir("gpu-locks") / lock_scope(environ)


@dataclass
class GpuClaim:
    """A GPU held by this process; released by :meth:`release` or when the process ends.

    Attributes:
        index: the device's index among the visible devices (``cuda:<index>``).
        label: its lock-file name (see :func:`device_labels`).
    """

    index: int
    label: str
    _file: IO[bytes] | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops its flock
            self._file = None


def _lock_path(lock_dir: Path, label: str) -> Path:
    return lock_dir / f"gpu-{label}.lock"


def _try_lock(path: Path) -> IO[bytes] | None:
    """An open handle holding an exclusive flock on ``path``, or None if another process holds
    it."""
    handle = open(path, "a+b")  # noqa: SIM115 (held open for the life of the claim)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _record_holder(handle: IO[bytes]) -> None:
    """Write this process's pid into a held lock file (read by :func:`holders`)."""
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()


def holders(lock_dir: str | os.PathLike) -> list[str]:
    """The pids recorded in the lock files of ``lock_dir`` that are held now."""
    pids = set()
    for path in Path(lock_dir).glob("gpu-*.lock"):
        handle = _try_lock(path)
        if handle is not None:  # free: whatever pid it names is gone
            handle.close()
            continue
        with contextlib.suppress(OSError):
            pids.add(path.read_text().strip() or "?")
    return sorted(pids)


def claim_gpu(
    labels: Sequence[str],
    *,
    lock_dir: str | os.PathLike,
    poll_seconds: float = 0.5,
    report_every: float = 60.0,
    on_wait: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> GpuClaim:
    """Take the first free GPU of the visible ones (named ``labels``, index order) and hold it.

    When every GPU is held the call waits (polling about every ``poll_seconds``) and says so
    through ``on_wait`` every ``report_every`` seconds: Snakemake's ``--resources gpu=<N>``
    normally prevents this, the locks make it safe when it was not given or other runs share
    the GPUs.

    Raises:
        GpuSlotError: no device.
    """
    if not labels:
        raise GpuSlotError("no CUDA device to claim")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = last_report = clock()
    while True:
        for index, label in enumerate(labels):
            handle = _try_lock(_lock_path(lock_dir, label))
            if handle is not None:
                _record_holder(handle)
                return GpuClaim(index=index, label=label, _file=handle)
        now = clock()
        if on_wait is not None and now - last_report >= report_every:
            last_report = now
            on_wait(
                f"waiting {now - started:.0f} s for a free GPU ({len(labels)} GPU(s) in "
                f"{lock_dir}, held by pids {', '.join(holders(lock_dir)) or '?'}); give "
                f"Snakemake --resources gpu=<GPUs> so it starts no more GPU jobs than there are "
                "GPUs"
            )
        # jittered: two jobs waiting for the same GPU must not poll in step
        sleep(poll_seconds * random.uniform(0.5, 1.5))


@contextlib.contextmanager
def held_gpu(labels: Sequence[str], **kwargs) -> Iterator[GpuClaim]:
    """:func:`claim_gpu` as a context manager that releases the GPU on exit."""
    claim = claim_gpu(labels, **kwargs)
    try:
        yield claim
    finally:
        claim.release()
