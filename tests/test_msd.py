"""Importing a user's dataset in the Medical Segmentation Decathlon layout by config alone."""

import json

import numpy as np
import pytest
from archives import msd_volumes, write_msd_dir

from segrobust.data.dataset import SPLITS, DataError, load_split
from segrobust.data.prepare import prepare_dataset

LABELS = {"0": "background", "1": "kidney", "2": "tumour"}


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


def test_import_2d_keeps_only_slices_with_that_label(user_dir, tmp_path):
    out = tmp_path / "ds"
    entry = {"source": "msd_import", "path": str(user_dir), "label_value": 2, "image_size": 16}
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
    root = write_msd_dir(tmp_path / "mine", task="Task99_Kidney", n_cases=2, labels=LABELS)
    meta_path = root / "dataset.json"
    meta = json.loads(meta_path.read_text())
    del meta["labels"]  # no labels listed: the data decide
    meta_path.write_text(json.dumps(meta))
    entry = {"source": "msd_import", "path": str(root), "label_value": 7}
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
            "x", {"source": "msd_import", "path": str(user_dir)}, user_dir, tmp_path / "ds"
        )


def test_corrupt_volume_is_named(user_dir, tmp_path):
    (user_dir / "imagesTr" / "kidney_3.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(DataError, match="kidney_3.nii.gz: not a readable NIfTI"):
        prepare_dataset(
            "x", {"source": "msd_import", "path": str(user_dir)}, user_dir, tmp_path / "ds"
        )
    assert not (tmp_path / "ds").exists()
