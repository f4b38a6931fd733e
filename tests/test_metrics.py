"""Metrics against values computed by hand on simple masks (squares and cubes shifted by k, stray
voxels, single voxels), and against MONAI's own functions on those masks and on 100 random pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)
from scipy import ndimage

from segrobust.evaluation.metrics import (
    FNR_THRESHOLDS,
    METRICS,
    assd,
    dice,
    fnr_curve,
    foreground_ratio,
    hd,
    hd95,
    nsd,
    nsd_tolerance_mm,
    segmentation_metrics,
    soft_quality,
    surface_distances,
)


def square(shape, start, side, shift=0, axis=0):
    """A boolean box of edge ``side`` at ``start`` on every axis, moved by ``shift`` on ``axis``."""
    mask = np.zeros(shape, dtype=bool)
    origin = [start] * len(shape)
    origin[axis] += shift
    mask[tuple(slice(o, o + side) for o in origin)] = True
    return mask


@pytest.mark.parametrize("k", [1, 2, 3])
def test_shifted_squares_dice_and_hd95(k):
    n = 10
    label = square((32, 32), 8, n)
    pred = square((32, 32), 8, n, shift=k, axis=0)
    m = segmentation_metrics(pred, label, (1.0, 1.0), nsd_tolerance=1.0)
    # overlap n * (n - k) out of 2 n^2 voxels: Dice = (n - k) / n
    assert m["dice"] == pytest.approx((n - k) / n)
    # the leading face of each square (n of 4n - 4 surface pixels, > 5 %) is exactly k away and
    # nothing is further, so the 95th percentile is k
    assert m["hd95"] == pytest.approx(k)
    assert m["volume_diff"] == pytest.approx(0.0)


def test_hd95_scales_with_spacing_along_the_shift_only():
    label = square((32, 32), 8, 10)
    pred = square((32, 32), 8, 10, shift=2, axis=0)
    along = segmentation_metrics(pred, label, (1.5, 1.0), nsd_tolerance=1.0)
    across = segmentation_metrics(pred, label, (1.0, 3.0), nsd_tolerance=1.0)
    assert along["hd95"] == pytest.approx(2 * 1.5)
    assert across["hd95"] == pytest.approx(2 * 1.0)


def test_assd_and_nsd_by_hand_for_a_one_pixel_shift():
    # Square side n shifted by one pixel: of the 4n - 4 surface pixels of each square, 2n - 2
    # (the rows parallel to the shift) lie on the other surface (distance 0) and 2n - 2 (the
    # columns across it) are one pixel away. Spacing s: ASSD = s / 2; NSD = 1/2 below tolerance s.
    n, s = 10, 0.7
    label = square((32, 32), 8, n)
    pred = square((32, 32), 8, n, shift=1, axis=1)
    below = segmentation_metrics(pred, label, (s, s), nsd_tolerance=0.5 * s)
    at = segmentation_metrics(pred, label, (s, s), nsd_tolerance=s)
    assert below["assd"] == pytest.approx(s / 2)
    assert below["nsd"] == pytest.approx(0.5)
    assert at["nsd"] == pytest.approx(1.0)


def test_nsd_tolerance_below_and_above_a_larger_shift():
    label = square((32, 32), 8, 10)
    pred = square((32, 32), 8, 10, shift=3, axis=0)
    assert segmentation_metrics(pred, label, (1.0, 1.0), 2.5)["nsd"] < 1.0
    assert segmentation_metrics(pred, label, (1.0, 1.0), 3.0)["nsd"] == pytest.approx(1.0)


def test_shifted_cubes_3d_with_anisotropic_spacing():
    n, k = 6, 2
    label = square((16, 16, 16), 4, n)
    pred = square((16, 16, 16), 4, n, shift=k, axis=2)
    m = segmentation_metrics(pred, label, (1.0, 1.0, 2.5), nsd_tolerance=0.5)
    assert m["dice"] == pytest.approx((n - k) / n)
    assert m["hd95"] == pytest.approx(k * 2.5)  # the face across the shift: n^2 of ~6n^2 voxels
    assert 0.0 < m["nsd"] < 1.0


def test_identical_masks_are_perfect():
    label = square((16, 16, 16), 4, 5)
    m = segmentation_metrics(label, label.copy(), (1.0, 2.0, 3.0), nsd_tolerance=0.0)
    assert m == {"dice": 1.0, "hd": 0.0, "hd95": 0.0, "nsd": 1.0, "assd": 0.0, "volume_diff": 0.0}


def test_volume_diff_is_relative_to_the_label():
    label = square((20, 20), 2, 10)  # 100 pixels
    pred = square((20, 20), 2, 5)  # 25 pixels, inside the label
    m = segmentation_metrics(pred, label, (1.0, 1.0), 1.0)
    assert m["volume_diff"] == pytest.approx((25 - 100) / 100)
    assert m["dice"] == pytest.approx(2 * 25 / 125)


def test_both_empty_convention():
    empty = np.zeros((8, 9), dtype=bool)
    m = segmentation_metrics(empty, empty.copy(), (1.0, 2.0), 1.0)
    assert (m["dice"], m["hd"], m["hd95"], m["nsd"], m["assd"]) == (1.0, 0.0, 0.0, 1.0, 0.0)
    assert math.isnan(m["volume_diff"])


def test_empty_prediction_scores_the_image_diagonal():
    label = square((8, 6, 4), 1, 2)
    empty = np.zeros_like(label)
    spacing = (1.0, 2.0, 3.0)
    diagonal = math.sqrt(8**2 + 12**2 + 12**2)
    m = segmentation_metrics(empty, label, spacing, 1.0)
    assert (m["dice"], m["nsd"], m["volume_diff"]) == (0.0, 0.0, -1.0)
    for name in ("hd", "hd95", "assd"):
        assert m[name] == pytest.approx(diagonal)
    flipped = segmentation_metrics(label, empty, spacing, 1.0)  # object predicted where none is
    assert (flipped["dice"], flipped["nsd"]) == (0.0, 0.0)
    for name in ("hd", "hd95", "assd"):
        assert flipped[name] == pytest.approx(diagonal)
    assert math.isnan(flipped["volume_diff"])


@pytest.mark.parametrize(
    "pred, label, spacing, match",
    [
        (np.zeros((4, 4), bool), np.zeros((4, 5), bool), (1, 1), "shape"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), (1, 1), "boolean"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), (1, 1, 1), "spacing"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), (1, 0), "spacing"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), (1, float("inf")), "spacing"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), (1, float("nan")), "spacing"),
        (np.zeros(4, bool), np.zeros(4, bool), (1,), "2D or 3D"),
    ],
)
def test_bad_input_is_rejected(pred, label, spacing, match):
    with pytest.raises(ValueError, match=match):
        segmentation_metrics(pred, label, spacing, 1.0)


def monai_metrics(pred, label, spacing, tolerance_mm) -> dict[str, float]:
    """The metrics as MONAI 1.6.1 computes them, called the way this module called MONAI before it
    derived them in one pass (plus ``percentile=None`` for the full Hausdorff distance)."""
    y_pred, y = (torch.from_numpy(np.ascontiguousarray(m))[None, None] for m in (pred, label))
    return {
        "dice": float(compute_dice(y_pred, y, ignore_empty=False)[0, 0]),
        "hd": float(
            compute_hausdorff_distance(y_pred, y, include_background=True, spacing=spacing)[0, 0]
        ),
        "hd95": float(
            compute_hausdorff_distance(
                y_pred, y, include_background=True, percentile=95, spacing=spacing
            )[0, 0]
        ),
        "nsd": float(
            compute_surface_dice(
                y_pred, y, class_thresholds=[tolerance_mm], include_background=True, spacing=spacing
            )[0, 0]
        ),
        "assd": float(
            compute_average_surface_distance(
                y_pred, y, include_background=True, symmetric=True, spacing=spacing
            )[0, 0]
        ),
    }


def assert_matches_monai(pred, label, spacing, tolerance, unit="mm"):
    """Every surface metric and Dice equal MONAI's to 1e-6 (MONAI returns float32)."""
    ours = segmentation_metrics(pred, label, spacing, tolerance, nsd_unit=unit)
    reference = monai_metrics(pred, label, spacing, nsd_tolerance_mm(tolerance, unit, spacing))
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name


