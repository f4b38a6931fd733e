"""Tests of segrobust.data.complexity against hand-computed values."""

import math

import numpy as np
import pytest

from segrobust.data.complexity import (
    ANALYSIS_SIZE,
    kl_divergence_bits,
    lbp_codes,
    lbp_complexity,
    lbp_complexity_2d,
    lbp_histogram,
    resize_image_for_lbp,
    resize_mask_for_lbp,
)


def test_kl_divergence_by_hand():
    # KL([.5,.5] || [.25,.75]) = .5 log2(.5/.25) + .5 log2(.5/.75) = 1 - .5 log2(3)
    assert kl_divergence_bits([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        1.0 - 0.5 * math.log2(3.0), abs=1e-8
    )
    # and the other way round: .25 log2(.25/.5) + .75 log2(.75/.5) = -.25 + .75 log2(1.5)
    assert kl_divergence_bits([0.25, 0.75], [0.5, 0.5]) == pytest.approx(
        -0.25 + 0.75 * math.log2(1.5), abs=1e-8
    )


def test_kl_divergence_of_identical_histograms_is_zero_and_unnormalised_input_is_normalised():
    assert kl_divergence_bits([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence_bits([2, 2], [1, 3]) == pytest.approx(1.0 - 0.5 * math.log2(3.0))


def test_kl_divergence_with_empty_bin_stays_finite_when_smoothed():
    # p puts mass where q has none: infinite in theory, large but finite after smoothing
    value = kl_divergence_bits([1.0, 0.0], [0.0, 1.0], empty_bins="smooth")
    assert np.isfinite(value) and value > 20


def test_drop_rule_by_hand_where_the_rules_differ():
    """q has no mass in bin 3, p has 0.25 there. drop (the authors' rule): the sum over bins 1 and
    2 only, .5 log2(.5/.5) + .25 log2(.25/.5) = -0.25 (negative: not renormalised). smooth: eps
    1e-10 in every bin, renormalised by 1 + 3 eps; bin 3 contributes ~ .25 log2(.25 / 1e-10)."""
    p, q = [0.5, 0.25, 0.25], [0.5, 0.5, 0.0]
    assert kl_divergence_bits(p, q, empty_bins="drop") == pytest.approx(-0.25, abs=1e-12)
    assert kl_divergence_bits(p, q) == kl_divergence_bits(p, q, empty_bins="drop")  # the default
    smooth = -0.25 + 0.25 * (math.log2(0.25) - math.log2(1e-10))
    assert kl_divergence_bits(p, q, empty_bins="smooth") == pytest.approx(smooth, abs=1e-6)
    assert smooth == pytest.approx(7.5548, abs=1e-4)


def test_drop_and_smooth_agree_when_only_p_has_empty_bins():
    # p's empty bin contributes 0 either way: .5 log2(.5/.25) * 2 = 1
    p, q = [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]
    assert kl_divergence_bits(p, q, empty_bins="drop") == pytest.approx(1.0, abs=1e-12)
    assert kl_divergence_bits(p, q, empty_bins="smooth") == pytest.approx(1.0, abs=1e-8)


def test_drop_rule_normalises_first_and_scores_disjoint_histograms_zero():
    assert kl_divergence_bits([2, 1, 1], [1, 1, 0]) == pytest.approx(-0.25, abs=1e-12)
    assert kl_divergence_bits([1.0, 0.0], [0.0, 1.0], empty_bins="drop") == 0.0


def test_bad_histograms_and_rules_are_rejected():
    with pytest.raises(ValueError, match="empty_bins 'zero' unknown; allowed: drop, smooth"):
        kl_divergence_bits([0.5, 0.5], [0.5, 0.5], empty_bins="zero")
    with pytest.raises(ValueError, match="empty_bins 'zero' unknown"):
        lbp_complexity(np.zeros((8, 8)), np.eye(8), empty_bins="zero")
    with pytest.raises(ValueError, match="positive mass"):
        kl_divergence_bits([0.0, 0.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="same length"):
        kl_divergence_bits([0.5, 0.5], [1.0])


def test_image_where_the_background_has_a_single_code_on_the_native_grid():
    """Background 0, a 32 x 32 foreground square of 1 in a 64 x 64 image, LBP on the native grid
    (size=None). Every neighbour of a background pixel is >= 0, so every background pixel has
    code P = 24: q is all in bin 24. A foreground pixel has code 24 only if none of its radius-3
    neighbours (bilinearly interpolated) touches the background, i.e. rows and columns 19..44 of
    the square 16..47: 26^2 of its 32^2 pixels. drop: p24 log2(p24 / 1) with p24 = 676 / 1024
    (negative); smooth: the other foreground codes fall into bins empty in q and add ~33 bits
    per unit of their mass."""
    image = np.zeros((64, 64))
    image[16:48, 16:48] = 1.0
    label = (image > 0).astype(np.uint8)
    codes = lbp_codes(image)
    assert np.all(codes[label == 0] == 24)
    p24 = 676 / 1024
    assert np.mean(codes[label == 1] == 24) == p24
    drop = lbp_complexity(image, label, size=None)
    assert drop == pytest.approx(p24 * math.log2(p24), abs=1e-12)
    assert drop == lbp_complexity(image, label, empty_bins="drop", size=None)
    smooth = lbp_complexity(image, label, empty_bins="smooth", size=None)
    assert smooth > drop + (1 - p24) * 25  # at least 25 bits per unit of the non-24 mass


def test_the_same_image_on_the_papers_256_px_grid_by_hand():
    """The image above resized x4 as the authors do (bilinear, pixel centres: input coordinate
    (x + 0.5) / 4 - 0.5). The label resized bilinearly is > 0 where that coordinate lies in
    (15, 48): rows and columns 62..193, 132 px. The image is 1 (255 after scaling) where it lies
    in [16, 47]: 66..189, and ramps to 0 across 4 px on each side, so the background (value 0)
    again has the single code 24, and a foreground pixel has code 24 only if its radius-3 circle
    stays on the plateau: rows and columns 69..186, 118 px. p24 = 118^2 / 132^2."""
    image = np.zeros((64, 64))
    image[16:48, 16:48] = 1.0
    label = (image > 0).astype(np.uint8)
    resized, mask = resize_image_for_lbp(image), resize_mask_for_lbp(label)
    assert resized.shape == mask.shape == (ANALYSIS_SIZE, ANALYSIS_SIZE) == (256, 256)
    rows = np.flatnonzero(mask.any(axis=1))
    assert (rows.min(), rows.max(), mask.sum()) == (62, 193, 132**2)
    plateau = np.flatnonzero(np.isclose(resized[128], 1.0))
    assert (plateau.min(), plateau.max()) == (66, 189)
    assert resized[128, 62] == pytest.approx(0.125) and resized[128, 65] == pytest.approx(0.875)
    codes = lbp_codes(resized)
    assert np.all(codes[~mask] == 24)
    p24 = 118**2 / 132**2
    assert np.mean(codes[mask] == 24) == pytest.approx(p24)
    assert lbp_complexity(image, label) == pytest.approx(p24 * math.log2(p24), abs=1e-12)
    assert lbp_complexity(image, label) == lbp_complexity(image, label, size=256)  # the default


def test_resizing_a_one_pixel_label_by_hand():
    """One foreground pixel (10, 10) of a 64 px label: bilinear x4 is > 0 where the input
    coordinate (x + 0.5) / 4 - 0.5 lies in (9, 11), i.e. output pixels 38..45."""
    label = np.zeros((64, 64), dtype=np.uint8)
    label[10, 10] = 1
    mask = resize_mask_for_lbp(label)
    expected = np.zeros((256, 256), dtype=bool)
    expected[38:46, 38:46] = True
    np.testing.assert_array_equal(mask, expected)
    image, native = resize_image_for_lbp(np.eye(4), None), resize_mask_for_lbp(np.eye(4), None)
    assert image.shape == (4, 4) and native.dtype == bool and native.sum() == 4


@pytest.mark.parametrize("size", [0, 6, 256.0, True, "256"])
def test_bad_analysis_sizes_are_rejected(size):
    with pytest.raises(ValueError, match="LBP analysis size must be None or an integer >= 7"):
        lbp_complexity(np.zeros((8, 8)), np.eye(8), size=size)


def test_constant_image_has_the_single_uniform_code_p():
    # every neighbour equals the centre, so every bit is set: uniform pattern with P ones -> P
    codes = lbp_codes(np.full((16, 16), 0.7), points=24, radius=3)
    assert np.all(codes == 24)
    codes8 = lbp_codes(np.full((12, 12), 3.0), points=8, radius=1)
    assert np.all(codes8 == 8)


def test_lbp_histogram_counts_codes_under_the_mask():
    codes = np.array([[0, 1, 1], [2, 25, 25]], dtype=float)
    mask = np.array([[True, True, True], [False, True, False]])
    hist = lbp_histogram(codes, mask, points=24)
    assert hist.shape == (26,)
    expected = np.zeros(26)
    expected[[0, 1, 25]] = [0.25, 0.5, 0.25]
    np.testing.assert_allclose(hist, expected)


def test_constant_image_has_zero_complexity():
    label = np.zeros((32, 32), dtype=np.uint8)
    label[8:20, 8:20] = 1
    assert lbp_complexity(np.full((32, 32), 5.0), label) == pytest.approx(0.0, abs=1e-9)


def test_same_texture_inside_and_outside_gives_near_zero_but_different_textures_do_not():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((128, 128))
    label = np.zeros((128, 128), dtype=np.uint8)
    label[:, :64] = 1
    same = lbp_complexity(noise, label)
    assert 0.0 <= same < 0.02  # only the sampling error of two 8192-pixel histograms
    stripes = np.sin(np.arange(128) / 2.0)[None, :].repeat(128, axis=0)
    different = np.where(label == 1, noise, stripes)
    assert lbp_complexity(different, label) > 25 * max(same, 0.02)


def test_undefined_without_foreground_or_background():
    image = np.random.default_rng(1).random((16, 16))
    assert math.isnan(lbp_complexity(image, np.zeros((16, 16), dtype=np.uint8)))
    assert math.isnan(lbp_complexity(image, np.ones((16, 16), dtype=np.uint8)))


def test_3d_is_the_mean_over_axial_slices_with_both_classes():
    rng = np.random.default_rng(2)
    volume = rng.random((24, 24, 4))
    label = np.zeros((24, 24, 4), dtype=np.uint8)
    label[4:14, 4:14, 0] = 1
    label[2:20, 6:12, 1] = 1
    label[:, :, 2] = 1  # foreground only: undefined, left out
    volume[:12, :, 1] = np.sin(np.arange(24) / 1.5)[None, :]  # a different texture on slice 1
    per_slice = [lbp_complexity_2d(volume[..., k], label[..., k], size=None) for k in (0, 1)]
    assert per_slice[0] != pytest.approx(per_slice[1])
    assert lbp_complexity(volume, label) == pytest.approx(np.mean(per_slice))  # native slices
    resized = [lbp_complexity_2d(volume[..., k], label[..., k], size=64) for k in (0, 1)]
    assert lbp_complexity(volume, label, slice_size=64) == pytest.approx(np.mean(resized))


def test_3d_without_any_usable_slice_is_nan():
    assert math.isnan(lbp_complexity(np.ones((8, 8, 3)), np.zeros((8, 8, 3), dtype=np.uint8)))


def test_shape_mismatch_and_wrong_dimensions_are_rejected():
    with pytest.raises(ValueError, match="label shape"):
        lbp_complexity(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="2D or 3D"):
        lbp_complexity(np.zeros(8), np.zeros(8))
