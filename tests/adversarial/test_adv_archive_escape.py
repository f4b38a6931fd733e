"""Issue 11, case 1: an archive must never write outside its target.

Each hostile archive is built here (no network) and run through ``safe_extract`` directly and
through ``prepare_dataset`` with a pinned checksum (the archive is "genuine" as far as the
checksum goes). Every one must be refused naming the archive and the member, leave every
sentinel file around the target as it was, create nothing anywhere in the tree (no target, no
staging directory) and keep the archive itself as evidence.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path

import pytest
from archives import symlink_chain_entries, write_tar
from sandbox import PAYLOAD, make_sandbox

from segrobust.data.extract import UnsafeArchiveError, safe_extract
from segrobust.data.prepare import prepare_dataset

HARMLESS = ("Task09_Spleen/dataset.json", "file", b"{}")


def _tar_variants(root):
    """name -> (entries, refused member, reason); ``root`` is the sandbox root (absolute links)."""
    sentinel = str(root / "sentinel.txt")
    return {
        # CVE-2025-4517: escapes tarfile's data filter on this Python (3.11.7) four levels up.
        "symlink_chain": (symlink_chain_entries(4, "sentinel.txt", PAYLOAD), "a", "symbolic link"),
        "hardlink_outside": (
            [("h", "hardlink", b"", "../../../../sentinel.txt"), ("h", "file", PAYLOAD)],
            "h",
            "hard link",
        ),
        "hardlink_through_symlink": (
            [
                ("s", "symlink", b"", "../../../.."),
                ("h", "hardlink", b"", "s/sentinel.txt"),
                ("h", "file", PAYLOAD),
            ],
            "s",
            "symbolic link",
        ),
        "symlink_then_file_of_same_name": (
            [("x", "symlink", b"", "../../../sentinel.txt"), ("x", "file", PAYLOAD)],
            "x",
            "symbolic link",
        ),
        "directory_replaced_by_link": (
            [("d", "dir"), ("d", "symlink", b"", "../../.."), ("d/sentinel.txt", "file", PAYLOAD)],
            "d",
            "symbolic link",
        ),
        "dotdot_inside_link_target": (
            [
                ("sub", "dir"),
                ("sub/l", "symlink", b"", "../x/../../../../.."),
                ("sub/l/sentinel.txt", "file", PAYLOAD),
            ],
            "sub/l",
            "symbolic link",
        ),
        "absolute_symlink": (
            [("abs", "symlink", b"", str(root)), ("abs/sentinel.txt", "file", PAYLOAD)],
            "abs",
            "symbolic link",
        ),
        "absolute_hardlink": (
            [("h", "hardlink", b"", sentinel), ("h", "file", PAYLOAD)],
            "h",
            "hard link",
        ),
        "dotdot_member": ([("a/../../../../sentinel.txt", "file", PAYLOAD)], None, "'..'"),
        "absolute_member": ([(sentinel, "file", PAYLOAD)], None, "absolute path"),
    }


def _zip(path, entries):
    """A zip of ``(name, data, unix mode)`` entries."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def _zip_variants(root):
    return {
        "symlink_then_file_through_it": (
            [
                ("link", b"../../../..", 0o120777),
                ("link/sentinel.txt", PAYLOAD, 0o100644),
            ],
            "link",
            "symbolic link",
        ),
        "dotdot_member": ([("../../../../sentinel.txt", PAYLOAD, 0o100644)], None, "'..'"),
        "absolute_member": (
            [(str(root / "sentinel.txt"), PAYLOAD, 0o100644)],
            None,
            "absolute path",
        ),
        "backslash_traversal": (
            [("..\\..\\..\\sentinel.txt", PAYLOAD, 0o100644)],
            None,
            "backslash",
        ),
    }


TAR_NAMES = list(_tar_variants(Path("/unused")))
ZIP_NAMES = list(_zip_variants(Path("/unused")))


def _build(kind, variant, sandbox, directory):
    """The hostile archive (a harmless member first), the member refused and the reason."""
    if kind == "tar":
        entries, member, reason = _tar_variants(sandbox.root)[variant]
        archive = write_tar(directory / "Task09_Spleen.tar", [HARMLESS, *entries])
        first = entries[0][0]
    else:
        entries, member, reason = _zip_variants(sandbox.root)[variant]
        archive = _zip(directory / "Dataset_BUSI.zip", [(HARMLESS[0], b"{}", 0o100644), *entries])
        first = entries[0][0]
    return archive, member if member is not None else first, reason


def _assert_refused(err, archive, member, reason):
    message = str(err.value)
    assert str(archive) in message and f"member {member!r}" in message and reason in message
    assert "nothing was extracted" in message


@pytest.mark.parametrize(
    "kind, variant", [("tar", v) for v in TAR_NAMES] + [("zip", v) for v in ZIP_NAMES]
)
def test_hostile_archive_refused_by_safe_extract(tmp_path, kind, variant):
    sandbox = make_sandbox(tmp_path)
    archive, member, reason = _build(kind, variant, sandbox, sandbox.target.parent)
    before = sandbox.snapshot()
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, sandbox.target)
    _assert_refused(err, archive, member, reason)
    sandbox.assert_untouched(before)  # the archive is part of the snapshot: kept as evidence


@pytest.mark.parametrize(
    "kind, variant", [("tar", v) for v in TAR_NAMES] + [("zip", v) for v in ZIP_NAMES]
)
def test_hostile_archive_refused_by_prepare_dataset_with_pinned_checksum(tmp_path, kind, variant):
    sandbox = make_sandbox(tmp_path)
    downloads = sandbox.root / "l1" / "l2" / "downloads"
    downloads.mkdir()
    archive, member, reason = _build(kind, variant, sandbox, downloads)
    data = archive.read_bytes()
    if kind == "tar":
        entry = {"source": "msd_spleen", "checksum": hashlib.md5(data).hexdigest()}
    else:
        entry = {"source": "busi", "checksum": hashlib.sha256(data).hexdigest()}
    before = sandbox.snapshot()
    with pytest.raises(UnsafeArchiveError) as err:
        prepare_dataset("hostile", entry, archive, sandbox.target)
    _assert_refused(err, archive, member, reason)
    sandbox.assert_untouched(before)


def test_the_symlink_chain_really_escapes_tarfiles_own_filter_where_python_is_unpatched(tmp_path):
    """The chain archive is a working exploit, not a strawman: on a Python whose tarfile data
    filter has the CVE-2025-4517 flaw it writes the sentinel four levels up; on a patched one
    the filter refuses it. Either way ``safe_extract`` never gets as far as either."""
    sandbox = make_sandbox(tmp_path)
    archive = write_tar(tmp_path / "chain.tar", symlink_chain_entries(4, "sentinel.txt", PAYLOAD))
    target = sandbox.root / "l1" / "l2" / "l3" / "l4" / "l5"
    scratch = target / "scratch"
    scratch.mkdir()
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(scratch, filter="data")
    except tarfile.FilterError:
        outcome = "refused by the filter"
    else:
        outcome = "escaped"
    escaped_to = sandbox.root / "l1" / "l2" / "sentinel.txt"  # four levels above scratch
    assert (escaped_to.read_bytes() == PAYLOAD) == (outcome == "escaped")
