"""Safe extraction: a harmless archive extracts atomically with the umask's permissions; every
unsafe member refuses the whole archive, names the member, and leaves nothing behind; caps stop
archives that unpack too far; damaged archives are named."""

import io
import os
import stat
import tarfile
import zipfile

import pytest
from archives import (
    make_busi_zip,
    make_malicious_tar,
    make_malicious_zip,
    make_msd_tar,
    mark_zip_encrypted,
    write_tar,
)

from segrobust.data.dataset import DataError
from segrobust.data.extract import (
    ArchiveLimitError,
    ExtractLimits,
    StagingTree,
    UnreadableArchiveError,
    UnsafeArchiveError,
    check_archive,
    name_problem,
    safe_extract,
)


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_tar_extracts_into_place(tmp_path):
    archive = make_msd_tar(tmp_path / "Task09_Spleen.tar", tmp_path / "src", n_cases=2)
    target = tmp_path / "out" / "raw"
    safe_extract(archive, target)
    assert (target / "Task09_Spleen" / "dataset.json").is_file()
    original = tmp_path / "src" / "Task09_Spleen" / "imagesTr" / "spleen_1.nii.gz"
    extracted = target / "Task09_Spleen" / "imagesTr" / "spleen_1.nii.gz"
    assert extracted.read_bytes() == original.read_bytes()
    assert _leftovers(target.parent) == ["raw"]


def test_compressed_tar_extracts(tmp_path):
    archive = write_tar(
        tmp_path / "a.tar.gz", [("top/x.txt", "file", b"abc" * 100, "")], mode="w:gz"
    )
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "x.txt").read_bytes() == b"abc" * 100


def test_zip_extracts_and_replaces_an_old_target(tmp_path):
    archive = make_busi_zip(tmp_path / "Dataset_BUSI.zip")
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    safe_extract(archive, target)
    assert (target / "Dataset_BUSI_with_GT" / "benign" / "benign (1).png").is_file()
    assert not (target / "stale.txt").exists()


