"""Safe extraction: a harmless archive extracts atomically; unsafe members refuse the whole
archive, name the member, and leave nothing behind."""

import tarfile

import pytest
from archives import make_busi_zip, make_malicious_tar, make_malicious_zip, make_msd_tar

from segrobust.data.dataset import DataError
from segrobust.data.extract import UnsafeArchiveError, safe_extract


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


def test_tar_extracts_into_place(tmp_path):
    archive = make_msd_tar(tmp_path / "Task09_Spleen.tar", tmp_path / "src", n_cases=2)
    target = tmp_path / "out" / "raw"
    safe_extract(archive, target)
    assert (target / "Task09_Spleen" / "dataset.json").is_file()
    assert _leftovers(target.parent) == ["raw"]


def test_zip_extracts_and_replaces_an_old_target(tmp_path):
    archive = make_busi_zip(tmp_path / "Dataset_BUSI.zip")
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    safe_extract(archive, target)
    assert (target / "Dataset_BUSI_with_GT" / "benign" / "benign (1).png").is_file()
    assert not (target / "stale.txt").exists()


@pytest.mark.parametrize(
    "kind, member, reason",
    [
        ("dotdot", "data/../../evil.txt", "'..' path component"),
        ("absolute", "/tmp/evil.txt", "absolute path"),
        ("symlink", "data/bad", "link pointing outside"),
        ("hardlink", "data/bad", "link pointing outside"),
        ("device", "data/bad", "device or fifo"),
        ("fifo", "data/bad", "device or fifo"),
    ],
)
def test_unsafe_tar_member_refuses_whole_archive(tmp_path, kind, member, reason):
    archive = make_malicious_tar(tmp_path / "evil.tar", kind)
    parent = tmp_path / "datasets"
    parent.mkdir()
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, parent / "spleen")
    msg = str(err.value)
    assert repr(member) in msg and reason in msg and "evil.tar" in msg
    assert _leftovers(parent) == []  # not even the harmless first member
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_inside_the_target_is_allowed(tmp_path):
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("data/sub/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../file.txt"
        f = tarfile.TarInfo("data/file.txt")
        tf.addfile(f)
        tf.addfile(link)
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "data" / "sub" / "link").is_symlink()


@pytest.mark.parametrize(
    "kind, member, reason",
    [
        ("dotdot", "data/../../evil.txt", "'..' path component"),
        ("absolute", "/tmp/evil.txt", "absolute path"),
        ("symlink", "data/link", "symlink or special file"),
    ],
)
def test_unsafe_zip_member_refuses_whole_archive(tmp_path, kind, member, reason):
    archive = make_malicious_zip(tmp_path / "evil.zip", kind)
    parent = tmp_path / "datasets"
    parent.mkdir()
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, parent / "busi")
    assert repr(member) in str(err.value) and reason in str(err.value)
    assert _leftovers(parent) == []


def test_corrupt_and_unknown_archives_are_named(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="broken.zip: not a readable archive"):
        safe_extract(bad, tmp_path / "out")
    odd = tmp_path / "data.rar"
    odd.write_bytes(b"x")
    with pytest.raises(DataError, match=r"allowed: \.tar, \.tar\.gz, \.tgz, \.zip"):
        safe_extract(odd, tmp_path / "out")
    assert not (tmp_path / "out").exists()
