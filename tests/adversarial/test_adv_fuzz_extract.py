"""Seeded, bounded fuzzing of the extractor (issue 11): random tar and zip archives with hostile
member names (``..``, absolute, backslashes, drive letters, NUL, unicode, very long,
duplicates), link targets and member types (file, directory, symlink, hardlink, fifo, device).

For every archive, whatever it holds: nothing anywhere in the sandbox around the target changes
(snapshot of the whole tree before and after); an archive that is refused raises
``UnsafeArchiveError`` / ``DataError`` naming one of its members and leaves no target; one that
is accepted leaves exactly its file and directory members below the target, byte for byte, and
nothing else (no link, no special file).

Absolute names and link targets point into the sandbox only, so that even a broken extractor
could not touch the rest of the machine, and a write there would show in the snapshot.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import stat
import tarfile
import warnings
import zipfile
from pathlib import Path

from sandbox import make_sandbox

from segrobust.data.dataset import DataError
from segrobust.data.extract import member_parts, safe_extract

SEED = 20250611
N_ARCHIVES = 5000  # ~15 s on one core
TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
}
ZIP_MODES = {
    "file": 0o100644,
    "dir": 0o040755,
    "symlink": 0o120777,
    "fifo": 0o010644,
    "chr": 0o020644,
    "blk": 0o060644,
}


def _component(rng: random.Random, root: Path) -> str:
    """One path component: mostly plain, often hostile."""
    return rng.choice(
        [
            "a", "b", "data", "imagesTr", "x.nii.gz", "..", ".", "", "...", " ", "C:", "c:x",
            "a\\..\\..", "..\\b", "\x00", "n\x00ul", "é", "数据", "Ω.png", "a\nb", "~", "$HOME",
            "x" * rng.choice((100, 255, 256, 300)), "é" * 128, "-", "link",
        ]
    )  # fmt: skip


def _name(rng: random.Random, root: Path, previous: list[str]) -> str:
    """A member name: reused (a duplicate), absolute into the sandbox, or 1-5 components."""
    roll = rng.random()
    if previous and roll < 0.15:
        return rng.choice(previous)
    if roll < 0.22:
        return str(root / rng.choice(["sentinel.txt", "new.txt", "l1/sentinel.txt"]))
    parts = [_component(rng, root) for _ in range(rng.randint(1, 5))]
    if rng.random() < 0.1:
        parts = [".."] * rng.randint(1, 8) + parts  # at most 8 up: still inside the sandbox
    if rng.random() < 0.05:
        parts = ["y" * 200] * 6  # over 1024 bytes in all
    name = "/".join(parts)
    return rng.choice(["", "./", "/"]) * (rng.random() < 0.15) + name


def _link_target(rng: random.Random, root: Path, previous: list[str]) -> str:
    return rng.choice(
        [
            "..", "../..", "../" * rng.randint(1, 8), "a/../../..", str(root),
            str(root / "sentinel.txt"), "sub/../../sentinel.txt", "x", "",
            rng.choice(previous) if previous else "a",
        ]
    )  # fmt: skip


def _members(rng: random.Random, root: Path, kinds: list[str]) -> list[tuple]:
    """1-6 ``(name, kind, data, link)`` members; a third of the archives are all benign."""
    benign = rng.random() < 0.33
    members: list[tuple] = []
    for _ in range(rng.randint(1, 6)):
        names = [m[0] for m in members]
        if benign:  # odd but harmless: dots, spaces, unicode, 255-byte components, "./"
            odd = ["a", "b", "é", "数据", "...", " x ", ".", "", "x" * 255, "é" * 127, "a b"]
            name = "/".join(rng.choice(odd) for _ in range(rng.randint(1, 3))) or "a"
            kind = rng.choice(["file", "dir"])
        else:
            name = _name(rng, root, names)
            kind = rng.choices(kinds, weights=[4 if k == "file" else 1 for k in kinds])[0]
        data = rng.randbytes(rng.randint(0, 64)) if kind == "file" else b""
        link = _link_target(rng, root, names) if kind in ("symlink", "hardlink") else ""
        members.append((name, kind, data, link))
    return members


def _write_tar(path: Path, members: list[tuple]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = TAR_TYPES[kind], link, len(data)
            tf.addfile(info, io.BytesIO(data) if kind == "file" else None)


def _write_zip(path: Path, members: list[tuple]) -> None:
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point
        for name, kind, data, link in members:
            if kind == "dir" and not name.endswith("/"):
                name += "/"
            info = zipfile.ZipInfo(name)
            info.external_attr = ZIP_MODES[kind] << 16
            zf.writestr(info, link.encode() if kind == "symlink" else data)


def _stored_names(members: list[tuple]) -> set[str]:
    """The names a member may carry once stored: as given, cut at NUL (zip and ustar headers),
    with a "/" added (zip directories) or trailing ones stripped (tar directories)."""
    names = set()
    for name, *_ in members:
        for variant in (name, name.split("\x00")[0]):
            names.update((variant, variant + "/", variant.rstrip("/")))
    return names


def _tree(target: Path) -> tuple[dict[tuple, bytes], set[tuple]]:
    """Files (with contents) and directories below ``target``; fails on anything else."""
    files, dirs = {}, set()
    for folder, subdirs, names in os.walk(target):
        here = Path(folder)
        for name in subdirs + names:
            path = here / name
            mode = path.lstat().st_mode
            rel = path.relative_to(target).parts
            assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), f"{path} is neither file nor dir"
            if stat.S_ISREG(mode):
                files[rel] = path.read_bytes()
            else:
                dirs.add(rel)
    return files, dirs


def _expected(members: list[tuple], kind: str) -> tuple[dict[tuple, bytes], set[tuple]]:
    """What an accepted archive must leave: its files (with contents) and directories."""
    files, dirs = {}, set()
    for name, member_kind, data, _ in members:
        name = name.split("\x00")[0]  # zip and ustar headers end a name at NUL
        parts = member_parts(name)
        if kind == "zip" and name.endswith("/"):
            member_kind = "dir"  # a zip entry whose name ends in "/" is a directory
        if member_kind == "file":
            files[parts] = data
        elif parts:
            dirs.add(parts)
        dirs.update(parts[:i] for i in range(1, len(parts)))
    return files, dirs


def test_fuzzed_archives_never_write_outside_the_target(tmp_path):
    rng = random.Random(SEED)
    outcomes = {"extracted": 0, "refused": 0}
    sandbox = make_sandbox(tmp_path, depth=8)  # 9 levels above the staging dir: ".." x 8 stays in
    target = str(sandbox.target.relative_to(sandbox.root))
    for i in range(N_ARCHIVES):
        kind = "tar" if i % 2 == 0 else "zip"
        kinds = list(TAR_TYPES if kind == "tar" else ZIP_MODES)
        members = _members(rng, sandbox.root, kinds)
        archive = sandbox.root / f"fuzz.{kind}"
        (_write_tar if kind == "tar" else _write_zip)(archive, members)
        before = sandbox.snapshot()
        try:
            safe_extract(archive, sandbox.target)
        except (DataError, ValueError) as exc:  # UnsafeArchiveError is a DataError
            assert isinstance(exc, DataError), (i, members, exc)
            named = _stored_names(members)
            assert any(f"member {n!r}" in str(exc) for n in named), (i, members, str(exc))
            sandbox.assert_untouched(before)
            outcomes["refused"] += 1
        else:
            after = sandbox.snapshot()
            changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
            assert all(k == target or k.startswith(target + os.sep) for k in changed), (i, changed)
            assert _tree(sandbox.target) == _expected(members, kind), (i, members)
            shutil.rmtree(sandbox.target)
            outcomes["extracted"] += 1
        archive.unlink()
    # the generator exercises both outcomes in earnest
    assert outcomes["extracted"] > N_ARCHIVES // 5 and outcomes["refused"] > N_ARCHIVES // 3