def test_permissions_follow_the_umask_not_the_archive(tmp_path, umask_027):
    archive = tmp_path / "modes.tar"
    with tarfile.open(archive, "w") as tf:
        d = tarfile.TarInfo("d")
        d.type, d.mode = tarfile.DIRTYPE, 0o777
        f = tarfile.TarInfo("d/f.txt")
        f.size, f.mode = 1, 0o4777  # setuid and world-writable in the archive
        tf.addfile(d)
        tf.addfile(f, io.BytesIO(b"x"))
    target = safe_extract(archive, tmp_path / "out")
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert stat.S_IMODE((target / "d").stat().st_mode) == 0o750
    assert stat.S_IMODE((target / "d" / "f.txt").stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "kind, member, reason",
    [
        ("dotdot", "data/../../evil.txt", "'..' path component"),
        ("absolute", "/tmp/evil.txt", "absolute path"),
        ("symlink", "data/bad", "is a symbolic link (to '../../etc/passwd')"),
        ("hardlink", "data/bad", "is a hard link (to '../outside.txt')"),
        ("device", "data/bad", "is a device file"),
        ("fifo", "data/bad", "is a fifo"),
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
    assert "nothing was extracted" in msg
    assert _leftovers(parent) == []  # not even the harmless first member
    assert not (tmp_path / "evil.txt").exists()


def test_every_link_is_refused_even_one_pointing_inside(tmp_path):
    archive = write_tar(
        tmp_path / "ok.tar",
        [("data/file.txt", "file", b"x", ""), ("data/sub/link", "symlink", b"", "../file.txt")],
    )
    with pytest.raises(UnsafeArchiveError, match=r"'data/sub/link' is a symbolic link.*no links"):
        safe_extract(archive, tmp_path / "out")
    assert _leftovers(tmp_path) == ["ok.tar"]


@pytest.mark.parametrize(
    "kind, member, reason",
    [
        ("dotdot", "data/../../evil.txt", "'..' path component"),
        ("absolute", "/tmp/evil.txt", "absolute path"),
        ("symlink", "data/link", "is a symbolic link"),
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


def test_encrypted_and_special_zip_entries_are_refused(tmp_path):
    for name, attr, reason in [
        ("secret.txt", 0o100644, "is encrypted"),
        ("pipe", 0o010644, "is a device, fifo or other special file"),
        ("dev", 0o020644, "is a device, fifo or other special file"),
    ]:
        archive = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            info = zipfile.ZipInfo(name)
            info.external_attr = attr << 16
            zf.writestr(info, b"data")
        if reason == "is encrypted":
            mark_zip_encrypted(archive)
        with pytest.raises(UnsafeArchiveError, match=f"member {name!r} {reason}"):
            safe_extract(archive, tmp_path / "out")
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, reason",
    [
        ("", "empty name"),
        (".", None),  # the archive's root directory entry: allowed, creates nothing
        ("a/./b", None),
        ("C:/x", "drive letter"),
        ("c:x", "drive letter"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("/abs", "absolute"),
        ("x" * 256, "longer than 255 bytes"),
        ("é" * 128, "longer than 255 bytes"),  # 256 bytes in UTF-8
        ("/".join(["y" * 200] * 6), "path longer than 1024 bytes"),
        ("データ/画像.png", None),
    ],
)
def test_name_rules(name, reason):
    problem = name_problem(name)
    assert (problem is None) if reason is None else (reason in problem)


def test_duplicate_and_conflicting_members_are_refused(tmp_path):
    cases = [
        ([("a.txt", "file", b"1", ""), ("a.txt", "file", b"2", "")], "'a.txt' has the same path"),
        ([("a", "file", b"1", ""), ("a/b.txt", "file", b"2", "")], "'a/b.txt' lies below 'a'"),
        ([("a/b.txt", "file", b"1", ""), ("a", "file", b"2", "")], "'a' has the same path"),
        ([("./a.txt", "file", b"1", ""), ("a.txt", "file", b"2", "")], "'a.txt' has the same"),
    ]
    for i, (entries, message) in enumerate(cases):
        archive = write_tar(tmp_path / f"dup{i}.tar", entries)
        with pytest.raises(UnsafeArchiveError, match=message):
            safe_extract(archive, tmp_path / "out")
        assert not (tmp_path / "out").exists()
    # A directory listed twice is harmless.
    archive = write_tar(
        tmp_path / "dirs.tar",
        [("d", "dir", b"", ""), ("d", "dir", b"", ""), ("d/f", "file", b"", "")],
    )
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "f").is_file()


def test_staging_tree_refuses_a_symlink_or_file_already_on_disk(tmp_path):
    """Defence in depth: whatever put a link into the staging directory, nothing is written
    through it, and no existing file is opened."""
    root = tmp_path / "staging"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file").write_text("keep")
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    with StagingTree(root, tmp_path / "x.tar") as tree:
        with pytest.raises(UnsafeArchiveError, match="'link/f.txt' leads through 'link', a sym"):
            tree.create_file(("link", "f.txt"), "link/f.txt")
        with pytest.raises(UnsafeArchiveError, match="'file/f.txt' leads through 'file', which"):
            tree.create_file(("file", "f.txt"), "file/f.txt")
        with pytest.raises(UnsafeArchiveError, match="'file' collides"):
            tree.create_file(("file",), "file")
        with pytest.raises(UnsafeArchiveError, match="'link' collides"):
            tree.create_file(("link",), "link")
        with pytest.raises(UnsafeArchiveError, match="'dirlink' leads through 'dirlink', a sym"):
            tree.make_dir(("dirlink",), "dirlink")
        fd = tree.create_file(("new", "deep", "f.txt"), "new/deep/f.txt")
        os.close(fd)
    assert list(outside.iterdir()) == []
    assert (root / "file").read_text() == "keep"
    assert (root / "new" / "deep" / "f.txt").is_file()


def _zip_of_zeros(path, n_members, size):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(n_members):
            zf.writestr(f"z{i}.bin", b"\0" * size)
    return path


def test_compression_ratio_cap_names_figures_and_key(tmp_path):
    archive = _zip_of_zeros(tmp_path / "bomb.zip", 1, 4_000_000)  # ratio ~1000
    with pytest.raises(ArchiveLimitError) as err:
        safe_extract(archive, tmp_path / "out", limits=ExtractLimits(key_prefix="datasets.b."))
    msg = str(err.value)
    assert "compression ratio of" in msg and "(over 20)" in msg
    assert "datasets.b.extract_max_ratio = 20" in msg
    assert "bomb.zip" in msg and "4000000 bytes" in msg
    assert not (tmp_path / "out").exists()
    # Raised cap: extracted.
    safe_extract(archive, tmp_path / "out", limits=ExtractLimits(max_ratio=5000))
    assert (tmp_path / "out" / "z0.bin").stat().st_size == 4_000_000


def test_byte_and_member_caps(tmp_path):
    archive = write_tar(tmp_path / "a.tar", [(f"f{i}", "file", b"x" * 1000, "") for i in range(5)])
    with pytest.raises(ArchiveLimitError, match=r"more than 4 members.*extract_max_members = 4"):
        safe_extract(archive, tmp_path / "out", limits=ExtractLimits(max_members=4))
    with pytest.raises(
        ArchiveLimitError, match=r"declare more than 3000 bytes.*extract_max_gb = 3e-06"
    ):
        safe_extract(archive, tmp_path / "out", limits=ExtractLimits(max_bytes=3000))
    assert not (tmp_path / "out").exists()


def test_written_bytes_are_counted_not_the_declared_sizes(tmp_path, monkeypatch):
    """Headers that under-declare their members' sizes do not get past the byte cap."""
    from segrobust.data import extract

    archive = _zip_of_zeros(tmp_path / "liar.zip", 3, 2000)
    honest = extract._Reader.headers

    def lying(self):
        for name, kind, _size, handle in honest(self):
            yield name, kind, 1, handle

    monkeypatch.setattr(extract._Reader, "headers", lying)
    with pytest.raises(ArchiveLimitError, match="unpack to more than 5000 bytes"):
        safe_extract(archive, tmp_path / "out", limits=ExtractLimits(max_bytes=5000))
    assert not (tmp_path / "out").exists()


def test_truncated_tar_is_unreadable_even_at_a_member_boundary(tmp_path):
    archive = write_tar(tmp_path / "t.tar", [("a", "file", b"x" * 512, ""), ("b", "file", b"y")])
    data = archive.read_bytes()
    for cut, name in [(1024, "cut_at_boundary.tar"), (700, "cut_in_data.tar"), (1300, "hdr.tar")]:
        broken = tmp_path / name
        broken.write_bytes(data[:cut])
        with pytest.raises(UnreadableArchiveError, match=f"{name}: not a readable archive"):
            safe_extract(broken, tmp_path / "out")
        with pytest.raises(UnreadableArchiveError):
            check_archive(broken)
        assert not (tmp_path / "out").exists()
    assert check_archive(archive).bytes == 513


def test_zip_crc_failure_is_named(tmp_path):
    archive = tmp_path / "crc.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/b.txt", b"hello world" * 10)
    data = bytearray(archive.read_bytes())
    data[data.index(b"hello") + 3] ^= 0xFF  # stored data, flip one byte
    archive.write_bytes(bytes(data))
    with pytest.raises(UnreadableArchiveError, match=r"member 'a/b.txt'.*CRC"):
        check_archive(archive)
    with pytest.raises(UnreadableArchiveError, match=r"member 'a/b.txt'.*CRC"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


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
