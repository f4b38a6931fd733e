"""Tests of the 3D sphere volumes of the context study."""

import json
import math
import shutil

import numpy as np
import pytest

import segrobust
import segrobust.data.spheres as spheres_module
from segrobust.data.dataset import load_split, read_datalist
from segrobust.data.spheres import (
    draw_centre,
    draw_radius,
    expected_fg_ratio,
    generate_sphere_dataset,
    sphere_case,
    sphere_mask,
    uniform_max_image,
)
from segrobust.data.synthetic import generate_named_dataset

COUNTS = {"n_train": 7, "n_validation": 1, "n_calibration": 1, "n_test": 1}


def sphere_kwargs(**overrides):
    kwargs = dict(
        volume_size=24,
        **COUNTS,
        train_radii=[6.0, 8.0],
        test_radii=[2.0, 13.0],
        noise=0.2,
        seed=5,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(scope="module")
def spheres(tmp_path_factory):
    out = tmp_path_factory.mktemp("spheres") / "spheres"
    generate_sphere_dataset(out, **sphere_kwargs())
    return out


def test_sphere_mask_by_hand():
    # radius 1 around a voxel centre: the centre and its 6 face neighbours
    mask = sphere_mask((5, 5, 5), (2, 2, 2), 1.0)
    assert mask.sum() == 7
    assert mask[2, 2, 2] and mask[1, 2, 2] and mask[2, 2, 3] and not mask[1, 1, 2]
    with pytest.raises(ValueError, match="does not match shape"):
        sphere_mask((5, 5, 5), (2, 2), 1.0)


def test_expected_fg_ratio_by_hand():
    assert expected_fg_ratio(3.0, 10) == pytest.approx(4.0 / 3.0 * math.pi * 27 / 1000)


@pytest.mark.parametrize("radius", [6.0, 10.0, 15.0])
def test_unclipped_sphere_fg_ratio_matches_the_formula(radius):
    mask = sphere_mask((48, 48, 48), (23.3, 24.1, 22.7), radius)
    assert mask.mean() == pytest.approx(expected_fg_ratio(radius, 48), rel=0.03)


def test_dataset_follows_the_contract(spheres):
    datalist = read_datalist(spheres)
    assert {k: len(v) for k, v in datalist.items()} == {
        "training": 7,
        "validation": 1,
        "calibration": 1,
        "test": 1,
    }
    for case in load_split(spheres, "training"):
        assert case.image.shape == case.label.shape == (24, 24, 24)
        assert case.spacing == (1.0, 1.0, 1.0)
        n_fg = case.label.sum()
        assert case.meta["fg_ratio"] == pytest.approx(n_fg / case.label.size)
        assert case.meta["fbr"] == pytest.approx(n_fg / (case.label.size - n_fg))
        assert case.meta["fg_ratio"] == pytest.approx(
            expected_fg_ratio(case.meta["radius"], 24), rel=0.05
        )
        assert np.isfinite(case.meta["complexity"]) and case.meta["complexity"] > 0
        # intensity 1 inside, 0 outside, plus noise of std 0.2
        inside, outside = case.image[case.label == 1], case.image[case.label == 0]
        assert inside.mean() == pytest.approx(1.0, abs=0.05)
        assert outside.mean() == pytest.approx(0.0, abs=0.05)
        assert outside.std() == pytest.approx(0.2, rel=0.1)
    provenance = json.loads((spheres / "provenance.json").read_text())
    assert provenance["source"] == "synthetic-spheres"
    assert provenance["intensity"] == {"method": "none"}
    assert provenance["segrobust_version"] == segrobust.__version__
    assert provenance["parameters"] == {
        "volume_size": 24,
        **COUNTS,
        "train_radii": [6.0, 8.0],
        "test_radii": [2.0, 13.0],
        "noise_model": "gaussian",
        "noise": 0.2,
        "radius_sampling": "continuous",
        "seed": 5,
    }


def test_radius_ranges_follow_the_split_and_test_fbr_leaves_the_training_range(tmp_path):
    out = tmp_path / "spheres"
    generate_sphere_dataset(out, **sphere_kwargs(n_train=28, n_calibration=0, n_test=11))
    datalist = read_datalist(out)
    train = [e for s in ("training", "validation") for e in datalist[s]]
    test = datalist["test"]
    assert all(6.0 <= e["radius"] <= 8.0 for e in train)
    assert all(2.0 <= e["radius"] <= 13.0 for e in test)
    train_fbr = [e["fbr"] for e in train]
    test_fbr = [e["fbr"] for e in test]
    assert min(test_fbr) < min(train_fbr) and max(test_fbr) > max(train_fbr)
    assert np.ptp(test_fbr) > np.ptp(train_fbr)


def test_calibration_draws_from_the_test_radii(tmp_path):
    out = tmp_path / "spheres"
    generate_sphere_dataset(out, **sphere_kwargs(n_calibration=10, train_radii=[6.0, 6.5]))
    calibration = read_datalist(out)["calibration"]
    assert calibration and all(2.0 <= e["radius"] <= 13.0 for e in calibration)
    assert any(not 6.0 <= e["radius"] <= 6.5 for e in calibration)


def test_sphere_larger_than_half_the_volume_is_centred_and_clipped():
    image, label, radius = sphere_case(0, volume_size=16, radii=(9.0, 9.0), noise=0.0, seed=0)
    assert radius == 9.0
    np.testing.assert_array_equal(label, sphere_mask((16,) * 3, (7.5, 7.5, 7.5), 9.0))
    assert label.mean() < expected_fg_ratio(9.0, 16)  # clipped at the border
    assert label[0, 7, 7] and label[15, 8, 8]  # reaches every face
    np.testing.assert_array_equal(image, label)  # noise 0: exactly the sphere


def test_small_sphere_lies_fully_inside():
    for index in range(10):
        _, label, radius = sphere_case(index, volume_size=24, radii=(3.0, 5.0), noise=0.1, seed=1)
        assert label.mean() == pytest.approx(expected_fg_ratio(radius, 24), rel=0.15)
        for axis in range(3):
            assert not np.take(label, [0, -1], axis=axis).any()


def test_same_seed_same_volumes_other_seed_other_volumes(spheres, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    generate_sphere_dataset(again, **sphere_kwargs())
    generate_sphere_dataset(other, **sphere_kwargs(seed=6))
    assert read_datalist(again) == read_datalist(spheres)
    for case, twin in zip(load_split(spheres, "test"), load_split(again, "test"), strict=True):
        assert case.image.tobytes() == twin.image.tobytes()
        assert case.label.tobytes() == twin.label.tobytes()
    assert read_datalist(other) != read_datalist(spheres)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train_radii": [8.0, 6.0]}, "train_radii"),
        ({"train_radii": [0.5, 6.0]}, "train_radii"),
        ({"test_radii": [2.0, 30.0]}, r"test_radii .* allowed: 1 <= low <= high < 19.92"),
        ({"test_radii": 5.0}, "test_radii must be a pair"),
        ({"noise": -0.1}, "noise"),
        ({"volume_size": 4}, "volume_size"),
        ({"n_train": 0}, "n_train must be an integer >= 1, got 0"),
        ({"n_test": None}, "n_test must be an integer >= 1, got None"),
        ({"n_calibration": -2}, "n_calibration must be an integer >= 0"),
        (
            {"noise_model": "poisson"},
            "noise_model 'poisson' unknown; allowed: gaussian, uniform_max",
        ),
        ({"noise": None}, "noise must be a number >= 0 with noise_model 'gaussian', got None"),
        (
            {"noise_model": "uniform_max"},
            "noise_max must be a number >= 0 with noise_model 'uniform_max', got None",
        ),
        ({"noise_model": "uniform_max", "noise_max": -0.5}, "noise_max must be a number >= 0"),
        ({"radius_sampling": "round"}, "radius_sampling 'round' unknown; allowed: continuous, int"),
        (
            {"radius_sampling": "integer", "train_radii": [6.5, 8.0]},
            "train_radii .* must be whole numbers with radius_sampling 'integer'",
        ),
        (
            {"radius_sampling": "integer", "train_radii": [6, 6]},
            r"train_radii .* allowed: 1 <= low < high, largest radius high - 1 < 19.92",
        ),
        ({"radius_sampling": "integer", "test_radii": [2, 21]}, "test_radii"),
    ],
)
def test_bad_arguments_are_rejected_and_nothing_is_written(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        generate_sphere_dataset(tmp_path / "spheres", **sphere_kwargs(**overrides))
    assert list(tmp_path.iterdir()) == []


def test_integer_test_radii_may_reach_just_below_the_corner_distance(tmp_path):
    # 24^3: corner distance 19.92, so high = 20 (largest radius 19) is allowed, 21 is not
    kwargs = sphere_kwargs(radius_sampling="integer", train_radii=[6, 9], test_radii=[2, 20])
    generate_sphere_dataset(tmp_path / "spheres", **kwargs)


# --- radius and centre sampling ------------------------------------------------------------------


def test_integer_radii_are_whole_numbers_from_low_to_high_excluded():
    rng = np.random.default_rng(0)
    radii = [draw_radius(rng, (5.0, 8.0), "integer") for _ in range(600)]
    assert set(radii) == {5.0, 6.0, 7.0}  # numpy randint: high excluded
    # each of the 3 values has probability 1/3: 200 expected, binomial sd 11.5
    counts = np.unique(radii, return_counts=True)[1]
    assert np.all(np.abs(counts - 200) < 50)


def test_continuous_radii_are_reals_over_the_closed_range():
    rng = np.random.default_rng(0)
    radii = np.array([draw_radius(rng, (5.0, 8.0), "continuous") for _ in range(600)])
    assert radii.min() >= 5.0 and radii.max() <= 8.0
    assert not np.any(radii == np.round(radii))
    assert radii.mean() == pytest.approx(6.5, abs=0.15)  # sd of the mean 0.87 / sqrt(600) = 0.035


def test_integer_centres_span_radius_to_size_minus_radius_excluded():
    rng = np.random.default_rng(1)
    centres = np.array([draw_centre(rng, 7.0, 20, "integer") for _ in range(800)])
    assert np.array_equal(centres, np.round(centres))
    # randint(7, 20 - 7): 7 .. 12 on every axis, each reached
    for axis in range(3):
        assert set(centres[:, axis]) == {7.0, 8.0, 9.0, 10.0, 11.0, 12.0}


def test_continuous_centres_keep_the_sphere_inside():
    rng = np.random.default_rng(1)
    centres = np.array([draw_centre(rng, 7.5, 20, "continuous") for _ in range(800)])
    assert centres.min() >= 7.5 and centres.max() <= 20 - 1 - 7.5
    assert centres.min() < 7.6 and centres.max() > 11.4  # the whole range is used


def test_integer_sampling_gives_the_authors_sphere_sizes():
    radii = set()
    for index in range(60):
        _, label, radius = sphere_case(
            index, volume_size=20, radii=(3, 6), noise=0.1, seed=2, radius_sampling="integer"
        )
        radii.add(radius)
        # an integer centre and radius: the mask is the sphere around the label's centroid
        centre = np.argwhere(label).mean(axis=0)
        np.testing.assert_array_equal(centre, np.round(centre))
        np.testing.assert_array_equal(label, sphere_mask(label.shape, centre, radius))
    assert radii == {3.0, 4.0, 5.0}


# --- noise models --------------------------------------------------------------------------------

BALL = sphere_mask((32, 32, 32), (15.0, 16.0, 15.5), 7.0).astype(np.uint8)


def test_uniform_max_sphere_is_exactly_one_and_the_image_spans_zero_to_one():
    image = uniform_max_image(BALL, 0.8, np.random.default_rng(3))
    assert np.all(image[BALL == 1] == 1.0)
    assert image.min() == 0.0 and image.max() == 1.0


def test_uniform_max_background_is_uniform_on_zero_one_when_the_noise_dominates():
    """noise_max 2 exceeds every sphere intensity (< 1): the rescale divides by max u ~ 2, so the
    background is U[0, 1): mean 1/2, variance 1/12 (30 000 voxels: sd of the mean 0.0017)."""
    background = uniform_max_image(BALL, 2.0, np.random.default_rng(4))[BALL == 0]
    assert background.mean() == pytest.approx(0.5, abs=0.01)
    assert background.var() == pytest.approx(1.0 / 12.0, rel=0.03)
    assert background.max() == pytest.approx(1.0, abs=1e-3)


def test_uniform_max_background_statistics_over_sphere_intensities():
    """noise_max 0.8 (the paper's): per volume the background is U[0, b) with b = 1 when the sphere
    intensity v < max u ~ 0.8 (probability 0.6 for v ~ U[0.5, 1)), else b = 0.8 / v. So per volume
    mean b / 2 and variance b^2 / 12, and over volumes E[mean] = 0.6 * 0.5 + 0.4 * E[0.4 / v | v >=
    0.8] = 0.3 + 0.8 ln(1.25) = 0.4785."""
    small = sphere_mask((16, 16, 16), (7.0, 8.0, 7.5), 4.0).astype(np.uint8)
    means, full = [], []
    for index in range(300):
        background = uniform_max_image(small, 0.8, np.random.default_rng([9, index]))[small == 0]
        b = background.max()
        assert background.mean() == pytest.approx(b / 2, rel=0.04)
        assert background.var() == pytest.approx(b**2 / 12, rel=0.08)
        assert 0.8 - 1e-3 <= b <= 1.0
        means.append(background.mean())
        full.append(b == 1.0)
    # 300 volumes: sd of the mean of the means ~ 0.0028, of the proportion 0.028
    assert np.mean(means) == pytest.approx(0.3 + 0.8 * math.log(1.25), abs=0.01)
    assert np.mean(full) == pytest.approx(0.6, abs=0.09)


def test_uniform_max_dataset_uses_the_authors_model(tmp_path):
    out = tmp_path / "spheres"
    kwargs = sphere_kwargs(
        noise_model="uniform_max", noise_max=0.8, noise=None, radius_sampling="integer",
        train_radii=[6, 9], test_radii=[2, 12],
    )  # fmt: skip
    generate_sphere_dataset(out, **kwargs)
    parameters = json.loads((out / "provenance.json").read_text())["parameters"]
    assert parameters["noise_model"] == "uniform_max" and parameters["noise_max"] == 0.8
    assert "noise" not in parameters and parameters["radius_sampling"] == "integer"
    for split in ("training", "test"):
        for case in load_split(out, split):
            assert np.all(case.image[case.label == 1] == 1.0)
            assert 0.0 <= case.image.min() and case.image.max() <= 1.0
            assert case.meta["radius"] == int(case.meta["radius"])
            low, high = (6, 9) if split == "training" else (2, 12)
            assert low <= case.meta["radius"] < high


def test_gaussian_model_ignores_noise_max(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate_sphere_dataset(a, **sphere_kwargs(noise_max=0.5))
    generate_sphere_dataset(b, **sphere_kwargs(noise_max=0.9))
    assert read_datalist(a) == read_datalist(b)
    assert json.loads((a / "provenance.json").read_text()) == json.loads(
        (b / "provenance.json").read_text()
    )


# --- split counts --------------------------------------------------------------------------------


def test_held_out_counts_leave_the_training_volumes_unchanged(spheres, tmp_path):
    larger = tmp_path / "larger"
    generate_sphere_dataset(larger, **sphere_kwargs(n_test=5, n_calibration=4))
    small, large = read_datalist(spheres), read_datalist(larger)
    assert {k: len(v) for k, v in large.items()} == {
        "training": 7,
        "validation": 1,
        "test": 5,
        "calibration": 4,
    }
    assert large["training"] == small["training"] and large["validation"] == small["validation"]
    for split in ("training", "validation"):
        for case, twin in zip(load_split(spheres, split), load_split(larger, split), strict=True):
            assert case.image.tobytes() == twin.image.tobytes()
    assert large["test"][0] == small["test"][0]  # test comes before calibration
    assert [e["id"] for e in large["calibration"]] == [f"sphere_{i:04d}" for i in range(13, 17)]


# --- the config's named dataset entries ----------------------------------------------------------


def test_named_spheres_entry_generates_with_its_own_counts(tmp_path):
    entry = {
        "source": "synthetic_spheres",
        "volume_size": 16,
        **COUNTS,
        "train_radii": [4, 6],
        "test_radii": [2, 7],
        "noise_model": "uniform_max",
        "noise": 0.3,
        "noise_max": 0.8,
        "radius_sampling": "integer",
        "seed": 0,
    }
    generate_named_dataset(tmp_path / "spheres_x", entry)
    datalist = read_datalist(tmp_path / "spheres_x")
    assert {k: len(v) for k, v in datalist.items()} == {
        "training": 7,
        "validation": 1,
        "calibration": 1,
        "test": 1,
    }


@pytest.mark.parametrize(
    ("entry", "old"),
    [
        ({"source": "synthetic_spheres", "n_volumes": 24}, "n_volumes"),
        ({"source": "synthetic_texture", "n_images": 40}, "n_images"),
    ],
)
def test_named_entry_with_a_replaced_count_key_names_the_new_keys(tmp_path, entry, old):
    with pytest.raises(
        ValueError,
        match=rf"datasets.old: {old} was replaced by the per-split counts n_train, n_validation, "
        r"n_test, n_calibration",
    ):
        generate_named_dataset(tmp_path / "old", entry)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_an_existing_dataset_untouched(spheres, tmp_path, monkeypatch):
    out = tmp_path / "spheres"
    shutil.copytree(spheres, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []

    def failing_complexity(image, label):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return 0.0

    monkeypatch.setattr(spheres_module, "lbp_complexity", failing_complexity)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_sphere_dataset(out, **sphere_kwargs(noise_model="uniform_max", noise_max=0.8))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["spheres"]  # no temporary directory left
