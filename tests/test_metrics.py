"""Metrics against values computed by hand on simple masks (squares and cubes shifted by k)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segrobust.evaluation.metrics import (
    FNR_THRESHOLDS,
    fnr_curve,
    foreground_ratio,
    segmentation_metrics,
    soft_quality,
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
        (np.zeros(4, bool), np.zeros(4, bool), (1,), "2D or 3D"),
    ],
)
def test_bad_input_is_rejected(pred, label, spacing, match):
    with pytest.raises(ValueError, match=match):
        segmentation_metrics(pred, label, spacing, 1.0)


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
