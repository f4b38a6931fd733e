"""Preparation of each downloadable source into the dataset contract, from archives in the
sources' real layouts."""

import hashlib
import json

import numpy as np
import pytest
from archives import make_busi_zip, make_glas_zip, make_malicious_zip, make_msd_tar

from segrobust.data.dataset import SPLITS, DataError, load_split, read_datalist
from segrobust.data.download import ChecksumError
from segrobust.data.extract import ArchiveLimitError, UnsafeArchiveError
from segrobust.data.prepare import parse_entry, prepare_dataset
from segrobust.data.sources import SOURCES
from segrobust.registry import UnknownNameError

#: Splits the tiny fixtures (3-8 volumes or images) can fill: every split gets a case.
SMALL = {"split": {"train": 0.4, "validation": 0.3, "test": 0.3}, "calibration_fraction": 0.0}
#: The same with a calibration split (needs 5 groups).
SMALL_CAL = {"split": {"train": 0.4, "validation": 0.2, "test": 0.4}, "calibration_fraction": 0.5}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def all_cases(out):
    return {s: load_split(out, s) for s in SPLITS}


def check_contract(out, ndim):
    cases = all_cases(out)
    flat = [c for split in cases.values() for c in split]
    assert flat, "no cases written"
    for c in flat:
        assert c.image.ndim == ndim and c.image.dtype == np.float32
        assert 0.0 <= c.image.min() and c.image.max() <= 1.0
        assert set(np.unique(c.label)) <= {0, 1}
        assert c.meta["fg_ratio"] == pytest.approx(float(c.label.mean()), abs=1e-6)
        assert "complexity" in c.meta
    return cases


def test_every_source_has_the_documented_fields():
    assert set(SOURCES) == {"busi", "glas", "msd_heart", "msd_import", "msd_spleen"}
    spleen = SOURCES.get("msd_spleen")
    assert spleen.urls[0].endswith("Task09_Spleen.tar") and spleen.algorithm == "md5"
    assert SOURCES.get("glas").checksum is None  # none published; never invented
    for name in SOURCES:
        assert callable(SOURCES.get(name).preparer())


def test_msd_spleen_2d_slices_window_spacing_and_patient_splits(tmp_path):
    archive = make_msd_tar(tmp_path / "Task09_Spleen.tar", tmp_path / "src", n_cases=5)
    entry = {
        "source": "msd_spleen",
        "variant": "2d",
        "image_size": 16,
        "window": [-200, 300],
        "checksum": hashlib.md5(archive.read_bytes()).hexdigest(),
        "seed": 3,
        **SMALL_CAL,
    }
    out = tmp_path / "datasets" / "spleen2d"
    prepare_dataset("spleen2d", entry, archive, out)
    cases = check_contract(out, ndim=2)
    flat = [c for split in cases.values() for c in split]
    # The blob covers slices 2..5 of 8: only slices with foreground are kept.
    assert len(flat) == 5 * 4 and all(c.label.any() for c in flat)
    assert all(c.image.shape == (16, 16) for c in flat)
    # 32 voxels of 0.8 mm resized to 16 pixels: 1.6 mm in-plane.
    assert flat[0].spacing == pytest.approx((1.6, 1.6))
    # All slices of one volume land in one split.
    split_of = {}
    for split, split_cases in cases.items():
        for c in split_cases:
            assert split_of.setdefault(c.meta["group"], split) == split
    assert len(split_of) == 5
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["source"] == "msd_spleen" and prov["checksum_verified"] is True
    assert prov["checksum"] == entry["checksum"] and prov["url"].endswith("Task09_Spleen.tar")
    assert prov["preparation"]["window"] == [-200, 300]
    # what predict reproduces on a new image (the source's default: the CT window)
    assert prov["intensity"] == {"method": "window", "window": [-200.0, 300.0]}
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == ["spleen2d"]


def test_preparation_is_deterministic(tmp_path):
    archive = make_msd_tar(tmp_path / "Task09_Spleen.tar", tmp_path / "src", n_cases=4)
    entry = {
        "source": "msd_spleen",
        "image_size": 16,
        "checksum": sha256(archive),
        "checksum_algorithm": "sha256",
        **SMALL,
    }
    prepare_dataset("a", entry, archive, tmp_path / "a")
    prepare_dataset("b", entry, archive, tmp_path / "b")
    assert read_datalist(tmp_path / "a") == read_datalist(tmp_path / "b")


