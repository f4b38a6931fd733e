"""Per-image segmentation metrics at one threshold, plus the soft-output scores used downstream.

All distances are in millimetres (the voxel spacing is applied). The surface metrics (``hd``,
``hd95``, ``assd``, ``nsd``) reproduce MONAI 1.6.1's ``compute_hausdorff_distance``,
``compute_average_surface_distance`` and ``compute_surface_dice`` as called with
``include_background=True``, the Euclidean metric and ``use_subvoxels=False``, but derive all four
from one surface extraction and one nearest-surface search per direction, where MONAI's three
functions repeat both; see ``surface_distances`` for how MONAI's definitions are matched.

MONAI returns NaN or inf when a mask is empty; this module replaces those with fixed conventions
so an empty prediction is penalised instead of dropped from means:

=============================  ======  =================  =====  ==================
case                           dice    hd, hd95, assd     nsd    volume_diff
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
false-negative rate at each threshold of ``FNR_THRESHOLDS``, 0.00, 0.02, ..., 1.00: the loss
controlled by conformal risk control, whose kernel, ``segrobust.guarantees.kernel``, defines the
grid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import KDTree

from segrobust.contract import METRICS
from segrobust.guarantees.kernel import FNR_THRESHOLDS

#: Units an NSD tolerance may be given in: millimetres, or pixels / voxels (see
#: ``nsd_tolerance_mm``).
NSD_UNITS: tuple[str, ...] = ("mm", "px")

#: Percentile of the surface distances reported as ``hd95``.
HD95_PERCENTILE = 95.0


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
    if len(spacing) != pred.ndim or any(not (s > 0 and math.isfinite(s)) for s in spacing):
        raise ValueError(
            f"spacing {spacing} must give one positive finite value per axis of shape {pred.shape}"
        )
    return pred, label, spacing


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Physical length of the image diagonal in mm: the largest possible distance in the image."""
    return float(np.sqrt(np.sum((np.asarray(shape) * np.asarray(spacing, dtype=float)) ** 2)))


def nsd_tolerance_mm(tolerance: float, unit: str, spacing: Sequence[float]) -> float:
    """An NSD tolerance given in ``unit`` (one of ``NSD_UNITS``) converted to mm.

    ``"px"`` counts pixels / voxels of the finest axis: ``tolerance * min(spacing)`` mm. On an
    isotropic grid that is exactly ``tolerance`` pixels in every direction (the papers' 5 px). On
    an anisotropic grid no single distance is ``tolerance`` voxels along every axis; the finest
    axis is the strict reading: a boundary error never counts as within tolerance when it is more
    than ``tolerance`` voxels away along any axis, and the tolerance stays a physical distance,
    comparable with the mm surface distances and the same in every direction. Taking the mean or
    coarsest spacing instead would accept errors of more than ``tolerance`` voxels along the finest
    axis.

    Raises:
        ValueError: for a unit not in ``NSD_UNITS`` or a tolerance that is negative or not finite.
    """
    if unit not in NSD_UNITS:
        raise ValueError(
            f"NSD tolerance unit {unit!r} is not allowed; allowed: {', '.join(NSD_UNITS)}"
        )
    tolerance = float(tolerance)
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"NSD tolerance must be finite and >= 0 {unit}, got {tolerance}")
    return tolerance * min(float(s) for s in spacing) if unit == "px" else tolerance


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances in mm from each surface voxel of one mask to the nearest one of the other mask.

    Each array holds one distance per surface voxel of its source mask, in no particular order.
    Every surface metric of this module is a summary of these two arrays.
    """

    pred_to_label: np.ndarray
    label_to_pred: np.ndarray

    def hausdorff(self, percentile: float | None = None) -> float:
        """Symmetric Hausdorff distance: the larger of the two directed distances, each the maximum
        of its distances or, given ``percentile``, that percentile of them as MONAI's
        ``compute_hausdorff_distance`` takes it (see ``_monai_percentile``)."""
        if percentile is None:
            return float(max(self.pred_to_label.max(), self.label_to_pred.max()))
        return max(
            _monai_percentile(d, percentile) for d in (self.pred_to_label, self.label_to_pred)
        )

    def average(self) -> float:
        """Average symmetric surface distance: the mean over the surface voxels of both masks, each
        voxel once -- MONAI's ``compute_average_surface_distance(symmetric=True)``."""
        count = self.pred_to_label.size + self.label_to_pred.size
        return float((self.pred_to_label.sum() + self.label_to_pred.sum()) / count)

    def surface_dice(self, tolerance_mm: float) -> float:
        """Normalised surface Dice: the fraction of the surface voxels of both masks within
        ``tolerance_mm`` of the other surface -- MONAI's ``compute_surface_dice`` counting voxels
        (``use_subvoxels=False``).

        Distances and tolerance are compared in single precision, as MONAI compares its float32
        distances, so a distance equal to the tolerance up to rounding counts as within.
        """
        limit = np.float32(tolerance_mm)
        within = sum(
            np.count_nonzero(d.astype(np.float32) <= limit)
            for d in (self.pred_to_label, self.label_to_pred)
        )
        return within / (self.pred_to_label.size + self.label_to_pred.size)


