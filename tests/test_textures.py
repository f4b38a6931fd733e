"""Tests of the texture sources, the blend and the texture dataset generator."""

import json

import numpy as np
import pytest

import segrobust
import segrobust.data.textures as textures
from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import load_split, read_datalist
from segrobust.registry import UnknownNameError

COUNTS = {"n_train": 7, "n_validation": 1, "n_calibration": 1, "n_test": 1}


def dataset_kwargs(**overrides):
    kwargs = dict(
        image_size=48,
        **COUNTS,
        foreground="grass",
        background="stripes",
        direction="background",
        alpha=0.2,
        irregularity=0.5,
        radius=0.25,
        seed=3,
    )
    kwargs.update(overrides)
    return kwargs


def arrays_by_id(dataset_dir):
    """{id: (image, label)} over every split of a dataset."""
    return {
        case.case_id: (case.image, case.label)
        for split in ("training", "validation", "calibration", "test")
        for case in load_split(dataset_dir, split)
    }


# --- texture sources ------------------------------------------------------------------------------


def test_registry_holds_photos_and_procedural_textures():
    names = set(textures.TEXTURES.names())
    assert {"brick", "grass", "gravel", "histology"} <= names
    assert {"noise", "stripes", "fractal", "checker", "dots"} <= names


@pytest.mark.parametrize("name", textures.TEXTURES.names())
@pytest.mark.parametrize("size", [37, 64])
def test_texture_shape_range_and_determinism(name, size):
    source = textures.TEXTURES.get(name)
    a = source(size, np.random.default_rng(11))
    b = source(size, np.random.default_rng(11))
    c = source(size, np.random.default_rng(12))
    assert a.shape == (size, size) and a.dtype == np.float64
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert a.std() > 0.05  # a texture, not a flat image
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_photo_crop_larger_than_the_photo_is_upsampled():
    image = textures.TEXTURES.get("brick")(600, np.random.default_rng(0))
    assert image.shape == (600, 600)
    assert image.min() == 0.0 and image.max() == 1.0


def test_unknown_texture_lists_the_allowed_names():
    with pytest.raises(UnknownNameError, match="allowed: brick"):
        textures.TEXTURES.get("marble")


# --- blend ---------------------------------------------------------------------------------------

FG = np.array([[1.0, 0.2]])
BG = np.array([[0.0, 0.6]])
MASK = np.array([[True, False]])


def test_blend_background_direction_by_hand():
    # foreground pixel keeps fg = 1; background pixel = .75 * .6 + .25 * .2 = .5
    image = textures.blend_textures(FG, BG, MASK, 0.25, "background")
    np.testing.assert_allclose(image, [[1.0, 0.5]])


def test_blend_foreground_direction_by_hand():
    # foreground pixel = .75 * 1 + .25 * 0 = .75; background pixel keeps bg = .6
    image = textures.blend_textures(FG, BG, MASK, 0.25, "foreground")
    np.testing.assert_allclose(image, [[0.75, 0.6]])


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_blend_leaves_the_other_region_unchanged(alpha):
    rng = np.random.default_rng(0)
    fg, bg = rng.random((16, 16)), rng.random((16, 16))
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:10, 3:12] = True
    into_bg = textures.blend_textures(fg, bg, mask, alpha, "background")
    np.testing.assert_array_equal(into_bg[mask], fg[mask])
    assert not np.allclose(into_bg[~mask], bg[~mask])
    into_fg = textures.blend_textures(fg, bg, mask, alpha, "foreground")
    np.testing.assert_array_equal(into_fg[~mask], bg[~mask])
    assert not np.allclose(into_fg[mask], fg[mask])


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.2, 1.5])
def test_blend_rejects_alpha_outside_the_open_unit_interval(alpha):
    with pytest.raises(ValueError, match=r"alpha must be in the open interval \(0, 1\)"):
        textures.blend_textures(FG, BG, MASK, alpha, "background")


def test_blend_rejects_unknown_direction_and_shape_mismatch():
    with pytest.raises(ValueError, match="allowed: background, foreground"):
        textures.blend_textures(FG, BG, MASK, 0.5, "both")
    with pytest.raises(ValueError, match="shapes differ"):
        textures.blend_textures(FG, BG[:, :1], MASK, 0.5, "background")


# --- dataset -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alpha_grid(tmp_path_factory):
    """One direction, three alphas, same seed: {alpha: dataset dir}."""
    root = tmp_path_factory.mktemp("textures")
    out = {}
    for alpha in (0.2, 0.5, 0.8):
        out[alpha] = root / f"texture-background-{alpha:g}"
        textures.generate_texture_dataset(out[alpha], **dataset_kwargs(alpha=alpha))
    return out


