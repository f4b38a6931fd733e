"""Which GPU a job was given and which one it takes (issues 12.4 and 15.3), without torch.

Rules import this module at parse time (their ``resources:``), so it imports nothing heavy.

**Was a GPU given?** A job counts as given a GPU when the batch system says so
(``SLURM_STEP_GPUS``, ``SLURM_JOB_GPUS`` or ``CUDA_VISIBLE_DEVICES`` name devices), or when it
holds the Snakemake ``gpu``/``gpu_slots`` resource on a machine whose NVIDIA driver shows GPUs
(``/proc/driver/nvidia/gpus``, ``/dev/nvidiaN``). A job given a GPU whose torch cannot use CUDA
must fail (``segrobust.training.device.resolve_device``) instead of quietly training on the CPU;
on a machine without any GPU ``device: auto`` still runs on the CPU.

**Sharing one GPU.** Config ``execution.gpu_jobs_per_device`` says per rule how many of its jobs
share one GPU (``k``, a power of two). A GPU has ``S`` slots, the largest configured ``k``; a job
of a rule with ``k`` takes ``S / k`` of them. On a workstation the Snakemake resource
``gpu_slots`` (``--resources gpu_slots=<GPUs x S>``) bounds how many such jobs run at once, and
the jobs themselves take distinct slots with :func:`claim_gpu`: one lock file per (device, slot),
held with ``fcntl.flock`` for the life of the process, so the kernel releases it on any exit,
crash and ``SIGKILL`` included. The lock files, not the scheduler's arithmetic, guarantee that no
GPU carries more than its ``S`` slots: a job that finds none free waits.
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

#: Rules whose jobs run networks and may use a GPU.
GPU_RULES = ("train_model", "evaluate_model")
#: Allowed jobs per GPU: powers of two, so each divides the largest and slots never fragment
#: into shares no job can use.
JOBS_PER_DEVICE = (1, 2, 4, 8, 16)
#: Environment variables through which a batch system hands a job its GPUs, most specific first.
ALLOCATION_VARIABLES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES")
#: Values of those variables that give no device (SLURM writes ``NoDevFiles`` when a GRES has no
#: device file; ``-1`` hides every GPU from CUDA).
NO_DEVICE_VALUES = ("", "-1", "NoDevFiles", "none")


class GpuSlotError(RuntimeError):
    """A slot request that can never be met, naming what was asked and what exists."""


def check_jobs_per_device(jobs_per_device: Mapping[str, int]) -> None:
    """Refuse a ``k`` that is not one of ``JOBS_PER_DEVICE``, naming the rule.

    The schema checks the config already; this guards library callers.
    """
    for rule, k in jobs_per_device.items():
        if k not in JOBS_PER_DEVICE:
            allowed = ", ".join(map(str, JOBS_PER_DEVICE))
            raise ValueError(f"execution.gpu_jobs_per_device.{rule} = {k!r}; allowed: {allowed}")


def slots_per_device(jobs_per_device: Mapping[str, int]) -> int:
    """``S``: slots of one GPU, the largest configured jobs-per-GPU (every ``k`` divides it)."""
    check_jobs_per_device(jobs_per_device)
    return max(jobs_per_device.values(), default=1)


def rule_resources(jobs_per_device: Mapping[str, int], rule: str) -> dict[str, int | str]:
    """The Snakemake ``resources`` of a GPU rule whose jobs share a GPU ``k`` at a time.

    - ``k == 1``: ``gpu=1`` (a whole GPU; on SLURM ``--gpus=1``) and ``gpu_slots=S``.
    - ``k > 1``: ``gpu=0`` and ``gpu_slots=S/k``, so locally ``gpu_slots`` alone bounds them;
      on SLURM ``gres="gpu:1"`` asks for the GPU instead of ``gpu``: a string resource is the
      same for every job of a job group, so a group of ``k`` jobs (``--group-components``) gets
      one GPU, where ``gpu=1`` per job would add up to ``k`` GPUs.
    """
    k = jobs_per_device[rule]
    slots = slots_per_device(jobs_per_device)
    if k == 1:
        return {"gpu": 1, "gpu_slots": slots}
    return {"gpu": 0, "gpu_slots": slots // k, "gres": "gpu:1"}


def allocated_gpus(environ: Mapping[str, str]) -> str | None:
    """``VAR=value`` of the first variable by which the batch system gave this job GPUs, or None
    when none of ``ALLOCATION_VARIABLES`` names a device."""
    for name in ALLOCATION_VARIABLES:
        value = environ.get(name)
        if value is not None and value.strip() not in NO_DEVICE_VALUES:
            return f"{name}={value.strip()}"
    return None


def machine_gpus(root: str | os.PathLike = "/") -> list[str]:
    """The NVIDIA GPUs this machine's driver shows: the PCI addresses under
    ``/proc/driver/nvidia/gpus``, else the ``/dev/nvidiaN`` device nodes. Empty without a driver
    (a CPU-only machine, or a container without GPUs passed through)."""
    root = Path(root)
    proc = root / "proc" / "driver" / "nvidia" / "gpus"
    with contextlib.suppress(OSError):
        found = sorted(p.name for p in proc.iterdir())
        if found:
            return found
    with contextlib.suppress(OSError):
        return sorted(
            p.name for p in (root / "dev").iterdir() if re.fullmatch(r"nvidia\d+", p.name)
        )
    return []


def gpu_given(
    environ: Mapping[str, str], *, holds_gpu_resource: bool, machine: Sequence[str]
) -> str | None:
    """Why this job counts as given a GPU (a phrase for error messages), or None.

    Args:
        environ: the job's environment (batch-system variables).
        holds_gpu_resource: the job holds ``gpu`` or ``gpu_slots`` (Snakemake resources).
        machine: :func:`machine_gpus`. On a workstation the ``gpu`` resource alone does not
            count: the local profile gives it on CPU-only machines too.
    """
    allocation = allocated_gpus(environ)
    if allocation:
        return f"{allocation} is set"
    if holds_gpu_resource and machine:
        return (
            f"it holds the 'gpu' resource and this machine's NVIDIA driver shows "
            f"{len(machine)} GPU(s): {', '.join(machine)}"
        )
    return None


def device_labels(n_devices: int, environ: Mapping[str, str]) -> list[str]:
    """A stable name per visible device for its lock files: the entries of
    ``CUDA_VISIBLE_DEVICES`` (physical indices or UUIDs) when it lists them, else ``0..n-1``."""
    listed = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if len(listed) >= n_devices:
        return [re.sub(r"[^A-Za-z0-9_.-]", "_", v) for v in listed[:n_devices]]
    return [str(i) for i in range(n_devices)]


def lock_scope(environ: Mapping[str, str]) -> str:
    """Whose GPUs the locks are about: the SLURM allocation (jobs packed into one allocation
    share its GPUs, other allocations have their own), else this machine."""
    job_id = environ.get("SLURM_JOB_ID")
    if job_id:
        return f"slurm-{job_id}"
    return f"host-{socket.gethostname()}"


def private_dir(*parts: str, base: str | os.PathLike | None = None) -> Path:
    """``<tmp>/segrobust-<uid>/<parts...>``, every level created ``0700``: the user's
    machine-local state (GPU slot locks, preload sockets).

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