def _monai_percentile(distances: np.ndarray, percentile: float) -> float:
    """The ``percentile`` of ``distances`` exactly as MONAI takes it: ``torch.quantile`` (linear
    interpolation) over the float32 distances.

    In single precision the rank ``q (n - 1)`` loses its last digits, which moves the value by up
    to about ``n * 6e-8`` times the gap between neighbouring distances (1e-5 mm on a few hundred
    distances) against a float64 percentile; kept so that ``hd95`` stays identical to MONAI's and
    to the values segrobust reported before.
    """
    values = torch.from_numpy(distances.astype(np.float32))
    return float(torch.quantile(values, percentile / 100.0))


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box of slices holding every foreground voxel of ``mask``; None if it is empty.

    Reducing over the leading axis first ORs whole contiguous slabs, the fast direction for a
    C-ordered array; the other axes' bounds then come from that small projection.
    """
    rows = np.flatnonzero(mask.any(axis=tuple(range(1, mask.ndim))))
    if rows.size == 0:
        return None
    projection = mask.any(axis=0)
    box = [slice(int(rows[0]), int(rows[-1]) + 1)]
    for axis in range(projection.ndim):
        others = tuple(a for a in range(projection.ndim) if a != axis)
        present = np.flatnonzero(projection.any(axis=others))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it or outside the array: MONAI's edges,
    ``mask ^ binary_erosion(mask)`` with scipy's default face-connected structure and border 0.

    Computed as ``2 * ndim`` shifted ANDs (a voxel is interior when it and its face neighbours are
    all foreground, so none on the array border is): the same voxels as scipy's erosion, whose
    generic structuring-element loop is several times slower and was the largest cost after the
    nearest-surface search on large volumes.
    """
    interior = mask.copy()
    for axis in range(mask.ndim):
        after, before, first, last = ([slice(None)] * mask.ndim for _ in range(4))
        after[axis], before[axis], first[axis], last[axis] = slice(1, None), slice(None, -1), 0, -1
        interior[tuple(after)] &= mask[tuple(before)]  # the neighbour at index - 1 is foreground
        interior[tuple(before)] &= mask[tuple(after)]  # the neighbour at index + 1 is foreground
        interior[tuple(first)] = interior[tuple(last)] = False  # outside the array: background
    return mask & ~interior


def _directed_distances(
    source_index: np.ndarray,
    target_surface: np.ndarray,
    target_index: np.ndarray,
    spacing: np.ndarray,
) -> np.ndarray:
    """Distance (mm) from each source surface voxel (rows of ``source_index``) to the nearest
    voxel of the target surface (``target_surface`` as a mask, ``target_index`` its voxels).

    Voxels on both surfaces are at distance 0 and skip the search; a good prediction shares much
    of its surface with the label. The k-d tree is built unbalanced and not compacted, which
    halves its build time; its queries stay exact.
    """
    on_target = target_surface[tuple(source_index.T)]
    tree = KDTree(target_index * spacing, leafsize=32, balanced_tree=False, compact_nodes=False)
    searched = tree.query(source_index[~on_target] * spacing, k=1)[0]
    return np.concatenate([np.zeros(np.count_nonzero(on_target)), searched])


def surface_distances(
    pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]
) -> SurfaceDistances:
    """Distances (mm) between the surfaces of two non-empty boolean masks, in both directions.

    This is the one pass every surface metric is derived from. It reproduces MONAI 1.6.1's
    ``get_edge_surface_distance`` (Euclidean, ``use_subvoxels=False``, on CPU) exactly:

    * surface: the voxels removed by one binary erosion with face connectivity, the outside of the
      image counted as background (``get_mask_edges`` without spacing; see ``_surface``).
    * crop: MONAI crops both masks to the bounding box of their union plus a 1-voxel margin. Here
      the margin is left out: the erosion counts the outside of the array as background, which is
      what surrounds the union's box, so the surfaces are the same, and distances (differences of
      coordinates) do not depend on where the crop starts.
    * distances: from the physical coordinates (index * spacing) of each surface voxel to the
      nearest surface voxel of the other mask, by an exact k-d tree search (``scipy.spatial``),
      as ``get_surface_distance`` does on CPU. Its cost grows with the surface, not with the
      volume of the box as a dense distance transform's does, so it stays cheap on large volumes
      and when a stray voxel far from the object stretches the box.

    Raises:
        ValueError: for bad masks or spacing (see ``segmentation_metrics``) or an empty mask, which
            has no surface to measure from (the metrics use fixed conventions then).
    """
    pred, label, spacing = _check_masks(pred, label, spacing)
    box = _bounding_box(pred | label)
    if box is None or not pred[box].any() or not label[box].any():
        raise ValueError("surface distances need a non-empty prediction and a non-empty label")
    # contiguous copies of the box: the shifted ANDs and index searches run on whole rows
    pred_surface = _surface(np.ascontiguousarray(pred[box]))
    label_surface = _surface(np.ascontiguousarray(label[box]))
    pred_index, label_index = np.argwhere(pred_surface), np.argwhere(label_surface)
    scale = np.asarray(spacing)
    return SurfaceDistances(
        pred_to_label=_directed_distances(pred_index, label_surface, label_index, scale),
        label_to_pred=_directed_distances(label_index, pred_surface, pred_index, scale),
    )


