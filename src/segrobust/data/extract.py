"""Safe extraction of downloaded archives (.tar, .tar.gz, .zip).

Every member is checked before anything is written, and the whole archive is refused -- naming
the member -- if one member could write outside the target (absolute path, ``..`` component, a
link pointing outside) or is a device or fifo. Extraction then goes into a temporary sibling
directory that is renamed into place, so a failure leaves nothing behind.

tarfile's ``filter="data"`` (Python 3.12, backported to 3.11.4) enforces similar rules during
extraction and is used as a second line of defence; it raises on the first bad member only
after earlier members were written, hence the pre-scan. zipfile has no such filter: zip members
are checked here, and link or special-file entries (which zipfile would silently write as
regular files) are refused.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from segrobust.data.dataset import DataError

_LOG = logging.getLogger(__name__)
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


class UnsafeArchiveError(DataError):
    """An archive with a member that could escape the target directory or is a special file."""


def _path_problem(name: str) -> str | None:
    """Why a member path is unsafe, or None."""
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return "has an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "has a '..' path component"
    return None


def _link_problem(member_dir: str, link_target: str) -> str | None:
    """Why a link target (relative to ``member_dir`` inside the archive) escapes, or None."""
    if PurePosixPath(link_target).is_absolute() or PureWindowsPath(link_target).anchor:
        return f"is a link to the absolute path {link_target!r}"
    resolved = posixpath.normpath(posixpath.join(member_dir, link_target))
    if resolved == ".." or resolved.startswith("../"):
        return f"is a link pointing outside the target directory ({link_target!r})"
    return None


def _tar_problem(member: tarfile.TarInfo) -> str | None:
    problem = _path_problem(member.name)
    if problem:
        return problem
    if member.isdev():
        return "is a device or fifo file"
    if member.issym():
        return _link_problem(posixpath.dirname(member.name), member.linkname)
    if member.islnk():
        return _link_problem("", member.linkname)
    if not (member.isfile() or member.isdir()):
        return f"has an unsupported member type {member.type!r}"
    return None


def _zip_problem(info: zipfile.ZipInfo) -> str | None:
    problem = _path_problem(info.filename)
    if problem:
        return problem
    # Unix file-type bits, where the archiver recorded them (many write only permissions).
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return "is a symlink or special file (not supported in zip archives)"
    return None


def archive_kind(archive: str | os.PathLike) -> str:
    """``tar`` or ``zip`` from the file name, or an error naming the allowed suffixes."""
    name = Path(archive).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    raise DataError(f"{archive}: unknown archive type; allowed: {', '.join(ARCHIVE_SUFFIXES)}")


def check_members(archive: str | os.PathLike) -> int:
    """Scan every member; raise :class:`UnsafeArchiveError` on the first unsafe one.

    Returns the number of members.
    """
    archive = Path(archive)
    try:
        if archive_kind(archive) == "tar":
            with tarfile.open(archive) as tf:
                members = [(m.name, _tar_problem(m)) for m in tf.getmembers()]
        else:
            with zipfile.ZipFile(archive) as zf:
                members = [(i.filename, _zip_problem(i)) for i in zf.infolist()]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{archive}: not a readable archive ({exc})") from exc
    for name, problem in members:
        if problem:
            raise UnsafeArchiveError(
                f"{archive}: refusing to extract the archive: member {name!r} {problem}; "
                "nothing was extracted"
            )
    return len(members)


def safe_extract(
    archive: str | os.PathLike, target_dir: str | os.PathLike, log: logging.Logger = _LOG
) -> Path:
    """Extract ``archive`` into ``target_dir`` after checking every member; atomic.

    ``target_dir`` is replaced if it exists. On any error it is left as it was and no temporary
    directory remains.
    """
    archive, target = Path(archive), Path(target_dir)
    n = check_members(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        if archive_kind(archive) == "tar":
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        else:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("extracted %d members of %s into %s", n, archive, target)
    return target
