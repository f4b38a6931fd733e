"""Issue 11, case 3: source files whose names clean up to one case id never overwrite each
other; they are refused with every colliding file named, and a writer refuses an id twice."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
from archives import GLAS_DIR, _bmp, blob_volume, make_glas_zip, write_msd_cases
from sandbox import make_sandbox

from segrobust.data.dataset import DataError, DatasetWriter
from segrobust.data.prepare import prepare_dataset

SMALL = {"split": {"train": 0.4, "validation": 0.3, "test": 0.3}, "calibration_fraction": 0.0}


def test_msd_import_names_every_file_of_a_colliding_case_id(tmp_path):
    sandbox = make_sandbox(tmp_path)
    names = ["case_07.nii.gz", "Case-07.nii.gz", "case 07.nii.gz", "case_08.nii.gz"]
    cases = {name: blob_volume(seed=i) for i, name in enumerate(names)}
    root = write_msd_cases(sandbox.root / "mine", cases)
    before = sandbox.snapshot()
    entry = {"source": "msd_import", "path": str(root), "image_size": 16, **SMALL}
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", entry, root, sandbox.target)
    message = str(err.value)
    assert "dataset.json" in message and "'case_07'" in message
    for name in names[:3]:
        assert str(root / "imagesTr" / name) in message
    assert "case_08" not in message
    sandbox.assert_untouched(before)


def test_glas_zip_with_colliding_image_names_is_refused(tmp_path):
    sandbox = make_sandbox(tmp_path)
    archive = make_glas_zip(sandbox.root / "glas.zip")
    with zipfile.ZipFile(archive, "a") as zf:  # "train-1" cleans up to train_1, like train_1
        anno = np.zeros((36, 44), np.uint8)
        anno[5:9, 5:9] = 1
        zf.writestr(f"{GLAS_DIR}/train-1.bmp", _bmp(np.full((36, 44, 3), 200, np.uint8)))
        zf.writestr(f"{GLAS_DIR}/train-1_anno.bmp", _bmp(anno))
    entry = {"source": "glas", "checksum": hashlib.sha256(archive.read_bytes()).hexdigest()}
    before = sandbox.snapshot()
    with pytest.raises(DataError) as err:
        prepare_dataset("glas", entry, archive, sandbox.target)
    message = str(err.value)
    assert "'train_1'" in message and "train-1.bmp" in message and "train_1.bmp" in message
    sandbox.assert_untouched(before)


def test_dataset_writer_refuses_an_id_added_twice(tmp_path):
    sandbox = make_sandbox(tmp_path)
    before = sandbox.snapshot()
    image, label = np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8)
    with pytest.raises(
        DataError, match=r"case id 'a' added twice .*\(first in the 'training' split\)"
    ):
        with DatasetWriter(sandbox.target, {"source": "test"}) as ds:
            ds.add("a", image, label, split="training")
            ds.add("b", image, label, split="test")
            ds.add("a", image + 1, label, split="test")
    sandbox.assert_untouched(before)


@pytest.mark.parametrize("case_id", ["../escape", "a/b", ".hidden", "", "x\x00y", "é"])
def test_dataset_writer_refuses_ids_that_are_not_plain_file_names(tmp_path, case_id):
    sandbox = make_sandbox(tmp_path)
    before = sandbox.snapshot()
    with pytest.raises(DataError, match="not usable as a file name"):
        with DatasetWriter(sandbox.target, {"source": "test"}) as ds:
            ds.add(case_id, np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), split="test")
    sandbox.assert_untouched(before)