# The mask pairs of the hand-computed tests above: (pred, label, spacing, NSD tolerance in mm).
HAND_CASES = [
    *[(square((32, 32), 8, 10, k), square((32, 32), 8, 10), (1.0, 1.0), 1.0) for k in (1, 2, 3)],
    (square((32, 32), 8, 10, 2), square((32, 32), 8, 10), (1.5, 1.0), 1.0),
    (square((32, 32), 8, 10, 2), square((32, 32), 8, 10), (1.0, 3.0), 1.0),
    (square((32, 32), 8, 10, 1, axis=1), square((32, 32), 8, 10), (0.7, 0.7), 0.35),
    (square((32, 32), 8, 10, 1, axis=1), square((32, 32), 8, 10), (0.7, 0.7), 0.7),
    (square((32, 32), 8, 10, 3), square((32, 32), 8, 10), (1.0, 1.0), 2.5),
    (square((32, 32), 8, 10, 3), square((32, 32), 8, 10), (1.0, 1.0), 3.0),
    (square((16,) * 3, 4, 6, 2, axis=2), square((16,) * 3, 4, 6), (1.0, 1.0, 2.5), 0.5),
    (square((16,) * 3, 4, 5), square((16,) * 3, 4, 5), (1.0, 2.0, 3.0), 0.0),
    (square((20, 20), 2, 5), square((20, 20), 2, 10), (1.0, 1.0), 1.0),
]