def test_msd_spleen_3d_resampled_to_spacing(tmp_path):
    archive = make_msd_tar(tmp_path / "Task09_Spleen.tar", tmp_path / "src", n_cases=3)
    entry = {
        "source": "msd_spleen",
        "variant": "3d",
        "spacing": [1.6, 1.6, 2.5],
        "checksum": hashlib.md5(archive.read_bytes()).hexdigest(),
        **SMALL,
    }
    out = tmp_path / "spleen3d"
    prepare_dataset("spleen3d", entry, archive, out)
    flat = [c for split in check_contract(out, ndim=3).values() for c in split]
    assert len(flat) == 3
    # 32 x 0.8 mm -> 16 x 1.6 mm; 8 x 5 mm -> 16 x 2.5 mm.
    assert all(c.image.shape == (16, 16, 16) for c in flat)
    assert flat[0].spacing == pytest.approx((1.6, 1.6, 2.5))


def test_msd_heart_mri_percentile_normalisation(tmp_path):
    archive = make_msd_tar(
        tmp_path / "Task02_Heart.tar",
        tmp_path / "src",
        task="Task02_Heart",
        n_cases=3,
        modality="MRI",
        labels={"0": "background", "1": "left atrium"},
    )
    entry = {
        "source": "msd_heart",
        "image_size": 16,
        "percentiles": [1, 99],
        "checksum": hashlib.md5(archive.read_bytes()).hexdigest(),
        **SMALL,
    }
    prepare_dataset("heart", entry, archive, tmp_path / "heart")
    flat = [c for split in check_contract(tmp_path / "heart", 2).values() for c in split]
    # Percentile scaling uses the whole range: bright foreground reaches the top.
    assert max(float(c.image.max()) for c in flat) > 0.9


def test_busi_merges_masks_and_excludes_normal(tmp_path):
    archive = make_busi_zip(tmp_path / "Dataset_BUSI.zip")
    out = tmp_path / "busi"
    prepare_dataset(
        "busi",
        {"source": "busi", "image_size": 20, "checksum": sha256(archive), **SMALL_CAL},
        archive,
        out,
    )
    cases = {c.case_id: c for split in check_contract(out, 2).values() for c in split}
    assert sorted(cases) == ["benign_1", "benign_2", "benign_3", "malignant_1", "malignant_2"]
    two_masks = cases["benign_2"]
    # Both lesions (mask.png top-left, mask_1.png bottom-right) are in the merged label.
    assert two_masks.label[:10].any() and two_masks.label[12:, 12:].any()
    assert cases["benign_1"].label[12:, 15:].sum() == 0
    # 40 x 48 pixels resized to 20 x 20.
    assert two_masks.spacing == pytest.approx((2.0, 2.4))


def test_busi_image_without_mask_is_named(tmp_path):
    import zipfile

    archive = make_busi_zip(tmp_path / "Dataset_BUSI.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(
            "Dataset_BUSI_with_GT/benign/benign (9).png",
            zf.read("Dataset_BUSI_with_GT/benign/benign (1).png"),
        )
    entry = {"source": "busi", "checksum": sha256(archive)}
    with pytest.raises(DataError, match=r"benign \(9\)\.png: no mask"):
        prepare_dataset("busi", entry, archive, tmp_path / "busi")
    assert not (tmp_path / "busi").exists()


def test_glas_instances_become_binary_and_patients_stay_together(tmp_path):
    archive = make_glas_zip(tmp_path / "glas.zip")
    out = tmp_path / "glas"
    entry = {"source": "glas", "image_size": [18, 22], "gray": "mean", "checksum": sha256(archive)}
    entry.update(SMALL)
    prepare_dataset("glas", entry, archive, out)
    cases = check_contract(out, 2)
    flat = [c for split in cases.values() for c in split]
    assert len(flat) == 8 and all(c.image.shape == (18, 22) for c in flat)
    split_of = {}
    for split, split_cases in cases.items():
        for c in split_cases:
            assert split_of.setdefault(c.meta["group"], split) == split
    assert sorted(split_of) == [f"patient_{i}" for i in range(1, 5)]


