"""Tests of the 3D sphere volumes of the context study."""

import json
import math

import numpy as np
import pytest

import segrobust
from segrobust.data.dataset import load_split, read_datalist
from segrobust.data.spheres import (
    expected_fg_ratio,
    generate_sphere_dataset,
    sphere_case,
    sphere_mask,
)

SPLIT = {"train": 0.7, "validation": 0.1, "test": 0.2}


def sphere_kwargs(**overrides):
    kwargs = dict(
        volume_size=24,
        n_volumes=10,
        train_radii=[6.0, 8.0],
        test_radii=[2.0, 13.0],
        noise=0.2,
        split=SPLIT,
        calibration_fraction=0.5,
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
    assert provenance["segrobust_version"] == segrobust.__version__
    assert provenance["parameters"]["train_radii"] == [6.0, 8.0]
    assert provenance["parameters"]["test_radii"] == [2.0, 13.0]


def test_radius_ranges_follow_the_split_and_test_fbr_leaves_the_training_range(tmp_path):
    out = tmp_path / "spheres"
    generate_sphere_dataset(out, **sphere_kwargs(n_volumes=40, calibration_fraction=0.0))
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
    generate_sphere_dataset(out, **sphere_kwargs(n_volumes=40, train_radii=[6.0, 6.5]))
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
        ({"n_volumes": 2}, "n_volumes=2 leaves"),
    ],
)
def test_bad_arguments_are_rejected_and_nothing_is_written(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        generate_sphere_dataset(tmp_path / "spheres", **sphere_kwargs(**overrides))
    assert list(tmp_path.iterdir()) == []