@pytest.mark.parametrize("pred, label, spacing, tolerance", HAND_CASES)
def test_hand_cases_match_monai(pred, label, spacing, tolerance):
    assert_matches_monai(pred, label, spacing, tolerance)


def random_blob(rng, shape) -> np.ndarray:
    """Smoothed Gaussian noise above a random level: one or more irregular blobs."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 3.0))
    return field > rng.uniform(0.0, 1.0) * field.std()


def random_thin(rng, shape) -> np.ndarray:
    """One-voxel-thick structures: straight and diagonal lines, and a plane (rows in 2D)."""
    mask = np.zeros(shape, dtype=bool)
    for _ in range(rng.integers(1, 4)):
        point = rng.integers(0, shape)
        step = rng.integers(-1, 2, size=len(shape))
        for _ in range(rng.integers(2, max(shape))):
            if np.all((point >= 0) & (point < shape)):
                mask[tuple(point)] = True
            point = point + step
    axis = rng.integers(len(shape))
    plane = [slice(None)] * len(shape)
    plane[axis] = int(rng.integers(shape[axis]))
    if rng.random() < 0.5:
        mask[tuple(plane)] = True
    return mask


def random_voxels(rng, shape) -> np.ndarray:
    """A few isolated single voxels."""
    mask = np.zeros(shape, dtype=bool)
    for _ in range(rng.integers(1, 4)):
        mask[tuple(rng.integers(0, shape))] = True
    return mask


def random_border(rng, shape) -> np.ndarray:
    """A blob joined to a slab that touches the image border on a random side."""
    mask = random_blob(rng, shape)
    axis = rng.integers(len(shape))
    slab = [slice(None)] * len(shape)
    depth = int(rng.integers(1, 4))
    slab[axis] = slice(0, depth) if rng.random() < 0.5 else slice(shape[axis] - depth, None)
    mask[tuple(slab)] = True
    return mask


def perturbed(rng, label) -> np.ndarray:
    """An imperfect prediction of ``label``: shifted up to 2 voxels, with a few voxels flipped."""
    shift = tuple(int(s) for s in rng.integers(-2, 3, size=label.ndim))
    return np.roll(label, shift, axis=tuple(range(label.ndim))) ^ (rng.random(label.shape) < 0.01)


MASK_KINDS = (random_blob, random_thin, random_voxels, random_border)


def random_pair(seed):
    """A non-empty prediction / label pair, 2D or 3D, with an anisotropic spacing."""
    rng = np.random.default_rng(seed)
    ndim = 2 if seed % 2 else 3
    shape = tuple(int(n) for n in rng.integers(6, 40 if ndim == 2 else 18, size=ndim))
    spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, size=ndim))
    label = MASK_KINDS[rng.integers(len(MASK_KINDS))](rng, shape)
    if rng.random() < 0.4:
        pred = perturbed(rng, label)
    else:
        pred = MASK_KINDS[rng.integers(len(MASK_KINDS))](rng, shape)
    for mask in (pred, label):
        if not mask.any():
            mask[tuple(rng.integers(0, shape))] = True
    return pred, label, spacing


@pytest.mark.parametrize("seed", range(100))
def test_random_pairs_match_monai(seed):
    pred, label, spacing = random_pair(seed)
    step = min(spacing)
    # tolerances on the voxel lattice (ties with the distances) and between lattice distances
    for tolerance, unit in ((0.0, "mm"), (1.0, "mm"), (2.5 * step, "mm"), (1, "px"), (5, "px")):
        assert_matches_monai(pred, label, spacing, tolerance, unit)


@pytest.mark.parametrize("shape", [(1, 7), (2, 5), (3, 3), (5, 1, 4), (2, 2, 3), (1, 1, 6)])
def test_axes_of_one_to_three_voxels_match_monai(shape):
    # every voxel of an axis this short is on the image border, so (nearly) all are surface
    rng = np.random.default_rng(len(shape) * 100 + sum(shape))
    for _ in range(5):
        pred, label = (rng.random(shape) < 0.5 for _ in range(2))
        pred.flat[0] = label.flat[-1] = True
        assert_matches_monai(pred, label, tuple(rng.uniform(0.5, 2.0, len(shape))), 1, "px")


def test_random_pairs_cover_the_intended_cases():
    """The random pairs include each kind of hard case the equivalence test is meant to exercise."""
    pairs = [random_pair(seed) for seed in range(100)]
    assert {pred.ndim for pred, _, _ in pairs} == {2, 3}
    assert any(np.count_nonzero(m) == 1 for pred, label, _ in pairs for m in (pred, label)), (
        "single voxels"
    )
    touching = 0
    for _, label, _ in pairs:
        faces = [np.take(label, i, axis=a) for a in range(label.ndim) for i in (0, -1)]
        touching += any(face.any() for face in faces)
    assert touching >= 20, "masks touching the border"
    assert any(
        not np.array_equal(pred, label) and dice(pred, label) > 0.5 for pred, label, _ in pairs
    )
    assert any(np.count_nonzero(pred & label) == 0 for pred, label, _ in pairs), "disjoint pairs"


def test_hd_is_the_stray_voxel_distance_and_hd95_ignores_it():
    # A correct prediction of a 10 x 10 square plus one stray pixel 13 rows below its bottom row.
    # Spacing 0.5 mm across rows: the stray pixel is 13 * 0.5 = 6.5 mm from the label surface, and
    # it is 1 of the prediction's 36 + 1 surface pixels; the other 36 lie on the label surface.
    label = square((40, 40), 8, 10)
    pred = label.copy()
    pred[30, 13] = True
    spacing = (0.5, 1.0)
    m = segmentation_metrics(pred, label, spacing, nsd_tolerance=1.0)
    assert m["hd"] == pytest.approx(6.5)
    # 95th percentile of 36 zeros and one 6.5: position 0.95 * 36 = 34.2 lies among the zeros
    assert m["hd95"] == 0.0
    assert m["assd"] == pytest.approx(6.5 / (37 + 36))
    assert m["nsd"] == pytest.approx((36 + 36) / (37 + 36))
    assert m["dice"] == pytest.approx(2 * 100 / (101 + 100))
    assert (hd(pred, label, spacing), hd95(pred, label, spacing)) == (m["hd"], m["hd95"])
    assert_matches_monai(pred, label, spacing, 1.0)


def grown_square_pair():
    """Label: a 6 x 6 square at rows / cols 8..13; prediction: the square grown by 3 pixels on
    every side (12 x 12 at 5..16).

    Label to prediction: all 20 label surface pixels are exactly 3 px from the prediction's.
    Prediction to label: 24 side pixels at 3 px; per corner (5,5) at sqrt(18), (5,6) and (6,5) at
    sqrt(13), (5,7) and (7,5) at sqrt(10) px: 4 x sqrt(18), 8 x sqrt(13), 8 x sqrt(10) in all.
    """
    return square((24, 24), 5, 12), square((24, 24), 8, 6)


def test_nsd_at_5_px_differs_from_1_mm_on_a_half_millimetre_grid():
    pred, label = grown_square_pair()
    spacing = (0.5, 0.5)
    # 1 mm = 2 px: every surface pixel is at least 3 px away
    assert nsd(pred, label, spacing, 1.0) == 0.0
    # 5 px = 2.5 mm: the furthest is sqrt(18) = 4.24 px
    assert nsd(pred, label, spacing, 5, unit="px") == 1.0
    assert segmentation_metrics(pred, label, spacing, 5, nsd_unit="px")["nsd"] == 1.0
    # 3 px: exactly the 20 label pixels and the 24 side pixels of the prediction, ties included
    assert nsd(pred, label, spacing, 3, unit="px") == pytest.approx((20 + 24) / (20 + 44))
    for tolerance, unit in ((1.0, "mm"), (3, "px"), (5, "px")):
        assert_matches_monai(pred, label, spacing, tolerance, unit)


def test_surface_distances_of_the_grown_square_by_hand():
    pred, label = grown_square_pair()
    s = 0.5
    distances = surface_distances(pred, label, (s, s))
    assert np.allclose(np.sort(distances.label_to_pred), [3 * s] * 20)
    expected = [3.0] * 24 + [math.sqrt(10)] * 8 + [math.sqrt(13)] * 8 + [math.sqrt(18)] * 4
    assert np.allclose(np.sort(distances.pred_to_label), s * np.array(expected))
    m = segmentation_metrics(pred, label, (s, s), 1.0)
    assert m["hd"] == pytest.approx(s * math.sqrt(18))
    # positions 0.95 * 43 = 40.85 of the sorted prediction distances: both sqrt(18)
    assert m["hd95"] == pytest.approx(s * math.sqrt(18))
    assert m["assd"] == pytest.approx(s * (20 * 3 + sum(expected)) / 64)


def test_px_tolerance_uses_the_finest_axis():
    pred, label = grown_square_pair()
    spacing = (0.5, 2.0)
    assert nsd_tolerance_mm(5, "px", spacing) == 2.5
    assert nsd_tolerance_mm(1.5, "mm", spacing) == 1.5
    assert nsd(pred, label, spacing, 5, unit="px") == nsd(pred, label, spacing, 2.5)
    assert_matches_monai(pred, label, spacing, 5, "px")


def test_exact_distances_between_single_voxels():
    # (1, 2, 3) to (4, 6, 3) with spacing (1, 0.5, 2): sqrt(3^2 + (4 * 0.5)^2) = sqrt(13) mm
    shape, spacing = (8, 8, 8), (1.0, 0.5, 2.0)
    pred, label = np.zeros(shape, bool), np.zeros(shape, bool)
    pred[1, 2, 3] = label[4, 6, 3] = True
    d = math.sqrt(13)
    m = segmentation_metrics(pred, label, spacing, d)
    assert (m["hd"], m["hd95"], m["assd"]) == pytest.approx((d, d, d))
    assert m["nsd"] == 1.0 and m["dice"] == 0.0
    assert nsd(pred, label, spacing, 3.6) == 0.0  # just below sqrt(13) = 3.606
    assert (nsd(pred, label, spacing, 7, "px"), nsd(pred, label, spacing, 8, "px")) == (0.0, 1.0)
    # a second label voxel at (4, 6, 5) is sqrt(9 + 4 + 16) = sqrt(29) mm from the prediction
    label[4, 6, 5] = True
    distances = surface_distances(pred, label, spacing)
    assert distances.pred_to_label == pytest.approx([d])
    assert np.sort(distances.label_to_pred) == pytest.approx([d, math.sqrt(29)])
    assert hd(pred, label, spacing) == pytest.approx(math.sqrt(29))
    # label side: linear interpolation at 95 % between its two distances
    assert hd95(pred, label, spacing) == pytest.approx(d + 0.95 * (math.sqrt(29) - d))
    assert assd(pred, label, spacing) == pytest.approx((2 * d + math.sqrt(29)) / 3)
    assert_matches_monai(pred, label, spacing, 4.0)


def test_masks_touching_the_border_score_as_if_padded():
    # the surface counts the outside of the image as background, so zero padding changes nothing
    rng = np.random.default_rng(3)
    label = random_border(rng, (14, 11, 9))
    pred = perturbed(rng, label)
    spacing = (0.8, 1.1, 2.0)
    padded = [np.pad(m, 3) for m in (pred, label)]
    plain = segmentation_metrics(pred, label, spacing, 1.5)
    with_pad = segmentation_metrics(*padded, spacing, 1.5)
    for name in ("dice", "hd", "hd95", "nsd", "assd", "volume_diff"):
        assert with_pad[name] == pytest.approx(plain[name], rel=1e-12), name


def test_single_metric_functions_agree_with_segmentation_metrics():
    pred, label, spacing = random_pair(7)
    m = segmentation_metrics(pred, label, spacing, 2.0)
    assert list(m) == list(METRICS)
    assert m["dice"] == dice(pred, label)
    assert (hd(pred, label, spacing), hd95(pred, label, spacing)) == (m["hd"], m["hd95"])
    assert (assd(pred, label, spacing), nsd(pred, label, spacing, 2.0)) == (m["assd"], m["nsd"])


@pytest.mark.parametrize(
    "tolerance, unit, match",
    [
        (1.0, "cm", "unit 'cm' is not allowed; allowed: mm, px"),
        (-1.0, "mm", "NSD tolerance must be finite and >= 0"),
        (float("nan"), "px", "NSD tolerance must be finite and >= 0"),
        (float("inf"), "mm", "NSD tolerance must be finite and >= 0"),
    ],
)
def test_bad_nsd_tolerance_is_rejected(tolerance, unit, match):
    mask = square((8, 8), 2, 3)
    with pytest.raises(ValueError, match=match):
        segmentation_metrics(mask, mask, (1.0, 1.0), tolerance, nsd_unit=unit)
    with pytest.raises(ValueError, match=match):
        nsd(mask, mask, (1.0, 1.0), tolerance, unit)


def test_surface_distances_need_two_non_empty_masks():
    mask = square((8, 8), 2, 3)
    with pytest.raises(ValueError, match="non-empty prediction and a non-empty label"):
        surface_distances(np.zeros_like(mask), mask, (1.0, 1.0))
    with pytest.raises(ValueError, match="non-empty prediction and a non-empty label"):
        surface_distances(mask, np.zeros_like(mask), (1.0, 1.0))


def test_foreground_ratio():
    label = np.zeros((4, 5), dtype=np.uint8)
    label[0, :3] = 1
    assert foreground_ratio(label) == pytest.approx(3 / 20)


def test_soft_quality_by_hand():
    prob = np.array([0.9, 0.6, 0.4, 0.1])
    # y_hat = [1, 1, 0, 0]: 2 * (0.9 + 0.6) / (2.0 + 2)
    assert soft_quality(prob) == pytest.approx(3.0 / 4.0)
    assert soft_quality(np.array([1.0, 1.0, 0.0])) == pytest.approx(1.0)
    assert soft_quality(np.zeros((3, 3))) == 1.0
    # uncertain below threshold: no y_hat, some probability mass -> 0
    assert soft_quality(np.full(4, 0.2)) == 0.0


def test_fnr_thresholds_grid():
    assert len(FNR_THRESHOLDS) == 51
    assert FNR_THRESHOLDS[0] == 0.0 and FNR_THRESHOLDS[-1] == 1.0
    assert np.allclose(np.diff(FNR_THRESHOLDS), 0.02)


def test_fnr_curve_by_hand():
    prob = np.array([[0.1, 0.5], [0.7, 0.9]])
    label = np.array([[1, 1], [0, 1]], dtype=bool)  # foreground probabilities 0.1, 0.5, 0.9
    fnr = fnr_curve(prob, label, [0.0, 0.1, 0.3, 0.5, 0.6, 0.95, 1.0])
    # missed = foreground with p < t
    assert np.allclose(fnr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1, 1])


def test_fnr_curve_is_monotone_and_zero_for_empty_label():
    rng = np.random.default_rng(0)
    prob = rng.random((6, 6, 6))
    label = rng.random((6, 6, 6)) > 0.5
    fnr = fnr_curve(prob, label)
    assert fnr.shape == FNR_THRESHOLDS.shape
    assert np.all(np.diff(fnr) >= 0) and fnr[0] == 0.0 and fnr[-1] == 1.0
    assert not fnr_curve(prob, np.zeros_like(label)).any()
