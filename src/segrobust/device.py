"""Where networks run and in which precision, and how runs are seeded."""

from __future__ import annotations

import random

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if spec not in DEVICES:
        raise ValueError(
            f"config key device: {spec!r} is not allowed; allowed: {', '.join(DEVICES)}"
        )
    if spec == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "config key device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'"
        )
    if spec == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def amp_settings(device: torch.device) -> tuple[bool, torch.dtype | None]:
    """Mixed precision on CUDA only: bf16 where the GPU supports it, else fp16 (which needs a
    gradient scaler). Off on the CPU, where autocast would only slow small convolutions down."""
    if device.type != "cuda":
        return False, None
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