def default_lock_dir() -> Path:
    """``<tmp>/segrobust-<uid>/gpu-locks``: node-local (``flock`` is unreliable on network file
    systems) and shared by every project of the user, so two studies run side by side on one
    workstation do not land on the same GPU either."""
    return private_dir("gpu-locks")


@dataclass
class GpuClaim:
    """Slots held on one device; released by :meth:`release` or when the process ends.

    Attributes:
        index: the device's index among the visible devices (``cuda:<index>``).
        label: its lock-file name (see :func:`device_labels`).
        slots: the slot numbers held.
        share: fraction of the device held, ``len(slots) / S`` (the memory fraction to set).
    """

    index: int
    label: str
    slots: tuple[int, ...]
    share: float
    _files: list[IO[bytes]] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for handle in self._files:
            handle.close()  # closing the descriptor drops its flock
        self._files.clear()


def _slot_path(lock_dir: Path, label: str, slot: int) -> Path:
    return lock_dir / f"gpu-{label}.slot{slot}.lock"


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
    """Write this process's pid into a held slot file (read by :func:`holders`)."""
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()


def _free_slots(lock_dir: Path, label: str, slots: int) -> int:
    """How many slots of a device are free right now (taken and released at once)."""
    free = 0
    for slot in range(slots):
        handle = _try_lock(_slot_path(lock_dir, label, slot))
        if handle is not None:
            free += 1
            handle.close()
    return free


