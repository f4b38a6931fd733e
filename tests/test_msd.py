"""Importing a user's dataset in the Medical Segmentation Decathlon layout by config alone."""

import json

import numpy as np
import pytest
from archives import msd_volumes, write_msd_dir

from segrobust.data.dataset import SPLITS, DataError, load_split
from segrobust.data.prepare import prepare_dataset

LABELS = {"0": "background", "1": "kidney", "2": "tumour"}
#: Splits 3-4 volumes can fill (every split gets one).
SMALL = {"split": {"train": 0.4, "validation": 0.3, "test": 0.3}, "calibration_fraction": 0.0}


@pytest.fixture
def user_dir(tmp_path):
    return write_msd_dir(
        tmp_path / "mine", task="Task99_Kidney", n_cases=4, modality="CT", labels=LABELS
    )


def cases_of(out):
    return [c for s in SPLITS for c in load_split(out, s)]


@pytest.mark.parametrize("label_value", [1, 2])
def test_label_value_selects_the_foreground(user_dir, tmp_path, label_value):
    out = tmp_path / "ds"
    entry = {
        "source": "msd_import",
        "path": str(user_dir),
        "label_value": label_value,
        "variant": "3d",
        "spacing": [0.8, 0.8, 5.0],
        **SMALL,
    }
    prepare_dataset("mine", entry, user_dir, out)
    cases = cases_of(out)
    assert len(cases) == 4
    # The spacing is unchanged, so each label equals the source voxels holding label_value.
    original = dict(zip(range(1, 5), msd_volumes(4, label_values=(1, 2)), strict=True))
    for c in cases:
        index = int(c.case_id.split("_")[-1])
        expected = (original[index][1] == label_value).astype(np.uint8)
        np.testing.assert_array_equal(c.label, expected)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["source"] == "msd_import" and prov["path"] == str(user_dir.resolve())
    # normalize: auto on a CT task: the default CT window
    assert prov["intensity"] == {"method": "window", "window": [-200.0, 300.0]}


def test_import_2d_keeps_only_slices_with_that_label(user_dir, tmp_path):
    out = tmp_path / "ds"
    entry = {"source": "msd_import", "path": str(user_dir), "label_value": 2, "image_size": 16}
    entry.update(SMALL)
    prepare_dataset("mine", entry, user_dir, out)
    cases = cases_of(out)
    assert cases and all(c.image.shape == (16, 16) and c.label.any() for c in cases)
    assert {c.meta["slice"] for c in cases} == {2, 3, 4, 5}


def test_label_value_missing_from_dataset_json_names_file_and_values(user_dir, tmp_path):
    entry = {"source": "msd_import", "path": str(user_dir), "label_value": 3}
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", entry, user_dir, tmp_path / "ds")
    msg = str(err.value)
    assert "dataset.json" in msg and "label_value 3" in msg and "'labels'" in msg
    assert "1 (kidney), 2 (tumour)" in msg
    assert not (tmp_path / "ds").exists()


def test_label_value_absent_from_the_data_names_values_present(tmp_path):
    root = write_msd_dir(tmp_path / "mine", task="Task99_Kidney", n_cases=3, labels=LABELS)
    meta_path = root / "dataset.json"
    meta = json.loads(meta_path.read_text())
    del meta["labels"]  # no labels listed: the data decide
    meta_path.write_text(json.dumps(meta))
    entry = {"source": "msd_import", "path": str(root), "label_value": 7, **SMALL}
    with pytest.raises(
        DataError, match="label_value 7 occurs in no label volume; values present: 0, 1, 2"
    ):
        prepare_dataset("mine", entry, root, tmp_path / "datasets" / "ds")
    assert list((tmp_path / "datasets").iterdir()) == []


def test_missing_layout_pieces_are_named(tmp_path, user_dir):
    with pytest.raises(DataError, match="dataset.json: not found"):
        prepare_dataset(
            "x", {"source": "msd_import", "path": str(tmp_path)}, tmp_path, tmp_path / "ds"
        )
    (user_dir / "labelsTr" / "kidney_2.nii.gz").unlink()
    with pytest.raises(DataError, match="kidney_2.nii.gz: listed in .*dataset.json"):
        prepare_dataset(
            "x", {"source": "msd_import", "path": str(user_dir), **SMALL}, user_dir, tmp_path / "ds"
        )