def test_no_published_checksum_records_sha256(tmp_path):
    archive = make_glas_zip(tmp_path / "glas.zip")
    entry = {"source": "glas", "image_size": 16, **SMALL}
    prepare_dataset("glas", entry, archive, tmp_path / "glas")
    prov = json.loads((tmp_path / "glas" / "provenance.json").read_text())
    assert prov["checksum"] == sha256(archive) and prov["checksum_verified"] is False
    assert prov["intensity"] == {"method": "gray", "mode": "luminance"}


def test_wrong_checksum_of_a_hand_placed_archive_prepares_nothing(tmp_path):
    archive = make_busi_zip(tmp_path / "Dataset_BUSI.zip")
    with pytest.raises(ChecksumError, match="Dataset_BUSI.zip.*mismatch"):
        prepare_dataset("busi", {"source": "busi"}, archive, tmp_path / "ds" / "busi")
    assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").iterdir())


def test_malicious_archive_leaves_dataset_directory_empty(tmp_path):
    archive = make_malicious_zip(tmp_path / "Dataset_BUSI.zip", "dotdot")
    parent = tmp_path / "datasets"
    with pytest.raises(UnsafeArchiveError, match="data/../../evil.txt"):
        prepare_dataset(
            "busi", {"source": "busi", "checksum": sha256(archive)}, archive, parent / "busi"
        )
    assert list(parent.iterdir()) == []


def test_archive_caps_come_from_the_entry_and_are_named(tmp_path):
    archive = make_busi_zip(tmp_path / "Dataset_BUSI.zip")
    entry = {"source": "busi", "checksum": sha256(archive), "extract_max_members": 5, **SMALL}
    parent = tmp_path / "datasets"
    with pytest.raises(ArchiveLimitError, match=r"datasets.busi.extract_max_members = 5"):
        prepare_dataset("busi", entry, archive, parent / "busi")
    assert list(parent.iterdir()) == []
    entry["extract_max_members"] = 50
    prepare_dataset("busi", entry, archive, parent / "busi")
    assert sorted(p.name for p in parent.iterdir()) == ["busi"]


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"source": "nope"}, "unknown dataset source 'nope'; allowed: busi, glas"),
        (
            {"source": "busi", "variant": "3d"},
            r"variant: got '3d'; allowed: 2d \(for source busi\)",
        ),
        ({"source": "busi", "colour": 1}, "unknown key.*colour"),
        ({"source": "busi", "classes": ["tumour"]}, "classes.*benign, malignant, normal"),
        ({"source": "glas", "gray": "red"}, "gray.*luminance, mean"),
        ({"source": "msd_spleen", "window": [300, -200]}, "window.*low < high"),
        ({"source": "msd_spleen", "normalize": "zscore"}, "normalize.*auto, window, percentile"),
        ({"source": "msd_spleen", "checksum_algorithm": "crc"}, "checksum_algorithm.*md5, sha256"),
        ({"source": "msd_import"}, "needs 'path'"),
        ({"source": "busi", "extract_max_ratio": 0.5}, r"mine.extract_max_ratio: got 0.5.*>= 1"),
        ({"source": "busi", "extract_max_members": 1.5}, "extract_max_members.*integer >= 1"),
        ({"source": "busi", "extract_max_gb": 0}, r"extract_max_gb: got 0; allowed: a number > 0"),
    ],
)
def test_bad_config_entries_are_named(entry, message):
    with pytest.raises((DataError, UnknownNameError), match=message):
        parse_entry("mine", entry)


def test_download_settings_apply_agreeing_overrides_and_refuse_conflicts():
    from segrobust.data.sources import download_settings

    plain = download_settings("msd_spleen", {})
    assert plain["checksum"] == "410d4a301da4e5b2f6f86ec3ddba524e" and plain["algorithm"] == "md5"
    datasets = {
        "a": {"source": "glas", "url": "http://mirror/g.zip", "checksum": "ab"},
        "b": {"source": "glas", "checksum": "ab", "variant": "2d"},
        "c": {"source": "busi", "checksum": "zz"},
    }
    merged = download_settings("glas", datasets)
    assert merged["url"] == "http://mirror/g.zip" and merged["checksum"] == "ab"
    datasets["b"]["checksum"] = "cd"
    with pytest.raises(ValueError, match="datasets.b.checksum = 'cd' conflicts with datasets.a"):
        download_settings("glas", datasets)
