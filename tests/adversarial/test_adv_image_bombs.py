"""Issue 22, case 4 (and the scl_slope case of 6): an image file cannot exhaust the machine, and
every image error says why.

A 389 KB ``.nii.gz`` of 20000 x 20000 uint8 ran predict for over 600 s at 5.5 GB, a 16 KB header
declaring 32767^2 float32 voxels allocated 4.3 GB, and a 4 MB file declaring 1600^3 voxels took
msd_import to 4.2 GB before failing with "not a readable NIfTI image ()". Every reader now checks
the header first (``segrobust.data.image_header``): the size once read against ``max_image_gb``,
naming the file, the size and the key, before a voxel is read. The files here only *declare*
their size (their voxel data is cut short): a reader that decoded before checking would fail
differently, with another message.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from archives import blob_volume, write_msd_cases
from calibrated import calibrated_run, good_images
from sandbox import make_sandbox
from schema_defaults import default_config

from segrobust.data import image_header
from segrobust.data.dataset import DataError, DatasetWriter, load_split, read_nifti
from segrobust.data.image_header import (
    DEFAULT_MAX_IMAGE_GB,
    MAX_IMAGE_GB_ENV,
    ImageTooLarge,
    check_photo,
    exception_reason,
)
from segrobust.data.prepare import prepare_dataset, read_image
from segrobust.predict.batch import predict_folder

SMALL = {"split": {"train": 0.4, "validation": 0.3, "test": 0.3}, "calibration_fraction": 0.0}


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    """The limit of a study that does not set max_image_gb."""
    monkeypatch.delenv(MAX_IMAGE_GB_ENV, raising=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return calibrated_run(tmp_path_factory.mktemp("image_bombs"))


def declaring(path: Path, shape, dtype=np.uint8, vox_offset: int = 352, data: bytes = b"") -> Path:
    """A NIfTI file whose header declares ``shape`` voxels of ``dtype`` but holds only ``data``
    (gzipped when the name ends in .gz)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = vox_offset
    raw = header.binaryblock + b"\x00" * 4 + data
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def test_the_default_limit_is_the_schemas():
    assert default_config()["max_image_gb"] == DEFAULT_MAX_IMAGE_GB


def test_predict_refuses_image_bombs_from_the_header_and_names_each(run, tmp_path):
    sandbox = make_sandbox(tmp_path)
    images = good_images(sandbox.root / "images", 1)
    declaring(images / "wide.nii.gz", (20000, 20000), data=b"\x00" * 4096)
    declaring(images / "header16k.nii", (32767, 32767), np.float32)
    declaring(images / "extensions.nii.gz", (4, 4), vox_offset=4_000_000_000)
    result = predict_folder(images, sandbox.target, model_paths=[run], log=lambda line: None)
    assert result.predictions.image.tolist() == ["img0"]
    errors = dict(zip(result.failures.file, result.failures.error, strict=True))
    written = pd.read_csv(sandbox.target / "failures.csv")
    assert sorted(written.file) == sorted(errors)
    for name, size in [
        ("wide.nii.gz", "20000 x 20000 voxels of uint8: 1.6 GB once read (4 bytes per voxel)"),
        ("header16k.nii", "32767 x 32767 voxels of float32: 4.29 GB once read (4 bytes per voxel)"),
        ("extensions.nii.gz", "4 x 4 voxels of uint8: 4 GB once read (4 bytes per voxel plus "
                              "4000000000 bytes of header)"),
    ]:  # fmt: skip
        assert errors[name] == (
            f"{images / name}: the header declares {size}, over the limit of 1 GB (config key "
            "max_image_gb, or --max-image-gb of segrobust predict); refused before reading its "
            "voxels"
        )


def test_the_limit_is_the_configured_one(tmp_path, monkeypatch):
    path = declaring(tmp_path / "v.nii.gz", (64, 64, 64), np.float32)  # 1 MB once read
    image_header.check_nifti(path)
    monkeypatch.setenv(MAX_IMAGE_GB_ENV, "0.001")  # what the Snakefile sets from max_image_gb
    with pytest.raises(ImageTooLarge, match="over the limit of 0.001 GB"):
        image_header.check_nifti(path)
    monkeypatch.setenv(MAX_IMAGE_GB_ENV, "nan")
    with pytest.raises(ValueError, match=f"{MAX_IMAGE_GB_ENV}='nan': allowed: a positive number"):
        image_header.check_nifti(path)


