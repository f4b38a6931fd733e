"""Inference: a trained network's sigmoid probabilities for one 2D or 3D image.

Whole-image models (2D studies, patch ``full``) see the image in one forward pass. Patch-trained
models (the context study) see it through MONAI's ``sliding_window_inference`` with windows of
their training patch size, so the network never sees more context at test time than in training.
Windows that run past the image edge (or an image smaller than the window) are zero-padded
(``padding_mode="constant"``, ``cval=0``) and the padding is cropped from the output, as MONAI does.

The image is fed as stored in the dataset (float32); any intensity normalisation belongs to dataset
preparation, so training and inference see the same values.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from segrobust.data.dataset import write_nifti

#: Blending of overlapping windows: ``gaussian`` down-weights window borders, ``constant`` averages.
BLEND_MODES = ("gaussian", "constant")


@dataclass(frozen=True)
class SlidingWindow:
    """How a patch-trained model sees a whole image (config ``studies.<study>.inference``).

    Attributes:
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        mode: blending of overlapping windows, one of ``BLEND_MODES``.
        batch_size: windows per forward pass.
    """

    overlap: float
    mode: str
    batch_size: int

    def __post_init__(self) -> None:
        if self.mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {self.mode!r}; allowed: {', '.join(BLEND_MODES)}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"sliding-window batch size must be >= 1, got {self.batch_size}")

    @classmethod
    def from_config(cls, inference: Mapping[str, Any]) -> SlidingWindow:
        """From the config's ``inference`` section (keys overlap, mode, sw_batch_size)."""
        return cls(
            overlap=float(inference["overlap"]),
            mode=str(inference["mode"]),
            batch_size=int(inference["sw_batch_size"]),
        )

    def to_config(self) -> dict[str, Any]:
        """The settings as the config's ``inference`` keys (inverse of :meth:`from_config`)."""
        return {"overlap": self.overlap, "mode": self.mode, "sw_batch_size": self.batch_size}


def _patch_tuple(patch_size: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """A window size as one positive int per spatial axis (an int means a cube / square)."""
    patch = (int(patch_size),) * ndim if np.isscalar(patch_size) else tuple(map(int, patch_size))
    if len(patch) != ndim or min(patch) < 1:
        raise ValueError(
            f"patch_size {patch_size} must give one positive size per axis of a {ndim}D image"
        )
    return patch


def _autocast(device: torch.device, amp: bool):
    """Mixed precision on CUDA only (bf16 where supported, else fp16); a no-op elsewhere, as AMP on
    CPU brings no speed-up for these networks."""
    if not (amp and device.type == "cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _needs_move(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether some parameter of ``model`` is not on ``device`` (``cuda`` matches any CUDA
    index only when it names none)."""
    for parameter in model.parameters():
        here = parameter.device
        if here.type != device.type or (device.index is not None and here.index != device.index):
            return True
    return False


def predict_probabilities(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    patch_size: int | Sequence[int] | None = None,
    window: SlidingWindow | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
) -> np.ndarray:
    """Sigmoid probabilities (float32, the image's shape) of a 1-in / 1-out logit network.

    Args:
        model: network mapping (N, 1, *spatial) images to (N, 1, *spatial) logits; it is put in
            eval mode and moved to ``device``.
        image: 2D (H, W) or 3D (H, W, D) array without a channel axis.
        patch_size: None for one whole-image forward pass, else the sliding-window size (an int
            for a square / cube, or one size per axis).
        window: the sliding-window settings; required exactly when ``patch_size`` is given.
        device: where the network runs.
        amp: mixed precision, effective on CUDA only.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D image without channel axis, got shape {image.shape}")
    if patch_size is not None and window is None:
        raise ValueError("a patch-trained model needs sliding-window settings (window=...)")
    device = torch.device(device)
    if _needs_move(model, device):
        # moving walks every parameter, ~2 ms for these networks: as much as a small image's
        # forward pass when a caller predicts image after image with one model
        model = model.to(device)
    model.eval()
    batch = torch.from_numpy(image)[None, None].to(device)
    with torch.inference_mode(), _autocast(device, amp):
        if patch_size is None:
            logits = model(batch)
        else:
            logits = sliding_window_inference(
                batch,
                roi_size=_patch_tuple(patch_size, image.ndim),
                sw_batch_size=window.batch_size,
                predictor=model,
                overlap=window.overlap,
                mode=window.mode,
                padding_mode="constant",
                cval=0.0,
            )
    if tuple(logits.shape) != (1, 1, *image.shape):
        raise ValueError(
            f"model output shape {tuple(logits.shape)} does not match the image "
            f"(expected {(1, 1, *image.shape)})"
        )
    return torch.sigmoid(logits.float())[0, 0].cpu().numpy()


def save_prediction(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> None:
    """Write a prediction (mask or probabilities) as NIfTI with the input image's affine, so it
    overlays the image in any viewer; written atomically."""
    write_nifti(path, np.asarray(array), affine=np.asarray(affine, dtype=np.float64))
