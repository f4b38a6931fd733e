"""Per-image segmentation metrics at one threshold, plus the soft-output scores used downstream.

Overlap and surface metrics come from MONAI (``compute_dice``, ``compute_hausdorff_distance``,
``compute_surface_dice``, ``compute_average_surface_distance``) with the voxel spacing, so all
distances are in millimetres. MONAI returns NaN or inf when a mask is empty; this module replaces
those with fixed conventions so an empty prediction is penalised instead of dropped from means:

=============================  ======  =================  =====  ==================
case                           dice    hd95, assd         nsd    volume_diff
=============================  ======  =================  =====  ==================
both empty                     1       0                  1      NaN
label empty, prediction not    0       image diagonal     0      NaN
prediction empty, label not    0       image diagonal     0      -1
=============================  ======  =================  =====  ==================

The image diagonal is ``sqrt(sum((shape_i * spacing_i)^2))``, the physical extent of the image:
no two points of the image are further apart, so it is the largest possible surface error.

``volume_diff`` is ``(|pred| - |label|) / |label|``, the relative volume error (voxel counts, as
both masks share the spacing), NaN when the label is empty because the relative error is undefined.

Besides the thresholded metrics: ``soft_quality`` (the model's own Dice estimate from its
probabilities, the score the conformal Dice bound is calibrated on) and ``fnr_curve`` (the
false-negative rate at each threshold of ``FNR_THRESHOLDS``, the loss controlled by conformal risk
control).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)

#: Thresholds of the false-negative-rate curve: 0.00, 0.02, ..., 1.00.
FNR_THRESHOLDS: np.ndarray = np.round(np.arange(51) * 0.02, 2)

#: Keys of the dict returned by ``segmentation_metrics``, in column order.
METRIC_NAMES: tuple[str, ...] = ("dice", "hd95", "nsd", "assd", "volume_diff")


def _check_masks(
    pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Validate a prediction / label pair and return them as bool arrays with a float spacing."""
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match label shape {label.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected 2D or 3D masks, got shape {pred.shape}")
    for name, mask in (("prediction", pred), ("label", label)):
        if mask.dtype != bool:
            raise ValueError(f"{name} must be a boolean mask, got dtype {mask.dtype}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != pred.ndim or any(not s > 0 for s in spacing):
        raise ValueError(
            f"spacing {spacing} must give one positive value per axis of shape {pred.shape}"
        )
    return pred, label, spacing


def _batched(mask: np.ndarray) -> torch.Tensor:
    """A mask in MONAI's (batch, channel, *spatial) layout."""
    return torch.from_numpy(np.ascontiguousarray(mask))[None, None]


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Physical length of the image diagonal in mm: the largest possible distance in the image."""
    return float(np.sqrt(np.sum((np.asarray(shape) * np.asarray(spacing, dtype=float)) ** 2)))


def _empty_case_distance(pred: np.ndarray, label: np.ndarray, spacing) -> float | None:
    """The distance convention when a mask is empty (0 or the diagonal), None when neither is."""
    has_pred, has_label = bool(pred.any()), bool(label.any())
    if has_pred and has_label:
        return None
    if not has_pred and not has_label:
        return 0.0
    return image_diagonal(pred.shape, spacing)


def dice(pred: np.ndarray, label: np.ndarray) -> float:
    """Dice overlap; 1 when both masks are empty, 0 when exactly one is."""
    pred, label, _ = _check_masks(pred, label, (1.0,) * np.ndim(pred))
    # ignore_empty=False: MONAI then scores an empty label as 1 for an empty prediction, else 0.
    return float(compute_dice(_batched(pred), _batched(label), ignore_empty=False)[0, 0])


def hd95(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance between the mask surfaces, in mm."""
    pred, label, spacing = _check_masks(pred, label, spacing)
    fixed = _empty_case_distance(pred, label, spacing)
    if fixed is not None:
        return fixed
    value = compute_hausdorff_distance(
        _batched(pred), _batched(label), include_background=True, percentile=95, spacing=spacing
    )
    return float(value[0, 0])


def assd(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm: the mean over the surface voxels of both masks of
    the distance to the other mask's surface."""
    pred, label, spacing = _check_masks(pred, label, spacing)
    fixed = _empty_case_distance(pred, label, spacing)
    if fixed is not None:
        return fixed
    value = compute_average_surface_distance(
        _batched(pred), _batched(label), include_background=True, symmetric=True, spacing=spacing
    )
    return float(value[0, 0])


def nsd(
    pred: np.ndarray, label: np.ndarray, spacing: Sequence[float], tolerance_mm: float
) -> float:
    """Normalised surface Dice: the fraction of both surfaces lying within ``tolerance_mm`` of the
    other surface; 1 when both masks are empty, 0 when exactly one is."""
    pred, label, spacing = _check_masks(pred, label, spacing)
    if not tolerance_mm >= 0:
        raise ValueError(f"nsd tolerance must be >= 0 mm, got {tolerance_mm}")
    fixed = _empty_case_distance(pred, label, spacing)
    if fixed is not None:
        return 1.0 if fixed == 0.0 else 0.0
    value = compute_surface_dice(
        _batched(pred),
        _batched(label),
        class_thresholds=[float(tolerance_mm)],
        include_background=True,
        spacing=spacing,
    )
    return float(value[0, 0])


def volume_diff(pred: np.ndarray, label: np.ndarray) -> float:
    """Relative volume error ``(|pred| - |label|) / |label|``; NaN when the label is empty."""
    true_volume = int(np.count_nonzero(label))
    if true_volume == 0:
        return float("nan")
    return (int(np.count_nonzero(pred)) - true_volume) / true_volume


def segmentation_metrics(
    pred: np.ndarray, label: np.ndarray, spacing: Sequence[float], nsd_tolerance_mm: float
) -> dict[str, float]:
    """Dice, HD95, NSD, ASSD (mm) and relative volume error of a boolean prediction against a
    boolean label of the same 2D or 3D shape, with the empty-mask conventions of this module."""
    pred, label, spacing = _check_masks(pred, label, spacing)
    return {
        "dice": dice(pred, label),
        "hd95": hd95(pred, label, spacing),
        "nsd": nsd(pred, label, spacing, nsd_tolerance_mm),
        "assd": assd(pred, label, spacing),
        "volume_diff": volume_diff(pred, label),
    }


def foreground_ratio(label: np.ndarray) -> float:
    """Fraction of foreground pixels / voxels of a label."""
    label = np.asarray(label)
    return float(np.count_nonzero(label)) / label.size if label.size else float("nan")


def soft_quality(prob: np.ndarray) -> float:
    """The model's own Dice estimate from its probabilities: ``2 sum(p y) / (sum p + sum y)`` with
    ``y = p >= 0.5`` (the soft Dice of the probabilities against their own thresholding).

    It needs no label, which is what makes it a score a conformal bound can be calibrated on.
    1.0 when both sums are 0 (the model is certain there is no foreground).
    """
    prob = np.asarray(prob, dtype=np.float64)
    hard = prob >= 0.5
    denominator = prob.sum() + np.count_nonzero(hard)
    if denominator == 0:
        return 1.0
    return float(2.0 * prob[hard].sum() / denominator)


def fnr_curve(
    prob: np.ndarray, label: np.ndarray, thresholds: Sequence[float] = FNR_THRESHOLDS
) -> np.ndarray:
    """False-negative rate ``|label & (prob < t)| / |label|`` at each threshold ``t``.

    Non-decreasing in ``t``; all zeros when the label is empty (nothing can be missed).
    """
    prob, label = np.asarray(prob), np.asarray(label, dtype=bool)
    if prob.shape != label.shape:
        raise ValueError(f"probability shape {prob.shape} does not match label shape {label.shape}")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    foreground = np.sort(prob[label].astype(np.float64))
    if foreground.size == 0:
        return np.zeros(thresholds.shape, dtype=np.float64)
    # side="left" counts the foreground probabilities strictly below each threshold.
    return np.searchsorted(foreground, thresholds, side="left") / foreground.size
