"""Issue 11, case 5: archives that unpack far beyond their size (zip bombs) or hold absurd
numbers of members are refused with the figures, the cap and the config key that raises it,
before or while writing, and leave nothing behind."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile

import pytest
from sandbox import make_sandbox

from segrobust.data.extract import ArchiveLimitError, ExtractLimits, safe_extract
from segrobust.data.prepare import prepare_dataset

GIB = 1 << 30


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """About 1 MB of zip unpacking to 1 GiB of zeros, in BUSI's layout (built once: ~2 s)."""
    path = tmp_path_factory.mktemp("bomb") / "Dataset_BUSI.zip"
    block = bytes(1 << 24)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("Dataset_BUSI_with_GT/benign/benign (1).png", b"\x89PNG")
        with zf.open("Dataset_BUSI_with_GT/benign/zeros.png", "w", force_zip64=True) as f:
            for _ in range(GIB // len(block)):
                f.write(block)
    assert path.stat().st_size < 2_000_000
    return path


def _check_figures(message, archive, key, cap):
    assert str(archive) in message and "refusing to extract the archive" in message
    assert "members" in message and "bytes written from a" in message
    assert f"{key} = {cap}" in message and "nothing was extracted" in message


def test_zip_bomb_is_refused_by_safe_extract(tmp_path, zip_bomb):
    sandbox = make_sandbox(tmp_path)
    before = sandbox.snapshot()
    with pytest.raises(ArchiveLimitError) as err:
        safe_extract(zip_bomb, sandbox.target)
    message = str(err.value)
    _check_figures(message, zip_bomb, "datasets.<name>.extract_max_ratio", 20)
    assert f"declare {GIB + 4} bytes, a compression ratio of" in message
    sandbox.assert_untouched(before)


def test_zip_bomb_is_refused_by_prepare_dataset_with_pinned_checksum(tmp_path, zip_bomb):
    sandbox = make_sandbox(tmp_path)
    entry = {"source": "busi", "checksum": hashlib.sha256(zip_bomb.read_bytes()).hexdigest()}
    before = sandbox.snapshot()
    with pytest.raises(ArchiveLimitError) as err:
        prepare_dataset("busi", entry, zip_bomb, sandbox.target)
    _check_figures(str(err.value), zip_bomb, "datasets.busi.extract_max_ratio", 20)
    sandbox.assert_untouched(before)
    # a raised ratio cap meets the byte cap instead, named with its own key
    entry.update(extract_max_ratio=5000, extract_max_gb=0.5)
    with pytest.raises(ArchiveLimitError) as err:
        prepare_dataset("busi", entry, zip_bomb, sandbox.target)
    _check_figures(str(err.value), zip_bomb, "datasets.busi.extract_max_gb", 0.5)
    assert "declare more than 500000000 bytes" in str(err.value)
    sandbox.assert_untouched(before)


def test_tar_gz_bomb_is_refused(tmp_path):
    sandbox = make_sandbox(tmp_path)
    archive = sandbox.root / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("Task09_Spleen/imagesTr/zeros.nii")
        info.size = 1 << 28
        with open("/dev/zero", "rb") as zeros:
            tf.addfile(info, zeros)
    before = sandbox.snapshot()
    with pytest.raises(ArchiveLimitError) as err:
        safe_extract(archive, sandbox.target, limits=ExtractLimits(key_prefix="datasets.x."))
    _check_figures(str(err.value), archive, "datasets.x.extract_max_ratio", 20)
    sandbox.assert_untouched(before)


def test_too_many_members_are_refused_before_anything_is_written(tmp_path):
    sandbox = make_sandbox(tmp_path)
    archive = sandbox.root / "many.tar"
    with tarfile.open(archive, "w") as tf:
        for i in range(ExtractLimits().max_members + 1):
            tf.addfile(tarfile.TarInfo(f"d/f{i}"))
    before = sandbox.snapshot()
    with pytest.raises(ArchiveLimitError) as err:
        safe_extract(archive, sandbox.target)
    message = str(err.value)
    assert "it has more than 20000 members" in message
    _check_figures(message, archive, "datasets.<name>.extract_max_members", 20000)
    sandbox.assert_untouched(before)
