"""The second texture generator: the authors' Bezier shapes and their PIL blend."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from segrobust.data import bezier_shapes as bezier
from segrobust.data.authors_textures import (
    authors_texture_case,
    generate_authors_texture_dataset,
    pil_blend,
    to_8bit,
)
from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import load_split, read_datalist
from segrobust.data.textures import texture_case
from segrobust.registry import UnknownNameError

ARGS = dict(image_size=48, foreground="brick", background="grass", seed=2)


# --- the shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("size", [32, 64, 256])
def test_shapes_are_one_closed_filled_region_holding_their_anchors(seed, size):
    rng = np.random.default_rng(seed)
    points = bezier.anchor_points(4, 0.5, 0.25, 0.001, np.random.default_rng(seed))
    mask = bezier.bezier_shape_mask(size, rng)
    assert mask.dtype == bool and mask.shape == (size, size)
    _, n_components = ndimage.label(mask)
    assert n_components == 1
    assert np.array_equal(ndimage.binary_fill_holes(mask), mask)  # no holes
    # the curve passes through its anchors, which lie in [0.25, 0.75]^2
    assert ((points >= 0.25) & (points <= 0.75)).all()
    rows, cols = np.clip(np.floor(points * size).astype(int), 0, size - 1).T
    assert mask[rows, cols].all()


def test_the_outline_goes_round_every_anchor_counter_clockwise():
    points = bezier.counter_clockwise(np.random.default_rng(0).uniform(size=(6, 2)))
    centred = points - points.mean(axis=0)
    angles = np.arctan2(centred[:, 1], centred[:, 0])
    assert (np.diff(angles) > 0).all()
    curve = bezier.bezier_outline(points, rad=1.0, edgy=0.05)
    starts = curve[:: bezier.SAMPLES_PER_SEGMENT]
    np.testing.assert_allclose(starts, points, atol=1e-12)  # each segment starts at its anchor
    np.testing.assert_allclose(curve[-1], points[0], atol=1e-12)  # and the loop closes


def test_sizes_lie_in_the_stated_range():
    """The module states the 5th-95th percentile of the foreground ratio at 64 pixels; 400
    seeded shapes reproduce it to within sampling error (+-0.02)."""
    ratios = np.array(
        [bezier.bezier_shape_mask(64, np.random.default_rng(s)).mean() for s in range(400)]
    )
    low, high = np.quantile(ratios, [0.05, 0.95])
    assert low == pytest.approx(bezier.FG_RATIO_RANGE[0], abs=0.02)
    assert high == pytest.approx(bezier.FG_RATIO_RANGE[1], abs=0.02)
    assert 0.0 < ratios.min() and ratios.max() < 0.75  # never empty, never the whole image


def test_shapes_are_seeded():
    a = bezier.bezier_shape_mask(64, np.random.default_rng(7))
    b = bezier.bezier_shape_mask(64, np.random.default_rng(7))
    c = bezier.bezier_shape_mask(64, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_the_thickening_follows_the_authors_9_pixels_at_256():
    assert bezier.dilation_width(256) == 9
    assert bezier.dilation_width(64) == 3 and bezier.dilation_width(16) == 3
    assert bezier.dilation_width(512) == 17


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(size=8), "size must be an integer >= 16"),
        (dict(n_points=2), "n_points must be an integer >= 3"),
        (dict(rad=0.0), "rad must be > 0"),
        (dict(edgy=-1.0), "edgy must be >= 0"),
        (dict(scale=0.9, offset=0.25), r"offset \+ scale <= 1"),
    ],
)
def test_bad_shape_arguments_are_named(overrides, message):
    args = dict(size=64, n_points=4, rad=1.0, edgy=0.05, scale=0.5, offset=0.25) | overrides
    size = args.pop("size")
    with pytest.raises(ValueError, match=message):
        bezier.bezier_shape_mask(size, np.random.default_rng(0), **args)


# --- the blend ------------------------------------------------------------------------------


def _case():
    return authors_texture_case(3, **ARGS)


@pytest.mark.parametrize("direction", ["background", "foreground"])
def test_alpha_0_keeps_both_textures_and_alpha_1_leaves_one(direction):
    mask, fg, bg = _case()
    fg8, bg8 = np.asarray(fg) / 255.0, np.asarray(bg) / 255.0
    side_by_side = pil_blend(fg, bg, mask, 0.0, direction)
    np.testing.assert_allclose(side_by_side, np.where(mask, fg8, bg8), atol=1e-7)
    one = pil_blend(fg, bg, mask, 1.0, direction)
    np.testing.assert_allclose(one, fg8 if direction == "background" else bg8, atol=1e-7)


@pytest.mark.parametrize("direction", ["background", "foreground"])
def test_a_blend_is_pils_8_bit_mix_where_the_texture_bleeds(direction):
    mask, fg, bg = _case()
    image = pil_blend(fg, bg, mask, 0.3, direction)
    fg8, bg8 = np.asarray(fg, float), np.asarray(bg, float)
    if direction == "background":
        mixed, kept, region = 0.7 * bg8 + 0.3 * fg8, fg8, ~mask
    else:
        mixed, kept, region = 0.7 * fg8 + 0.3 * bg8, bg8, mask
    # PIL mixes in 8 bits: within one grey level of the exact mix
    assert np.abs(image[region] * 255 - mixed[region]).max() <= 1.0
    np.testing.assert_allclose(image[~region] * 255, kept[~region], atol=1e-4)
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0


def test_textures_are_8_bit_crops_of_the_project_sources_from_other_streams():
    mask, fg, bg = _case()
    assert isinstance(fg, Image.Image) and fg.mode == "L" and fg.size == (48, 48)
    own_mask, own_fg, _ = texture_case(
        3, image_size=48, foreground="brick", background="grass", irregularity=0.3, radius=0.25,
        seed=2,
    )  # fmt: skip
    assert not np.array_equal(np.asarray(fg), np.asarray(to_8bit(own_fg)))  # independent draws
    assert not np.array_equal(mask, own_mask)


def test_blend_arguments_are_checked():
    mask, fg, bg = _case()
    with pytest.raises(ValueError, match="alpha must be in"):
        pil_blend(fg, bg, mask, 1.5, "background")
    with pytest.raises(ValueError, match="unknown direction"):
        pil_blend(fg, bg, mask, 0.5, "sideways")
    with pytest.raises(ValueError, match="sizes differ"):
        pil_blend(fg, bg, mask[:10], 0.5, "background")


# --- the dataset ----------------------------------------------------------------------------


def _generate(path, **overrides):
    args = dict(ARGS, n_test=5, direction="background", alpha=0.5) | overrides
    generate_authors_texture_dataset(path, **args)


def test_the_dataset_is_test_only_with_complexity_and_fg_ratio(tmp_path):
    _generate(tmp_path / "a")
    datalist = read_datalist(tmp_path / "a")
    assert {split: len(e) for split, e in datalist.items()} == {
        "training": 0, "validation": 0, "calibration": 0, "test": 5,
    }  # fmt: skip
    cases = load_split(tmp_path / "a", "test")
    for entry, case in zip(datalist["test"], cases, strict=True):
        assert entry["fg_ratio"] == pytest.approx(case.label.mean())
        assert entry["complexity"] == pytest.approx(lbp_complexity(case.image, case.label))
    provenance = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert provenance["source"] == "synthetic-authors-texture"
    assert provenance["parameters"]["alpha"] == 0.5


def test_datasets_are_seeded_and_paired_across_alphas(tmp_path):
    _generate(tmp_path / "a")
    _generate(tmp_path / "b")
    _generate(tmp_path / "c", alpha=0.9)
    a, b, c = (load_split(tmp_path / n, "test") for n in "abc")
    for x, y, z in zip(a, b, c, strict=True):
        assert np.array_equal(x.image, y.image)
        assert np.array_equal(x.label, z.label)  # the same shape at another alpha
        assert not np.array_equal(x.image, z.image)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_size=8), "image_size must be an integer >= 16"),
        (dict(n_test=0), "n_test must be an integer >= 1"),
        (dict(foreground="marble"), "foreground"),
        (dict(alpha=-0.1), "alpha must be in"),
    ],
)
def test_bad_dataset_arguments_write_nothing(tmp_path, overrides, message):
    with pytest.raises((ValueError, UnknownNameError), match=message):
        _generate(tmp_path / "bad", **overrides)
    assert not (tmp_path / "bad").exists()
