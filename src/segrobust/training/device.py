"""Where training and inference run: device choice, GPU placement, threads, mixed precision,
seeding: everything about the device that decides the numbers a job writes.

A job given a GPU (``segrobust.execution.gpu_allocation.gpu_given``) whose torch cannot use CUDA
fails with :class:`GpuUnavailableError` instead of running on the CPU for hours unnoticed;
``device: auto`` still means the CPU on a machine without GPUs, and ``device: cpu`` always means
the CPU. :func:`job_device` also takes the job's own GPU (``segrobust.execution.gpu_slots``), so
concurrent jobs on a multi-GPU workstation land on distinct GPUs.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from segrobust.execution.gpu_allocation import gpu_given, machine_gpus
from segrobust.execution.gpu_slots import default_lock_dir, device_labels, held_gpu

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
    ``segrobust.execution.gpu_allocation.gpu_given``): then :class:`GpuUnavailableError`.
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
    holds_gpu_resource: bool,
    environ: Mapping[str, str] | None = None,
    lock_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> Iterator[torch.device]:
    """The device a pipeline job runs on, held for the ``with`` block.

    Resolves ``spec`` (:func:`resolve_device`, with ``segrobust.execution.gpu_allocation
    .gpu_given`` from ``environ`` and ``holds_gpu_resource``). For CUDA it takes the first free
    visible GPU (``segrobust.execution.gpu_slots.claim_gpu``; locks under ``lock_dir``, by
    default ``default_lock_dir``) and makes it the current device. Yields ``cuda:<index>`` or
    ``cpu``; the GPU is released on exit (and by the kernel if the process dies).

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
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir(environ)
    with held_gpu(device_labels(n_devices, environ), lock_dir=lock_dir, on_wait=log) as claim:
        torch.cuda.set_device(claim.index)
        device = torch.device("cuda", claim.index)
        log(f"GPU {device} ({device_name(device)}), lock {claim.label} in {lock_dir}")
        yield device


def set_compute_threads(threads: int) -> None:
    """Let torch compute with ``threads`` CPU threads (at least 1).

    This decides numbers, not only speed: torch splits a CPU reduction (a convolution's weight
    gradient, a sum) into per-thread partial sums, so another thread count adds floats in
    another order and a model trained with 1 thread differs in its last bits from one trained
    with 2, which training then amplifies (measured: docs/decisions.md). Hence it lives here,
    beside the seeds, and not in the execution plumbing.
    """
    torch.set_num_threads(max(1, int(threads)))


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
