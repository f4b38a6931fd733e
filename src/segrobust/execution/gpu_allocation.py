"""Whether a job was given a GPU (issue 12.4), without torch.

A job counts as given a GPU when the batch system says so (``SLURM_STEP_GPUS``,
``SLURM_JOB_GPUS`` or ``CUDA_VISIBLE_DEVICES`` name devices), or when it holds the Snakemake
``gpu`` resource on a machine whose NVIDIA driver shows GPUs (``/proc/driver/nvidia/gpus``,
``/dev/nvidiaN``). A job given a GPU whose torch cannot use CUDA must fail
(``segrobust.training.device.resolve_device``) instead of quietly training on the CPU; on a
machine without any GPU ``device: auto`` still runs on the CPU. This only decides between
failing and running: which device computes is the training layer's choice.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Environment variables through which a batch system hands a job its GPUs, most specific first.
ALLOCATION_VARIABLES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES")
#: Values of those variables that give no device (SLURM writes ``NoDevFiles`` when a GRES has no
#: device file; ``-1`` hides every GPU from CUDA).
NO_DEVICE_VALUES = ("", "-1", "NoDevFiles", "none")


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


def holds_gpu(resources: Any) -> bool:
    """Whether a job holds the Snakemake ``gpu`` resource (``snakemake.resources``)."""
    return int(resources.get("gpu", 0) or 0) > 0


def gpu_given(
    environ: Mapping[str, str], *, holds_gpu_resource: bool, machine: Sequence[str]
) -> str | None:
    """Why this job counts as given a GPU (a phrase for error messages), or None.

    Args:
        environ: the job's environment (batch-system variables).
        holds_gpu_resource: the job holds the Snakemake ``gpu`` resource.
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