def test_dataset_follows_the_contract(alpha_grid):
    dataset = alpha_grid[0.2]
    datalist = read_datalist(dataset)
    sizes = {split: len(entries) for split, entries in datalist.items()}
    assert sizes == {"training": 7, "validation": 1, "calibration": 1, "test": 1}
    # index ranges in the order training, validation, test, calibration
    ids = {split: [e["id"] for e in entries] for split, entries in datalist.items()}
    assert ids == {
        "training": [f"tex_{i:04d}" for i in range(7)],
        "validation": ["tex_0007"],
        "test": ["tex_0008"],
        "calibration": ["tex_0009"],
    }
    for case in load_split(dataset, "training"):
        assert case.image.shape == case.label.shape == (48, 48)
        assert case.spacing == (1.0, 1.0)
        assert 0.0 <= case.image.min() and case.image.max() <= 1.0
        assert case.meta["fg_ratio"] == pytest.approx(case.label.mean())
        assert case.meta["complexity"] == pytest.approx(lbp_complexity(case.image, case.label))
    provenance = json.loads((dataset / "provenance.json").read_text())
    assert provenance["source"] == "synthetic-texture"
    assert provenance["intensity"] == {"method": "none"}
    assert provenance["segrobust_version"] == segrobust.__version__
    assert provenance["parameters"] == dataset_kwargs()


def test_alphas_share_masks_and_crops_and_differ_only_in_the_blend(alpha_grid):
    low, mid, high = (arrays_by_id(alpha_grid[a]) for a in (0.2, 0.5, 0.8))
    assert low.keys() == mid.keys() == high.keys()
    # the same image ids land in the same splits
    assert [[e["id"] for e in v] for v in read_datalist(alpha_grid[0.2]).values()] == [
        [e["id"] for e in v] for v in read_datalist(alpha_grid[0.8]).values()
    ]
    for case_id in low:
        (img_lo, lab_lo), (img_mid, lab_mid), (img_hi, lab_hi) = (
            low[case_id],
            mid[case_id],
            high[case_id],
        )
        np.testing.assert_array_equal(lab_lo, lab_mid)
        np.testing.assert_array_equal(lab_lo, lab_hi)
        fg = lab_lo == 1
        # direction "background": the foreground is the same crop at every alpha ...
        np.testing.assert_array_equal(img_lo[fg], img_hi[fg])
        # ... and the background, (1 - a) bg + a fg, is linear in alpha over the same crops:
        # alpha 0.5 lies halfway between alpha 0.2 and 0.8
        np.testing.assert_allclose(img_mid[~fg], (img_lo[~fg] + img_hi[~fg]) / 2, atol=1e-6)
        assert not np.allclose(img_lo[~fg], img_hi[~fg])


def test_foreground_direction_keeps_the_background_and_the_same_masks(alpha_grid, tmp_path):
    out = tmp_path / "fg"
    textures.generate_texture_dataset(out, **dataset_kwargs(direction="foreground", alpha=0.5))
    into_fg, into_bg = arrays_by_id(out), arrays_by_id(alpha_grid[0.5])
    for case_id, (image, label) in into_fg.items():
        np.testing.assert_array_equal(label, into_bg[case_id][1])
        assert not np.array_equal(image, into_bg[case_id][0])


def test_complexity_falls_as_alpha_rises(alpha_grid):
    means = []
    for alpha in (0.2, 0.5, 0.8):
        datalist = read_datalist(alpha_grid[alpha])
        means.append(np.mean([e["complexity"] for v in datalist.values() for e in v]))
    assert means[0] > means[1] > means[2]


def test_same_seed_gives_identical_arrays_and_datalist(alpha_grid, tmp_path):
    again = tmp_path / "again"
    textures.generate_texture_dataset(again, **dataset_kwargs(alpha=0.2))
    first, second = arrays_by_id(alpha_grid[0.2]), arrays_by_id(again)
    for case_id, (image, label) in first.items():
        assert image.tobytes() == second[case_id][0].tobytes()
        assert label.tobytes() == second[case_id][1].tobytes()
    assert read_datalist(again) == read_datalist(alpha_grid[0.2])