def test_msd_import_refuses_a_volume_bomb_before_reading_it(tmp_path):
    sandbox = make_sandbox(tmp_path)
    cases = {f"v{i}.nii.gz": blob_volume(seed=i) for i in range(3)}
    root = write_msd_cases(sandbox.root / "mine", cases)
    bomb = declaring(root / "imagesTr" / "v1.nii.gz", (1600, 1600, 1600), np.float32,
                     data=b"\x00" * 4096)  # fmt: skip
    before = sandbox.snapshot()
    with pytest.raises(ImageTooLarge) as err:
        prepare_dataset("mine", {"source": "msd_import", "path": str(root), **SMALL}, root,
                        sandbox.target)  # fmt: skip
    message = str(err.value)
    assert message.startswith(f"{bomb}: the header declares 1600 x 1600 x 1600 voxels of float32")
    assert "16.4 GB once read" in message and "max_image_gb" in message
    sandbox.assert_untouched(before)


def test_the_dataset_reader_checks_the_header_too(tmp_path):
    data = tmp_path / "data"
    with DatasetWriter(data, {"source": "test"}) as ds:
        for i in range(2):
            image, label = blob_volume(seed=i)
            ds.add(f"c{i}", image, label, split="training")
    (data / "arrays.npz").unlink()  # the array cache holds the written arrays; read the files
    declaring(data / "images" / "c1.nii.gz", (2048, 2048, 512), np.float32)
    with pytest.raises(ImageTooLarge, match=r"images/c1\.nii\.gz: the header declares 2048 x 2048"):
        load_split(data, "training")


def test_a_photo_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    """BUSI and GlaS preparation read PNG / BMP through ``read_image``."""
    path = tmp_path / "benign (1).png"
    path.write_bytes(_png_header_only(9000, 9000))  # below Pillow's own bomb warning (89 Mpx)
    monkeypatch.setenv(MAX_IMAGE_GB_ENV, "0.1")
    with pytest.raises(ImageTooLarge, match=r"9000 x 9000 voxels of uint8: 0.324 GB once read"):
        read_image(path)
    with pytest.raises(ImageTooLarge):
        check_photo(path)


def _png_header_only(width: int, height: int) -> bytes:
    """A grayscale PNG whose IHDR declares ``width`` x ``height`` and whose data is one row."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_every_image_error_says_why(tmp_path, monkeypatch):
    good = good_images(tmp_path / "images", 1) / "img0.nii.gz"
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(DataError) as err:
        read_nifti(cut)
    assert str(err.value).startswith(f"{cut}: not a readable NIfTI image (")
    assert not str(err.value).endswith("()")  # the reason, never an empty one
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"empty\.nii: not a readable NIfTI image \(no NIfTI header"
    ):
        read_nifti(tmp_path / "empty.nii")

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", out_of_memory)
    with pytest.raises(DataError) as err:
        read_nifti(good)
    assert str(err.value) == (
        f"{good}: not a readable NIfTI image (MemoryError: not enough memory to decode it)"
    )
    assert exception_reason(ValueError()) == "ValueError"


def test_intensities_that_overflow_float32_fail_their_file_not_the_batch(run, tmp_path):
    """A float64 image beyond float32's range, or an int16 one scaled by a huge scl_slope,
    used to become an empty mask rated like any other."""
    sandbox = make_sandbox(tmp_path)
    images = good_images(sandbox.root / "images", 1)
    huge = np.full((16, 16), 1e300)
    huge[4:10, 4:10] = 2e300
    nib.save(nib.Nifti1Image(huge, np.eye(4)), images / "float64.nii.gz")
    scaled = nib.Nifti1Image(np.full((16, 16), 30000, np.int16), np.eye(4))
    scaled.header.set_slope_inter(1e38, 0.0)
    nib.save(scaled, images / "slope.nii.gz")
    result = predict_folder(images, sandbox.target, model_paths=[run], log=lambda line: None)
    assert result.predictions.image.tolist() == ["img0"]
    errors = dict(zip(result.failures.file, result.failures.error, strict=True))
    for name in ("float64.nii.gz", "slope.nii.gz"):
        assert errors[name].startswith(f"{images / name}: 256 of 256 voxels are not finite")
    rows = json.loads(result.predictions.to_json(orient="records"))
    assert all(row["file"] == "img0.nii.gz" for row in rows)
