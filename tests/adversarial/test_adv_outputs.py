"""Issue 11, case 8: how outputs fail and who may read them, and the inputs around them.

- a full disk while checkpointing, writing a dataset or extracting names the path and says
  "No space left on device" (not torch's ``basic_ios::clear``) and leaves no partial output;
- outputs get the permissions the umask gives (a lab group can read them), not 0600 / 0700;
- an empty config file or a YAML syntax error names the file and the line;
- a dataset.json or datalist.json path cannot read files outside its dataset directory, also
  not through a symlink.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from archives import blob_volume, make_busi_zip, write_msd_cases
from sandbox import make_sandbox
from schema_defaults import model_kwargs, train_settings

from segrobust.atomic import OutputError
from segrobust.contract import Run
from segrobust.data import extract
from segrobust.data.dataset import DataError, DatasetWriter, load_split
from segrobust.data.extract import safe_extract
from segrobust.data.prepare import prepare_dataset
from segrobust.spec.config import ConfigError, check_config_files
from segrobust.training.train import train_run

SMALL = {"split": {"train": 0.4, "validation": 0.3, "test": 0.3}, "calibration_fraction": 0.0}


def _enospc(path=None):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def _small_dataset(out):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    with DatasetWriter(out, {"source": "test"}) as ds:
        for i in range(6):
            label = ((yy - 8) ** 2 + (xx - 4 - i) ** 2 <= 9).astype(np.uint8)
            image = (label + 0.2 * rng.standard_normal(label.shape)).astype(np.float32)
            ds.add(f"c{i}", image, label, split="training" if i < 4 else "validation")
    return out


def _train(data, out, epochs):
    return train_run(
        data, run=Run("texture", "discs", "unet", "full", 1), spatial_dims=2,
        model_kwargs=model_kwargs("unet", channels=(4, 8)),
        settings=train_settings(epochs=epochs, batch_size=2), device=torch.device("cpu"),
        out_model=out / "model.pt", out_log=out / "train_log.csv",
        out_patches=out / "patches.csv", checkpoint_path=out / "ckpt" / "last.pt",
        log=lambda _m: None,
    )  # fmt: skip


def test_disk_full_while_checkpointing_names_the_checkpoint(tmp_path, monkeypatch):
    data = _small_dataset(tmp_path / "data")
    sandbox = make_sandbox(tmp_path / "run")
    checkpoint = sandbox.target / "ckpt" / "last.pt"
    real_write_bytes = Path.write_bytes
    writes = []

    def full_on_second_checkpoint(self, payload):
        if self.name.startswith(".tmp-last.pt"):
            writes.append(self)
            if len(writes) == 2:
                raise _enospc()
        return real_write_bytes(self, payload)

    monkeypatch.setattr(Path, "write_bytes", full_on_second_checkpoint)
    with pytest.raises(OutputError) as err:
        _train(data, sandbox.target, epochs=3)
    message = str(err.value)
    assert f"could not write {checkpoint}: No space left on device" in message
    assert "free some space and re-run" in message and "basic_ios" not in message
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1  # the good one is intact
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.pt"]
    assert not (sandbox.target / "model.pt").exists()


def test_disk_full_while_writing_a_dataset_leaves_nothing(tmp_path, monkeypatch):
    sandbox = make_sandbox(tmp_path)
    real_save = nib.save
    calls = []

    def full_on_third_file(img, filename):
        calls.append(filename)
        if len(calls) == 3:
            raise _enospc(str(filename))
        return real_save(img, filename)

    monkeypatch.setattr(nib, "save", full_on_third_file)
    before = sandbox.snapshot()
    with pytest.raises(OutputError) as err:
        _small_dataset(sandbox.target)
    message = str(err.value)
    assert "images/c1.nii.gz: No space left on device; free some space" in message
    sandbox.assert_untouched(before)


def test_disk_full_while_extracting_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    """The member's bytes really go to /dev/full: the kernel's ENOSPC, through our writer."""
    sandbox = make_sandbox(tmp_path)
    archive = make_busi_zip(sandbox.root / "Dataset_BUSI.zip")
    real_create = extract.StagingTree.create_file

    def onto_a_full_disk(self, parts, name):
        os.close(real_create(self, parts, name))
        return os.open("/dev/full", os.O_WRONLY)

    monkeypatch.setattr(extract.StagingTree, "create_file", onto_a_full_disk)
    before = sandbox.snapshot()
    with pytest.raises(OutputError) as err:
        safe_extract(archive, sandbox.target)
    message = str(err.value)
    assert "Dataset_BUSI_with_GT/benign/benign (1).png: No space left on device" in message
    sandbox.assert_untouched(before)


@pytest.mark.parametrize(
    "umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o002, 0o775, 0o664)]
)
def test_outputs_get_the_umask_permissions(tmp_path, umask, dir_mode, file_mode):
    old = os.umask(umask)
    try:
        dataset = _small_dataset(tmp_path / "dataset")
        extracted = safe_extract(make_busi_zip(tmp_path / "b.zip"), tmp_path / "extracted")
        _train(dataset, tmp_path / "model", epochs=1)
    finally:
        os.umask(old)
    for folder in (dataset, dataset / "images", extracted, extracted / "Dataset_BUSI_with_GT"):
        assert stat.S_IMODE(folder.stat().st_mode) == dir_mode, folder
    files = [dataset / "datalist.json", dataset / "images" / "c0.nii.gz", tmp_path / "model"]
    files[-1] = files[-1] / "model.pt"
    files.append(extracted / "Dataset_BUSI_with_GT" / "benign" / "benign (1).png")
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == file_mode, path


@pytest.mark.parametrize(
    "text, where",
    [
        ("", "empty (no keys)"),
        ("studies:\n  texture: {image_size: 64\n  context: {}\n", "line 3, column 10"),
        ("seeds: [1]\nsplit:\n\ttrain: 0.7\n", "line 3, column 1"),
    ],
)
def test_config_file_errors_name_the_file_and_line(tmp_path, text, where):
    sandbox = make_sandbox(tmp_path)
    path = sandbox.root / "mine.yaml"
    path.write_text(text)
    before = sandbox.snapshot()
    with pytest.raises(ConfigError) as err:
        check_config_files(sandbox.root / "config.yaml", [path])
    assert str(err.value).startswith(f"config file {path}") and where in str(err.value)
    sandbox.assert_untouched(before)


def _msd_dir(root, n=3):
    return write_msd_cases(root, {f"v{i}.nii.gz": blob_volume(seed=i) for i in range(n)})


def test_dataset_json_path_outside_the_directory_is_refused(tmp_path):
    sandbox = make_sandbox(tmp_path)
    root = _msd_dir(sandbox.root / "mine")
    os.replace(root / "imagesTr" / "v2.nii.gz", sandbox.root / "x.nii.gz")
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][2]["image"] = "../x.nii.gz"
    (root / "dataset.json").write_text(json.dumps(meta))
    before = sandbox.snapshot()
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", {"source": "msd_import", "path": str(root), **SMALL}, root,
                        sandbox.target)  # fmt: skip
    message = str(err.value)
    assert str(root / "dataset.json") in message and "'../x.nii.gz'" in message
    assert "outside the dataset directory" in message
    sandbox.assert_untouched(before)


def test_dataset_json_path_through_a_symlink_out_of_the_directory_is_refused(tmp_path):
    sandbox = make_sandbox(tmp_path)
    root = _msd_dir(sandbox.root / "mine")
    outside = sandbox.root / "elsewhere"
    outside.mkdir()
    os.replace(root / "labelsTr" / "v1.nii.gz", outside / "v1.nii.gz")
    (root / "labelsTr" / "v1.nii.gz").symlink_to(outside / "v1.nii.gz")
    before = sandbox.snapshot()
    with pytest.raises(DataError, match=r"'./labelsTr/v1.nii.gz' resolves to .*elsewhere"):
        prepare_dataset("mine", {"source": "msd_import", "path": str(root), **SMALL}, root,
                        sandbox.target)  # fmt: skip
    sandbox.assert_untouched(before)


def test_datalist_path_outside_the_dataset_is_refused_by_the_reader(tmp_path):
    dataset = _small_dataset(tmp_path / "data")
    secret = tmp_path / "secret.nii.gz"
    secret.write_bytes((dataset / "images" / "c0.nii.gz").read_bytes())
    datalist = json.loads((dataset / "datalist.json").read_text())
    datalist["training"][0]["image"] = "../secret.nii.gz"
    (dataset / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(DataError) as err:
        load_split(dataset, "training")
    assert str(dataset / "datalist.json") in str(err.value)
    assert "'../secret.nii.gz'" in str(err.value) and "outside the dataset directory" in str(
        err.value
    )
