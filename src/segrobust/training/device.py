"""Where training and inference run: device choice, GPU placement, mixed precision, seeding.

A job given a GPU (``segrobust.gpus.gpu_given``) whose torch cannot use CUDA fails with
:class:`GpuUnavailableError` instead of running on the CPU for hours unnoticed; ``device: auto``
still means the CPU on a machine without GPUs, and ``device: cpu`` always means the CPU.
:func:`job_device` also takes the job's own GPU slot (``segrobust.gpus.claim_gpu``), so
concurrent jobs on a multi-GPU workstation land on distinct GPUs, and bounds the job's GPU memory
to its share when several jobs share one GPU.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from segrobust.gpus import (
    default_lock_dir,
    device_labels,
    gpu_given,
    held_gpu,
    lock_scope,
    machine_gpus,
)

DEVICE_SPECS = ("auto", "cpu", "cuda")


class GpuUnavailableError(RuntimeError):
    """The job was given a GPU, but torch cannot use CUDA."""


def cuda_problem() -> str | None:
    """Why torch cannot run on a CUDA GPU here, or None when it can."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return None
    if torch.version.cuda is None and torch.version.hip is None:
        return f"this torch ({torch.__version__}) is a build without CUDA support"
    return (
        f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA device: "
        "the NVIDIA driver is missing, too old for this CUDA, or hides the GPU (check "
        "`nvidia-smi` on the node)"
    )


def resolve_device(spec: str, *, gpu_given: str | None = None) -> torch.device:
    """The torch device for config ``device`` = ``spec``.

    ``cpu`` -> the CPU. ``cuda`` -> CUDA, an error if torch cannot use it. ``auto`` -> CUDA when
    torch can use it; else the CPU, unless the job was given a GPU (``gpu_given`` says how, see
    ``segrobust.gpus.gpu_given``): then :class:`GpuUnavailableError`.
    """
    if spec not in DEVICE_SPECS:
        raise ValueError(f"device {spec!r} not understood; allowed: {', '.join(DEVICE_SPECS)}")
    if spec == "cpu":
        return torch.device("cpu")
    problem = cuda_problem()
    if problem is None:
        return torch.device("cuda")
    if spec == "cuda":
        raise RuntimeError(
            f"device 'cuda' requested but torch sees no CUDA GPU ({problem}); use 'auto' or 'cpu'"
        )
    if gpu_given:
        raise GpuUnavailableError(
            f"this job was given a GPU ({gpu_given}), but {problem}. It stops here instead of "
            "running on the CPU. Install a CUDA build of torch matching the driver "
            "(https://pytorch.org/get-started/locally/) or load the cluster's CUDA module; to "
            "run on the CPU on purpose set `device: cpu` in the config"
        )
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """The hardware behind ``device``: the GPU's name for CUDA, else ``cpu``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def describe_device(device: torch.device) -> str:
    """``cuda:1 (NVIDIA H200)`` for a GPU, ``cpu`` for the CPU (for console lines)."""
    return f"{device} ({device_name(device)})" if device.type == "cuda" else str(device)


@contextlib.contextmanager
def job_device(
    spec: str,
    *,
    jobs_per_device: int,
    slots_per_gpu: int,
    holds_gpu_resource: bool,
    environ: Mapping[str, str] | None = None,
    lock_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> Iterator[torch.device]:
    """The device a pipeline job runs on, held for the ``with`` block.

    Resolves ``spec`` (:func:`resolve_device`, with ``segrobust.gpus.gpu_given`` from
    ``environ`` and ``holds_gpu_resource``). For CUDA it takes ``slots_per_gpu /
    jobs_per_device`` slots of the least loaded visible GPU (``segrobust.gpus.claim_gpu``; locks
    under ``lock_dir``, by default ``segrobust.gpus.default_lock_dir() / lock_scope``), makes it
    the current device, and bounds the process's GPU memory to its share
    (``torch.cuda.set_per_process_memory_fraction``) when the GPU is shared. Yields
    ``cuda:<index>`` or ``cpu``; the slots are released on exit (and by the kernel if the
    process dies).

    Raises:
        GpuUnavailableError: given a GPU that torch cannot use.
    """
    environ = os.environ if environ is None else environ
    given = gpu_given(environ, holds_gpu_resource=holds_gpu_resource, machine=machine_gpus())
    device = resolve_device(spec, gpu_given=given)
    if device.type != "cuda":
        if given:
            log(f"device: cpu in the config, so the CPU, although {given}")
        yield device
        return
    n_devices = torch.cuda.device_count()
    if lock_dir is None:
        lock_dir = default_lock_dir() / lock_scope(environ)
    with held_gpu(
        n_devices=n_devices,
        jobs_per_device=jobs_per_device,
        slots_per_gpu=slots_per_gpu,
        labels=device_labels(n_devices, environ),
        lock_dir=Path(lock_dir),
        on_wait=log,
    ) as claim:
        torch.cuda.set_device(claim.index)
        if claim.share < 1:
            torch.cuda.set_per_process_memory_fraction(claim.share, claim.index)
        device = torch.device("cuda", claim.index)
        log(
            f"GPU {device} ({device_name(device)}): slot(s) {list(claim.slots)} of "
            f"{slots_per_gpu}, memory share {claim.share:g}"
        )
        yield device


def amp_settings(device: torch.device) -> tuple[bool, torch.dtype | None]:
    """Mixed precision for ``device``: ``(enabled, dtype)``.

    bf16 where the GPU supports it (no loss scaling needed), else fp16 (which needs a
    ``torch.amp.GradScaler``); disabled on CPU, where it brings no speed for these convolutions.
    """
    if device.type != "cuda":
        return False, None
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    """Seed python, numpy, torch (CPU and CUDA) and MONAI's transforms."""
    # imported here: placing a job on a device (this module's other use) needs no MONAI
    from monai.utils import set_determinism

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    set_determinism(seed=seed)