def test_another_seed_gives_other_images(alpha_grid, tmp_path):
    other = tmp_path / "other"
    textures.generate_texture_dataset(other, **dataset_kwargs(seed=4))
    first, second = arrays_by_id(alpha_grid[0.2]), arrays_by_id(other)
    assert not np.array_equal(first["tex_0000"][1], second["tex_0000"][1])


def test_texture_case_mask_does_not_depend_on_the_texture_choice():
    common = dict(image_size=48, irregularity=0.5, radius=0.25, seed=3)
    mask_a, fg_a, _ = textures.texture_case(2, foreground="grass", background="noise", **common)
    mask_b, fg_b, _ = textures.texture_case(2, foreground="dots", background="noise", **common)
    np.testing.assert_array_equal(mask_a, mask_b)
    assert not np.array_equal(fg_a, fg_b)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"foreground": "marble"}, "foreground: unknown texture 'marble'; allowed:"),
        ({"background": "marble"}, "background: unknown texture 'marble'; allowed:"),
        ({"alpha": 1.0}, r"alpha must be in the open interval \(0, 1\)"),
        ({"direction": "sideways"}, "allowed: background, foreground"),
        ({"radius": 0.45}, "radius"),
        ({"irregularity": 2.0}, "irregularity"),
        ({"image_size": 8}, "image_size"),
        ({"n_train": 0}, "n_train must be an integer >= 1, got 0"),
        ({"n_validation": 0}, "n_validation must be an integer >= 1, got 0"),
        ({"n_test": 0}, "n_test must be an integer >= 1, got 0"),
        ({"n_calibration": -1}, "n_calibration must be an integer >= 0, got -1"),
        ({"n_test": 2.5}, "n_test must be an integer >= 1, got 2.5"),
        ({"n_train": True}, "n_train must be an integer >= 1, got True"),
    ],
)
def test_bad_arguments_are_rejected_and_nothing_is_written(tmp_path, overrides, message):
    out = tmp_path / "ds"
    with pytest.raises((ValueError, UnknownNameError), match=message):
        textures.generate_texture_dataset(out, **dataset_kwargs(**overrides))
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_an_existing_dataset_untouched(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    textures.generate_texture_dataset(out, **dataset_kwargs())
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []

    def failing_complexity(image, label):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("disk full")
        return 0.0

    monkeypatch.setattr(textures, "lbp_complexity", failing_complexity)
    with pytest.raises(RuntimeError, match="disk full"):
        textures.generate_texture_dataset(out, **dataset_kwargs(alpha=0.7))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary directory left


# --- split counts --------------------------------------------------------------------------------


def test_split_by_index_follows_the_fixed_order():
    counts = {"n_train": 3, "n_validation": 2, "n_calibration": 1, "n_test": 2}
    assert textures.split_by_index(counts) == [
        "training", "training", "training", "validation", "validation", "test", "test",
        "calibration",
    ]  # fmt: skip
    assert textures.split_by_index({**counts, "n_calibration": 0})[-1] == "test"


def test_split_by_index_names_a_missing_count():
    with pytest.raises(ValueError, match="n_test must be an integer >= 1, got None"):
        textures.split_by_index({"n_train": 3, "n_validation": 2, "n_calibration": 1})


def test_held_out_counts_change_neither_training_nor_validation_images(alpha_grid, tmp_path):
    """More test and calibration images: training and validation stay image for image, and the
    held-out images of the smaller set are the first ones of the larger set."""
    larger = tmp_path / "larger"
    textures.generate_texture_dataset(larger, **dataset_kwargs(n_test=4, n_calibration=3))
    small, large = read_datalist(alpha_grid[0.2]), read_datalist(larger)
    assert {k: len(v) for k, v in large.items()} == {
        "training": 7,
        "validation": 1,
        "test": 4,
        "calibration": 3,
    }
    assert large["training"] == small["training"] and large["validation"] == small["validation"]
    small_arrays, large_arrays = arrays_by_id(alpha_grid[0.2]), arrays_by_id(larger)
    for split in ("training", "validation"):
        for entry in small[split]:
            image, label = small_arrays[entry["id"]]
            np.testing.assert_array_equal(large_arrays[entry["id"]][0], image)
            np.testing.assert_array_equal(large_arrays[entry["id"]][1], label)
    # test images are indices 8.. in both; the smaller test set is a prefix of the larger one
    assert [e["id"] for e in large["test"]] == [f"tex_{i:04d}" for i in range(8, 12)]
    assert large["test"][0] == small["test"][0]
    assert [e["id"] for e in large["calibration"]] == [f"tex_{i:04d}" for i in range(12, 15)]
