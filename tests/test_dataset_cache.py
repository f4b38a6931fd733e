"""The optional array cache of a dataset (issue 15.2): loads exactly what the NIfTI files hold,
and only while they are the files it was made from."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from segrobust.data import dataset
from segrobust.data.complexity import ANALYSIS_SIZE, analysis_codes, lbp_complexity
from segrobust.data.dataset import (
    CACHE,
    DataError,
    DatasetWriter,
    load_split,
    write_nifti,
)


def _write(out, shapes=((12, 10),) * 6, spacing=(0.7, 1.3), seed=0):
    rng = np.random.default_rng(seed)
    splits = ("training", "training", "validation", "calibration", "test", "test")
    with DatasetWriter(out, provenance={"source": "test"}) as ds:
        for i, shape in enumerate(shapes):
            label = (rng.random(shape) > 0.6).astype(np.uint8)
            image = rng.standard_normal(shape).astype(np.float32) + label
            ds.add(f"c{i}", image, label, split=splits[i % 6], spacing=spacing, radius=i + 0.5)
    return out


def _same(a, b):
    assert [c.case_id for c in a] == [c.case_id for c in b]
    for x, y in zip(a, b, strict=True):
        assert x.image.dtype == y.image.dtype == np.float32
        assert x.label.dtype == y.label.dtype == np.uint8
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.label, y.label)
        assert x.spacing == y.spacing and x.meta == y.meta
        np.testing.assert_array_equal(x.affine, y.affine)


def test_the_cache_loads_exactly_what_the_nifti_files_hold(tmp_path, monkeypatch):
    out = _write(tmp_path / "ds")
    assert (out / CACHE).is_file()
    expected = {split: load_split(out, split, use_cache=False) for split in dataset.SPLITS}
    assert expected["training"][0].spacing == pytest.approx((0.7, 1.3), abs=1e-6)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache holds it")

    monkeypatch.setattr(dataset, "read_nifti", no_decoding)
    for split in dataset.SPLITS:
        _same(load_split(out, split), expected[split])


def test_a_changed_file_is_read_from_disk_and_still_checked(tmp_path):
    out = _write(tmp_path / "ds")
    datalist = json.loads((out / "datalist.json").read_text())
    entry = datalist["test"][0]
    new_image = np.full((12, 10), 5.0, dtype=np.float32)
    write_nifti(out / entry["image"], new_image, spacing=(0.7, 1.3))
    [changed, _] = load_split(out, "test")
    np.testing.assert_array_equal(changed.image, new_image)  # the file, not the stale cache
    # a label no longer binary is refused, naming the file, as without a cache
    write_nifti(out / entry["label"], np.full((12, 10), 2, dtype=np.uint8), spacing=(0.7, 1.3))
    with pytest.raises(DataError, match=r"labels/c4.nii.gz: label is not binary"):
        load_split(out, "test")


def test_a_datalist_naming_other_files_bypasses_the_cache(tmp_path, monkeypatch):
    out = _write(tmp_path / "ds")
    datalist = json.loads((out / "datalist.json").read_text())
    datalist["test"][0]["image"], datalist["test"][1]["image"] = (
        datalist["test"][1]["image"], datalist["test"][0]["image"],
    )  # fmt: skip
    (out / "datalist.json").write_text(json.dumps(datalist))
    expected = load_split(out, "test", use_cache=False)
    _same(load_split(out, "test"), expected)
    # a path leading out of the dataset is refused as before
    datalist["test"][0]["image"] = "../elsewhere.nii.gz"
    (out / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(DataError, match="outside the dataset"):
        load_split(out, "test")


def test_an_unreadable_cache_is_reported_and_skipped(tmp_path, caplog):
    out = _write(tmp_path / "ds")
    expected = load_split(out, "training", use_cache=False)
    (out / CACHE).write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING):
        _same(load_split(out, "training"), expected)
    assert "unusable array cache" in caplog.text and CACHE in caplog.text


def test_no_cache_for_ragged_or_oversized_datasets(tmp_path, monkeypatch):
    ragged = _write(tmp_path / "ragged", shapes=[(12, 10)] * 5 + [(8, 8)])
    assert not (ragged / CACHE).exists()
    assert [c.image.shape for c in load_split(ragged, "test")] == [(12, 10), (8, 8)]
    # room for three cases: float32 image, uint8 label, uint8 LBP codes on the analysis grid
    monkeypatch.setattr(dataset, "CACHE_MAX_BYTES", 3 * (12 * 10 * 5 + ANALYSIS_SIZE**2))
    big = _write(tmp_path / "big")
    assert not (big / CACHE).exists()
    assert len(load_split(big, "training")) == 2


def test_a_failed_writer_leaves_no_cache_behind(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(DataError), DatasetWriter(out, provenance={"source": "test"}) as ds:
        ds.add("a", np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), split="test")
        ds.add("a", np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), split="test")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_the_cache_holds_each_2d_images_lbp_codes_and_they_give_the_same_complexity(tmp_path):
    """Evaluation's mask complexity from the cached codes equals the one computed from the
    image, under any mask; a dataset read from NIfTI has no codes and computes them."""
    out = _write(tmp_path / "ds")
    rng = np.random.default_rng(3)
    for case in load_split(out, "test"):
        assert case.lbp_codes is not None and case.lbp_codes.dtype == np.uint8
        np.testing.assert_array_equal(case.lbp_codes, analysis_codes(case.image))
        for mask in (case.label, rng.random(case.image.shape) > 0.5):
            assert lbp_complexity(case.image, mask, codes=case.lbp_codes) == lbp_complexity(
                case.image, mask
            )
    assert all(c.lbp_codes is None for c in load_split(out, "test", use_cache=False))


def test_codes_cached_under_other_lbp_settings_are_not_used(tmp_path, monkeypatch):
    out = _write(tmp_path / "ds")
    monkeypatch.setattr(dataset, "CACHED_LBP", {**dataset.CACHED_LBP, "radius": 2})
    cases = load_split(out, "test")
    assert len(cases) == 2 and all(c.lbp_codes is None for c in cases)


def test_codes_of_the_wrong_grid_are_refused_not_misread():
    image = np.random.default_rng(0).random((12, 10))
    label = image > 0.5
    with pytest.raises(ValueError, match="precomputed LBP codes of shape"):
        lbp_complexity(image, label, codes=np.zeros((12, 10), np.uint8))


def test_volumes_carry_no_codes(tmp_path):
    out = _write(tmp_path / "vol", shapes=((6, 6, 4),) * 6, spacing=(1.0, 1.0, 2.0))
    assert (out / CACHE).is_file()
    assert all(c.lbp_codes is None for c in load_split(out, "test"))
    volume = np.zeros((6, 6, 4))
    with pytest.raises(ValueError, match="2D images only"):
        lbp_complexity(volume, volume > 0, codes=np.zeros((256, 256), np.uint8))


@pytest.mark.parametrize(
    "codes", [np.zeros((1, 256, 256), np.uint8), np.zeros((6, 8, 8), np.uint8),
              np.zeros((6, 256, 256), np.float64)],
    ids=["too-few-rows", "wrong-grid", "wrong-type"],
)  # fmt: skip
def test_a_cache_with_damaged_codes_is_reported_and_skipped(tmp_path, caplog, codes):
    """The cache is not covered by the files' digests: damaged codes fall back to the NIfTI
    files (and codes computed from them), never into the statistics."""
    out = _write(tmp_path / "ds")
    with np.load(out / CACHE) as cache:
        members = {k: cache[k] for k in cache.files}
    np.savez(out / CACHE, **{**members, "lbp_codes": codes})
    with caplog.at_level(logging.WARNING):
        cases = load_split(out, "test")
    assert "unusable array cache" in caplog.text
    assert all(c.lbp_codes is None for c in cases)
    _same(cases, load_split(out, "test", use_cache=False))