def _claim_on(lock_dir: Path, label: str, slots: int, needed: int) -> list[tuple[int, IO]]:
    """``needed`` slots of one device, or none (what was taken is let go)."""
    held: list[tuple[int, IO]] = []
    for slot in range(slots):
        handle = _try_lock(_slot_path(lock_dir, label, slot))
        if handle is not None:
            held.append((slot, handle))
            if len(held) == needed:
                for _, taken in held:
                    _record_holder(taken)
                return held
    for _, handle in held:
        handle.close()
    return []


def holders(lock_dir: str | os.PathLike) -> list[str]:
    """The pids recorded in the slot files of ``lock_dir`` that are held now."""
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
    n_devices: int,
    *,
    jobs_per_device: int,
    slots_per_gpu: int,
    labels: Sequence[str],
    lock_dir: str | os.PathLike,
    poll_seconds: float = 0.5,
    report_every: float = 60.0,
    on_wait: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> GpuClaim:
    """Take ``slots_per_gpu / jobs_per_device`` free slots of one device and hold them.

    Devices are tried from the one with the most free slots, so jobs spread over the GPUs before
    they pile onto one. When no device has enough free slots the call waits (polling every
    about ``poll_seconds``) and says so through ``on_wait`` every ``report_every`` seconds: the
    Snakemake resource ``gpu_slots`` normally prevents this, the locks make it safe when it was
    not given.

    Raises:
        GpuSlotError: no device, or a share that does not divide the device's slots.
    """
    if n_devices < 1:
        raise GpuSlotError("no CUDA device to claim a slot on")
    if jobs_per_device < 1 or slots_per_gpu % jobs_per_device:
        raise GpuSlotError(
            f"{jobs_per_device} jobs per GPU do not divide the {slots_per_gpu} slots of a GPU"
        )
    if len(labels) != n_devices:
        raise GpuSlotError(f"{len(labels)} device labels for {n_devices} devices")
    needed = slots_per_gpu // jobs_per_device
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = last_report = clock()
    while True:
        free = {i: _free_slots(lock_dir, labels[i], slots_per_gpu) for i in range(n_devices)}
        for index in sorted(free, key=lambda i: (-free[i], i)):
            if free[index] < needed:
                continue
            held = _claim_on(lock_dir, labels[index], slots_per_gpu, needed)
            if held:
                return GpuClaim(
                    index=index,
                    label=labels[index],
                    slots=tuple(slot for slot, _ in held),
                    share=needed / slots_per_gpu,
                    _files=[handle for _, handle in held],
                )
        now = clock()
        if on_wait is not None and now - last_report >= report_every:
            last_report = now
            on_wait(
                f"waiting {now - started:.0f} s for {needed} free slot(s) of a GPU "
                f"({n_devices} GPU(s) x {slots_per_gpu} slots in {lock_dir}, held by pids "
                f"{', '.join(holders(lock_dir)) or '?'}); give Snakemake "
                f"--resources gpu_slots=<GPUs x {slots_per_gpu}> so it starts no more GPU "
                "jobs than there are slots"
            )
        # jittered: two jobs that took half a GPU each and let go must not meet again in step
        sleep(poll_seconds * random.uniform(0.5, 1.5))


@contextlib.contextmanager
def held_gpu(**kwargs) -> Iterator[GpuClaim]:
    """:func:`claim_gpu` as a context manager that releases the slots on exit."""
    claim = claim_gpu(**kwargs)
    try:
        yield claim
    finally:
        claim.release()
