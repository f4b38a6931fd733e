"""Tests of segrobust.data.complexity against hand-computed values."""

import math

import numpy as np
import pytest

from segrobust.data.complexity import (
    kl_divergence_bits,
    lbp_codes,
    lbp_complexity,
    lbp_complexity_2d,
    lbp_histogram,
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


def test_image_where_the_background_has_a_single_code():
    """Background 0, a 32 x 32 foreground square of 1 in a 64 x 64 image. Every neighbour of a
    background pixel is >= 0, so every background pixel has code P = 24: q is all in bin 24. A
    foreground pixel has code 24 only if none of its radius-3 neighbours (bilinearly interpolated)
    touches the background, i.e. rows and columns 19..44 of the square 16..47: 26^2 of its 32^2
    pixels. drop: p24 log2(p24 / 1) with p24 = 676 / 1024 (negative); smooth: the other
    foreground codes fall into bins empty in q and add ~33 bits per unit of their mass."""
    image = np.zeros((64, 64))
    image[16:48, 16:48] = 1.0
    label = (image > 0).astype(np.uint8)
    codes = lbp_codes(image)
    assert np.all(codes[label == 0] == 24)
    p24 = 676 / 1024
    assert np.mean(codes[label == 1] == 24) == p24
    drop = lbp_complexity(image, label)
    assert drop == pytest.approx(p24 * math.log2(p24), abs=1e-12)
    assert drop == lbp_complexity(image, label, empty_bins="drop")
    smooth = lbp_complexity(image, label, empty_bins="smooth")
    assert smooth > drop + (1 - p24) * 25  # at least 25 bits per unit of the non-24 mass


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
    per_slice = [lbp_complexity_2d(volume[..., k], label[..., k]) for k in (0, 1)]
    assert per_slice[0] != pytest.approx(per_slice[1])
    assert lbp_complexity(volume, label) == pytest.approx(np.mean(per_slice))


def test_3d_without_any_usable_slice_is_nan():
    assert math.isnan(lbp_complexity(np.ones((8, 8, 3)), np.zeros((8, 8, 3), dtype=np.uint8)))


def test_shape_mismatch_and_wrong_dimensions_are_rejected():
    with pytest.raises(ValueError, match="label shape"):
        lbp_complexity(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="2D or 3D"):
        lbp_complexity(np.zeros(8), np.zeros(8))
