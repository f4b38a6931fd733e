"""The bundled real-anatomy dataset: a template shipped in a package -> MSD layout -> 2D slices."""

import dataclasses
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segrobust.data.bundled_anatomy import (
    get_bundle,
    labelled_slabs,
    package_dir,
    slab_affine,
    slab_starts,
    tissue_label,
    write_bundle,
    write_bundled_dataset,
)
from segrobust.data.bundles import BUNDLES, Bundle, BundledFile
from segrobust.data.dataset import SPLITS, DataError, load_split
from segrobust.data.msd import read_layout
from segrobust.data.prepare import prepare_dataset

SHAPE = (12, 10, 23)
AFFINE = np.array([[-1.0, 0, 0, 90], [0, 1.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])


def tiny_package(root: Path, *, tissue_shape=SHAPE) -> tuple[Path, Bundle, np.ndarray, np.ndarray]:
    """A fake package directory holding an image and a uint8 tissue map, and its Bundle.

    The tissue probability is 200 / 255 (0.78) in a box over slices 5..16 and 100 / 255 (0.39)
    in slices 17..19, so at threshold 0.5 only slices 5..16 hold the tissue.
    """
    data = root / "datasets" / "data"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    tissue = np.zeros(tissue_shape, dtype=np.uint8)
    tissue[3:9, 2:8, 5:17] = 200
    tissue[3:9, 2:8, 17:20] = 100
    files = {}
    for name, volume in (("t1.nii.gz", image), ("wm.nii.gz", tissue)):
        nib.save(nib.Nifti1Image(volume, AFFINE), str(data / name))
        digest = hashlib.sha256((data / name).read_bytes()).hexdigest()
        files[name] = BundledFile(f"datasets/data/{name}", digest)
    bundle = Bundle(
        package="fakepkg",
        image=files["t1.nii.gz"],
        tissue=files["wm.nii.gz"],
        tissue_name="white matter",
        modality="T1w MRI",
        threshold=0.5,
        slab=3,
        gap=1,
        min_fraction=0.005,
        reference="a test volume",
        licence="none",
    )
    return root, bundle, image, tissue


def test_tissue_label_thresholds_the_uint8_probability():
    # 127 / 255 = 0.498 < 0.5 <= 128 / 255 = 0.502
    probability = np.array([0, 127, 128, 255], dtype=np.uint8)
    np.testing.assert_array_equal(tissue_label(probability, 0.5), [0, 0, 1, 1])
    np.testing.assert_array_equal(tissue_label(probability, 1.0), [0, 0, 0, 1])


@pytest.mark.parametrize(
    ("probability", "threshold", "message"),
    [
        (np.array([0.2, 0.9]), 0.5, "expected uint8"),
        (np.array([0, 200], dtype=np.uint8), 0.0, "threshold: got 0.0"),
        (np.array([0, 200], dtype=np.uint8), 1.5, "threshold: got 1.5"),
    ],
)
def test_tissue_label_refuses_bad_input(probability, threshold, message):
    with pytest.raises(DataError, match=message):
        tissue_label(probability, threshold)


@pytest.mark.parametrize(
    ("n_slices", "slab", "gap", "expected"),
    [
        (10, 3, 1, [0, 4]),  # slices 8, 9 cannot hold a whole third slab
        (11, 3, 1, [0, 4, 8]),
        (6, 2, 0, [0, 2, 4]),
        (2, 3, 0, []),
    ],
)
def test_slab_starts_are_whole_slabs_gap_apart(n_slices, slab, gap, expected):
    assert slab_starts(n_slices, slab, gap) == expected


def test_slab_layout_refuses_an_empty_slab_or_a_negative_gap():
    with pytest.raises(DataError, match="allowed slab >= 1, gap >= 0"):
        slab_starts(10, 0, 1)
    with pytest.raises(DataError, match="allowed slab >= 1, gap >= 0"):
        slab_starts(10, 2, -1)


def test_only_slabs_with_a_labelled_slice_are_kept():
    label = np.zeros((10, 10, 12), dtype=np.uint8)
    label[:, :, 5] = 1  # slab 4..6 (starts 0, 4, 8 for slab 3, gap 1)
    label[0, 0, 9] = 1  # 1 % of slice 9: above 0.005, slab 8..10 kept
    assert labelled_slabs(label, 3, 1, 0.005) == [4, 8]
    assert labelled_slabs(label, 3, 1, 0.02) == [4]


def test_slab_affine_keeps_every_voxel_at_its_world_position():
    start = 7
    shifted = slab_affine(AFFINE, start)
    for voxel in ([0, 0, 0], [3, 5, 2], [11, 9, 1]):
        inside = shifted @ np.array([*voxel, 1.0])
        whole = AFFINE @ np.array([voxel[0], voxel[1], voxel[2] + start, 1.0])
        np.testing.assert_allclose(inside, whole)


def test_write_bundle_cuts_labelled_slabs_with_their_geometry(tmp_path):
    root, bundle, image, tissue = tiny_package(tmp_path / "pkg")
    out = tmp_path / "msd"
    meta = write_bundle("wm", bundle, root, out, "9.9")
    # slabs of 3 every 4 slices: starts 0, 4, 8, 12, 16, 20; tissue >= 0.5 in slices 5..16
    starts = [4, 8, 12, 16]
    assert [e["image"] for e in meta["training"]] == [
        f"./imagesTr/wm_z{s:03d}.nii.gz" for s in starts
    ]
    assert meta["labels"] == {"0": "background", "1": "white matter"}
    assert meta["provenance"]["package_version"] == "9.9"
    assert meta["provenance"]["slab"] == 3 and meta["provenance"]["gap"] == 1
    assert json.loads((out / "dataset.json").read_text()) == meta
    layout = read_layout(out)
    assert [c.case_id for c in layout.cases] == [f"wm_z{s:03d}" for s in starts]
    # The source's first axis runs right to left (affine -1): written in RAS it is reversed.
    for start in starts:
        img = nib.load(str(out / "imagesTr" / f"wm_z{start:03d}.nii.gz"))
        lab = nib.load(str(out / "labelsTr" / f"wm_z{start:03d}.nii.gz"))
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        np.testing.assert_array_equal(np.asarray(img.dataobj), image[::-1, :, start : start + 3])
        expected = (tissue[::-1, :, start : start + 3] >= 128).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(lab.dataobj), expected)
        np.testing.assert_allclose(lab.affine, img.affine)
        # a written voxel lies where its source voxel lay
        for i, j, k in ((0, 0, 0), (3, 5, 2), (11, 9, 1)):
            source = AFFINE @ np.array([SHAPE[0] - 1 - i, j, start + k, 1.0])
            np.testing.assert_allclose(img.affine @ np.array([i, j, k, 1.0]), source)


