"""Where training and inference run: device choice, mixed precision, seeding."""

from __future__ import annotations

import random

import numpy as np
import torch
from monai.utils import set_determinism

DEVICE_SPECS = ("auto", "cpu", "cuda")


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cpu``; ``cuda`` (error if none is present)."""
    if spec not in DEVICE_SPECS:
        raise ValueError(f"device {spec!r} not understood; allowed: {', '.join(DEVICE_SPECS)}")
    if spec == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' requested but torch sees no CUDA GPU; use 'auto' or 'cpu'"
        )
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


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
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    set_determinism(seed=seed)