def _distance_scores(
    pred: np.ndarray, label: np.ndarray, spacing: tuple[float, ...], tolerance_mm: float = 0.0
) -> dict[str, float]:
    """``hd``, ``hd95``, ``nsd`` (at ``tolerance_mm``) and ``assd`` of checked masks from one
    ``surface_distances`` pass, with the empty-mask conventions of this module."""
    has_pred, has_label = bool(pred.any()), bool(label.any())
    if not has_pred and not has_label:
        return {"hd": 0.0, "hd95": 0.0, "nsd": 1.0, "assd": 0.0}
    if not (has_pred and has_label):
        worst = image_diagonal(pred.shape, spacing)
        return {"hd": worst, "hd95": worst, "nsd": 0.0, "assd": worst}
    distances = surface_distances(pred, label, spacing)
    return {
        "hd": distances.hausdorff(),
        "hd95": distances.hausdorff(HD95_PERCENTILE),
        "nsd": distances.surface_dice(tolerance_mm),
        "assd": distances.average(),
    }


def dice(pred: np.ndarray, label: np.ndarray) -> float:
    """Dice overlap ``2 |pred & label| / (|pred| + |label|)``; 1 when both masks are empty, 0 when
    exactly one is.

    Counted with numpy: MONAI's ``compute_dice(ignore_empty=False)`` gives the same value but first
    converts both masks to float tensors, which dominates its time on large volumes.
    """
    pred, label, _ = _check_masks(pred, label, (1.0,) * np.ndim(pred))
    total = np.count_nonzero(pred) + np.count_nonzero(label)
    if total == 0:
        return 1.0
    return 2.0 * np.count_nonzero(pred & label) / total


def hd(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric (full, maximum) Hausdorff distance between the mask surfaces, in mm."""
    pred, label, spacing = _check_masks(pred, label, spacing)
    return _distance_scores(pred, label, spacing)["hd"]


def hd95(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance between the mask surfaces, in mm."""
    pred, label, spacing = _check_masks(pred, label, spacing)
    return _distance_scores(pred, label, spacing)["hd95"]


def assd(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm: the mean over the surface voxels of both masks of
    the distance to the other mask's surface."""
    pred, label, spacing = _check_masks(pred, label, spacing)
    return _distance_scores(pred, label, spacing)["assd"]


def nsd(
    pred: np.ndarray,
    label: np.ndarray,
    spacing: Sequence[float],
    tolerance: float,
    unit: str = "mm",
) -> float:
    """Normalised surface Dice: the fraction of both surfaces lying within ``tolerance`` (in
    ``unit``, see ``nsd_tolerance_mm``) of the other surface; 1 when both masks are empty, 0 when
    exactly one is."""
    pred, label, spacing = _check_masks(pred, label, spacing)
    tolerance_mm = nsd_tolerance_mm(tolerance, unit, spacing)
    return _distance_scores(pred, label, spacing, tolerance_mm)["nsd"]


def volume_diff(pred: np.ndarray, label: np.ndarray) -> float:
    """Relative volume error ``(|pred| - |label|) / |label|``; NaN when the label is empty."""
    true_volume = int(np.count_nonzero(label))
    if true_volume == 0:
        return float("nan")
    return (int(np.count_nonzero(pred)) - true_volume) / true_volume


def segmentation_metrics(
    pred: np.ndarray,
    label: np.ndarray,
    spacing: Sequence[float],
    nsd_tolerance: float,
    *,
    nsd_unit: str = "mm",
) -> dict[str, float]:
    """Every metric of ``METRICS`` for a boolean prediction against a boolean label of the
    same 2D or 3D shape, with the empty-mask conventions of this module.

    Args:
        pred, label: boolean masks of one shape.
        spacing: voxel size in mm, one positive value per axis.
        nsd_tolerance: the NSD tolerance, in ``nsd_unit``.
        nsd_unit: ``"mm"`` or ``"px"`` (pixels / voxels of the finest axis; see
            ``nsd_tolerance_mm``).

    Returns:
        ``dice``, ``hd``, ``hd95``, ``nsd``, ``assd`` (mm) and ``volume_diff``, in that order; the
        four surface metrics come from one ``surface_distances`` pass.

    Raises:
        ValueError: naming the problem, for masks of different shapes, not 2D or 3D, or not
            boolean; a spacing that is not one positive finite value per axis; an NSD unit not in
            ``NSD_UNITS``; a negative or non-finite NSD tolerance.
    """
    pred, label, spacing = _check_masks(pred, label, spacing)
    tolerance_mm = nsd_tolerance_mm(nsd_tolerance, nsd_unit, spacing)
    scores = {
        "dice": dice(pred, label),
        **_distance_scores(pred, label, spacing, tolerance_mm),
        "volume_diff": volume_diff(pred, label),
    }
    return {name: scores[name] for name in METRICS}


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