def test_a_changed_file_is_refused_naming_it_and_nothing_is_written(tmp_path):
    root, bundle, _, _ = tiny_package(tmp_path / "pkg")
    wrong = dataclasses.replace(bundle, tissue=BundledFile(bundle.tissue.relative, "0" * 64))
    out = tmp_path / "msd"
    with pytest.raises(DataError) as info:
        write_bundle("wm", wrong, root, out, "9.9")
    message = str(info.value)
    assert "wm.nii.gz" in message and "0" * 64 in message and bundle.tissue.sha256 in message
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "pkg"]


def test_a_missing_file_is_refused_naming_it(tmp_path):
    root, bundle, _, _ = tiny_package(tmp_path / "pkg")
    (root / bundle.image.relative).unlink()
    with pytest.raises(DataError, match="t1.nii.gz: not found in the installed fakepkg"):
        write_bundle("wm", bundle, root, tmp_path / "msd", "9.9")


def test_a_tissue_map_of_another_grid_is_refused(tmp_path):
    root, bundle, _, _ = tiny_package(tmp_path / "pkg", tissue_shape=(12, 10, 22))
    with pytest.raises(DataError, match="differ from the image"):
        write_bundle("wm", bundle, root, tmp_path / "msd", "9.9")
    assert not (tmp_path / "msd").exists()


def test_unknown_bundle_and_missing_package_are_named():
    with pytest.raises(DataError, match="allowed: mni152_gm, mni152_wm"):
        get_bundle("mni305")
    with pytest.raises(DataError, match="pip install no_such_package_segrobust"):
        package_dir("no_such_package_segrobust")


# The real template, from the installed nilearn (a dependency in pyproject.toml).

MNI_ENTRY = {
    "source": "msd_import",
    "variant": "2d",
    "image_size": [64, 64],
    "normalize": "window",
    "window": [0, 255],
    "min_fg_fraction": 0.005,
    "split": {"train": 0.4, "validation": 0.1, "test": 0.5},
    "calibration_fraction": 0.3,
}


@pytest.fixture(scope="module")
def mni_msd(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundled") / "mni152_wm"
    return out, write_bundled_dataset("mni152_wm", out)


def test_the_shipped_template_gives_slabs_of_white_matter(mni_msd):
    out, meta = mni_msd
    bundle = BUNDLES["mni152_wm"]
    assert meta["numTraining"] == 25  # 25 slabs of 4 slices hold > 0.5 % white matter
    for entry in meta["training"]:
        label = nib.load(str(out / entry["label"]))
        assert label.shape == (197, 233, bundle.slab)
        assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1}
        assert np.allclose(label.header.get_zooms(), 1.0)


def test_the_template_imports_as_a_2d_dataset_split_by_slab(mni_msd, tmp_path):
    out, _ = mni_msd
    dataset = tmp_path / "mni_wm"
    prepare_dataset("mni_wm", {**MNI_ENTRY, "path": str(out)}, out, dataset)
    cases = {split: load_split(dataset, split) for split in SPLITS}
    counts = {split: len(c) for split, c in cases.items()}
    # 100 slices of 25 slabs; 10 / 2 / 4 / 9 slabs of 4 slices (split fractions by slab)
    assert counts == {"training": 40, "validation": 8, "calibration": 16, "test": 36}
    template_slice = {
        split: {int(c.meta["group"][-3:]) + int(c.meta["slice"]) for c in members}
        for split, members in cases.items()
    }
    groups = {split: {c.meta["group"] for c in members} for split, members in cases.items()}
    for split in SPLITS:
        for other in SPLITS:
            if split != other:
                assert not groups[split] & groups[other]
    # no held-out slice lies within 1 mm of a training slice (the left-out gap)
    held_out = template_slice["test"] | template_slice["calibration"]
    nearest = min(abs(a - b) for a in held_out for b in template_slice["training"])
    assert nearest >= BUNDLES["mni152_wm"].gap + 1
    image = cases["test"][0].image
    assert image.shape == (64, 64) and 0 <= image.min() and image.max() <= 1