def test_corrupt_volume_is_named(user_dir, tmp_path):
    (user_dir / "imagesTr" / "kidney_3.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(DataError, match="kidney_3.nii.gz: not a readable NIfTI"):
        prepare_dataset(
            "x", {"source": "msd_import", "path": str(user_dir), **SMALL}, user_dir, tmp_path / "ds"
        )
    assert not (tmp_path / "ds").exists()


def _write_volumes(root, labels, spacing=(1.0, 1.0, 1.0)):
    """An MSD-layout directory with the given label volumes (images: label + noise)."""
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    training = []
    for i, label in enumerate(labels):
        name = f"vol_{i}.nii.gz"
        affine = np.diag([*spacing, 1.0])
        image = (label + 0.1 * rng.standard_normal(label.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / name))
        nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), str(root / "labelsTr" / name))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"modality": {"0": "MRI"}, "labels": {"0": "background", "1": "x"}}
    (root / "dataset.json").write_text(json.dumps({**meta, "training": training}))
    return root


def _graded_label():
    """20 x 20 slices (400 pixels) with 1, 2, 3 and 0 foreground pixels: 0.25 %, 0.5 % (the
    papers' threshold, which "more than" excludes), 0.75 % and none."""
    label = np.zeros((20, 20, 4), dtype=np.uint8)
    for k, n in enumerate((1, 2, 3, 0)):
        label[6, 6 : 6 + n, k] = 1  # row / columns 6 and 8 survive a nearest resize to 8
    return label


@pytest.mark.parametrize(
    "min_fg_pixels, min_fg_fraction, kept",
    [
        (1, 0.0, {0, 1, 2}),  # today's default: any foreground pixel
        (2, 0.0, {1, 2}),  # the pixel rule alone
        (1, 0.005, {2}),  # the papers' rule: strictly more than 0.5 % (2 of 400 is not)
        (1, 0.002, {0, 1, 2}),  # 1 of 400 = 0.25 % > 0.2 %
        (3, 0.002, {2}),  # both must hold: the fraction keeps 0-2, the pixels only 2
        (2, 0.0049, {1, 2}),
    ],
)
def test_slice_selection_by_pixels_and_fraction_before_resizing(
    tmp_path, min_fg_pixels, min_fg_fraction, kept
):
    root = _write_volumes(tmp_path / "mine", [_graded_label()] * 3)
    entry = {
        "source": "msd_import",
        "path": str(root),
        # resized to 8 x 8 these slices hold 1, 1, 2 and 0 of 64 pixels (all over 1.5 %):
        # measured after resizing, the fraction rule would keep slices 0 and 1 as well
        "image_size": 8,
        "min_fg_pixels": min_fg_pixels,
        "min_fg_fraction": min_fg_fraction,
        **SMALL,
    }
    prepare_dataset("mine", entry, root, tmp_path / "ds")
    cases = cases_of(tmp_path / "ds")
    assert len(cases) == 3 * len(kept)
    assert {c.meta["slice"] for c in cases} == kept
    assert all(c.label.any() for c in cases)


def test_min_fg_fraction_is_refused_where_it_does_nothing(tmp_path):
    from segrobust.data.prepare import parse_entry

    with pytest.raises(DataError, match="min_fg_fraction: got 0.01.*2D variant of an MSD"):
        parse_entry("b", {"source": "busi", "min_fg_fraction": 0.01})
    with pytest.raises(DataError, match="min_fg_fraction: got 0.01"):
        parse_entry("s", {"source": "msd_spleen", "variant": "3d", "min_fg_fraction": 0.01})
    with pytest.raises(DataError, match=r"min_fg_fraction: got 1.*\[0, 1\)"):
        parse_entry("s", {"source": "msd_spleen", "min_fg_fraction": 1})


def test_volume_smaller_than_the_largest_context_patch_is_named_at_preparation(user_dir, tmp_path):
    entry = {
        "source": "msd_import",
        "path": str(user_dir),
        "variant": "3d",
        "spacing": [0.8, 0.8, 5.0],  # unchanged: 32 x 32 x 8 voxels
        "min_shape": [16, 16, 16],  # passed by the prepare_dataset rule (largest patch 16)
        **SMALL,
    }
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", entry, user_dir, tmp_path / "datasets" / "ds")
    message = str(err.value)
    assert "kidney_1.nii.gz" in message and "[32, 32, 8] voxels" in message
    assert "largest patch [16, 16, 16]" in message and "studies.context.patch_sizes" in message
    assert list((tmp_path / "datasets").iterdir()) == []
    entry["min_shape"] = [8, 8, 8]
    prepare_dataset("mine", entry, user_dir, tmp_path / "datasets" / "ds")
    assert len(cases_of(tmp_path / "datasets" / "ds")) == 4


def test_a_spacing_typo_is_refused_before_resampling(user_dir, tmp_path):
    entry = {"source": "msd_import", "path": str(user_dir), "variant": "3d", **SMALL}
    entry["spacing"] = [0.01, 0.8, 5.0]
    with pytest.raises(DataError, match=r"datasets.mine.spacing = \[0.01, 0.8, 5.0\].*over 1024"):
        prepare_dataset("mine", entry, user_dir, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
