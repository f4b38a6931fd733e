"""Tests of the random shape masks of the texture study."""

import math
import re

import numpy as np
import pytest
from scipy import ndimage

from segrobust.data.shapes import max_radius_fraction, random_shape_mask, shape_margin


@pytest.mark.parametrize("size, radius", [(64, 0.3), (48, 0.2), (128, 0.35)])
def test_irregularity_zero_is_a_disc_of_area_pi_r_squared(size, radius):
    mask = random_shape_mask(size, 0.0, radius, np.random.default_rng(0))
    area = math.pi * (radius * size) ** 2
    assert mask.sum() == pytest.approx(area, rel=0.03)
    # a disc: every foreground pixel within R (+ half a pixel) of the mask's centroid
    ys, xs = np.nonzero(mask)
    dist = np.hypot(ys - ys.mean(), xs - xs.mean())
    assert dist.max() <= radius * size + 0.5


@pytest.mark.parametrize("seed", range(12))
def test_irregular_shapes_are_one_region_without_holes_inside_the_margin(seed):
    size = 64
    mask = random_shape_mask(size, 1.0, 0.2, np.random.default_rng(seed))
    assert mask.dtype == bool and mask.shape == (size, size)
    _, n_components = ndimage.label(mask)
    assert n_components == 1
    assert np.array_equal(ndimage.binary_fill_holes(mask), mask)
    m = shape_margin(size)
    border = np.ones_like(mask)
    border[m:-m, m:-m] = False
    assert not (mask & border).any()


def _radial_swing(mask):
    """Largest over smallest distance of the outline pixels from the mask's centroid."""
    outline = mask ^ ndimage.binary_erosion(mask)
    ys, xs = np.nonzero(outline)
    cy, cx = np.argwhere(mask).mean(axis=0)
    dist = np.hypot(ys - cy, xs - cx)
    return dist.max() / dist.min()


def test_irregularity_makes_the_outline_swing_within_its_bound():
    swings = [
        _radial_swing(random_shape_mask(64, irregularity, 0.2, np.random.default_rng(3)))
        for irregularity in (0.0, 0.3, 0.8)
    ]
    assert swings[0] < 1.15  # a disc, up to pixelation
    assert 1.2 < swings[1] < swings[2]
    # r(theta) stays within R (1 -/+ 0.6 irregularity): a swing of at most 1.48 / 0.52
    assert swings[2] < 1.48 / 0.52 * 1.1


def test_same_rng_state_gives_the_same_centre_at_any_irregularity():
    disc = random_shape_mask(64, 0.0, 0.2, np.random.default_rng(3))
    blob = random_shape_mask(64, 0.8, 0.2, np.random.default_rng(3))
    ys, xs = np.nonzero(disc)
    assert blob[int(round(ys.mean())), int(round(xs.mean()))]
    assert (disc & blob).sum() > 0.5 * disc.sum()


def test_deterministic_per_rng_seed_and_different_across_seeds():
    a = random_shape_mask(64, 0.5, 0.25, np.random.default_rng(7))
    b = random_shape_mask(64, 0.5, 0.25, np.random.default_rng(7))
    c = random_shape_mask(64, 0.5, 0.25, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_largest_allowed_radius_fits():
    size, irregularity = 64, 0.7
    radius = max_radius_fraction(size, irregularity)
    mask = random_shape_mask(size, irregularity, radius, np.random.default_rng(0))
    assert mask.any()
    with pytest.raises(ValueError, match=r"radius .* does not fit"):
        random_shape_mask(size, irregularity, radius + 0.01, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"irregularity": -0.1}, "irregularity"),
        ({"irregularity": 1.5}, "irregularity"),
        ({"radius": 0.0}, "radius"),
        ({"radius": 0.6}, "radius"),
        ({"radius": 0.01}, "radius"),  # under 2 px at 64 px
        ({"size": 4}, "size"),
        ({"size": 32.0}, "size"),
    ],
)
def test_bad_arguments_name_the_key(kwargs, key):
    args = {"size": 64, "irregularity": 0.5, "radius": 0.2} | kwargs
    with pytest.raises(ValueError, match=key):
        random_shape_mask(
            args["size"], args["irregularity"], args["radius"], np.random.default_rng()
        )


# --- a range of sizes ------------------------------------------------------------------------


def test_a_radius_range_draws_each_shapes_size_within_it():
    size, low, high = 64, 0.15, 0.33
    ratios = [
        random_shape_mask(size, 0.0, [low, high], np.random.default_rng(seed)).mean()
        for seed in range(200)
    ]
    # discs: area pi (r size)^2 with r uniform in [low, high]
    assert math.pi * low**2 * 0.95 <= min(ratios) < math.pi * (low + 0.03) ** 2
    assert math.pi * (high - 0.03) ** 2 < max(ratios) <= math.pi * high**2 * 1.05
    assert np.median(ratios) == pytest.approx(math.pi * ((low + high) / 2) ** 2, rel=0.15)


def test_a_fixed_radius_makes_no_extra_draw():
    """A number keeps every shape as it was before ranges (amplitudes, phases, centre: 4 + 4 +
    2 draws), so configs with one radius, such as reproduce.yaml, keep their datasets; a range
    draws its radius first."""
    used, reference = np.random.default_rng(5), np.random.default_rng(5)
    random_shape_mask(64, 0.3, 0.25, used)
    for n in (4, 4, 2):
        reference.uniform(size=n)
    assert used.bit_generator.state == reference.bit_generator.state
    ranged = np.random.default_rng(5)
    random_shape_mask(64, 0.3, [0.2, 0.25], ranged)
    reference.uniform()
    assert ranged.bit_generator.state == reference.bit_generator.state


@pytest.mark.parametrize(
    "radius, message",
    [
        ([0.3, 0.2], "needs low < high"),
        ([0.1], "a range [low, high] of two numbers"),
        ("0.2", "a range [low, high] of two numbers"),
        ([0.2, 0.45], "does not fit"),
        ([0.01, 0.2], "too small"),
    ],
)
def test_bad_radius_ranges_are_refused_naming_the_problem(radius, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        random_shape_mask(64, 0.3, radius, np.random.default_rng(0))
