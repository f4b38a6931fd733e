"""Extraction of downloaded dataset archives (.tar, .tar.gz, .tgz, .zip) that cannot escape.

Why not ``tarfile.extractall`` / ``zipfile.extractall``: tarfile's ``filter="data"`` decides
whether a member stays inside the target with ``os.path.realpath``, which on unpatched Pythons
stops resolving symlinks once a path grows past ``PATH_MAX`` (CVE-2025-4517): a chain of
symlinks created by earlier members followed by a file written through them lands anywhere.
zipfile has no filter at all and writes link entries as regular files. So placement is done
here, by construction, whatever the Python version:

1. **Scan** every member header before anything is written and refuse the whole archive --
   naming the member -- for a symlink, hardlink, device, fifo or other special member (the
   supported sources, the MSD tarballs and the BUSI and GlaS zips, hold only files and
   directories), an encrypted zip entry, an unsafe name (absolute, ``..``, a drive letter, a
   backslash, NUL, empty, a component over 255 bytes) or a name that collides with an earlier
   member (a duplicate, or a file where a directory is needed). Caps on the member count and the
   declared sizes are checked here too; a truncated tar (no end-of-archive marker) is refused.
2. **Write** each directory and regular file below a staging directory through directory file
   descriptors, one path component at a time (``openat``-style ``dir_fd`` calls): an existing
   component that is a symlink or not a directory is refused (``O_NOFOLLOW | O_DIRECTORY``),
   files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (never an existing file, never
   through a link), and the bytes are streamed from the member and counted as they are written
   against the size and compression-ratio caps (a header's size is not trusted).
3. The staging directory is renamed into place only when every member was written
   (:func:`segrobust.atomic.atomic_dir`); on any error nothing remains.

tarfile's ``data`` filter, where the Python has it, still checks every tar member as a second
layer. Directory-descriptor calls need a POSIX system (Linux, macOS), as Snakemake clusters are.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from segrobust.atomic import atomic_dir, output_error
from segrobust.data.dataset import DataError

_LOG = logging.getLogger(__name__)
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
CHUNK = 1 << 20
#: Longest path component most file systems accept (NAME_MAX).
MAX_COMPONENT_BYTES = 255
#: Longest member path accepted: far above any dataset's (MSD paths are ~40 bytes), and far
#: enough below PATH_MAX (4096) that the staging directory's own path still fits in front of it.
MAX_MEMBER_PATH_BYTES = 1024
_NO_LINKS = (
    "dataset archives hold only files and directories (the supported sources -- the MSD "
    "tarballs and the BUSI and GlaS zips -- contain no links or special files), so none is "
    "ever extracted"
)
#: Errors the archive readers raise for damaged or truncated data (gzip's BadGzipFile is an
#: OSError, which is why reading and writing are wrapped separately).
_READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    NotImplementedError,  # zipfile: an unsupported compression method
    OSError,
)


class UnsafeArchiveError(DataError):
    """An archive with a member that could escape the target directory or is not a plain file
    or directory; the message names the archive and the member."""


class UnreadableArchiveError(DataError):
    """An archive that cannot be read to its end (truncated, corrupt, failed CRC)."""


class ArchiveLimitError(DataError):
    """An archive over a cap on members, extracted bytes or compression ratio; the message gives
    the figures, the cap and the config key that raises it."""


@dataclass(frozen=True)
class ExtractLimits:
    """Caps on what one archive may unpack to (a zip bomb is refused, not extracted).

    Defaults are sized to the largest supported source with a wide margin: MSD Task09_Spleen is
    a ~1.5 GB tar of .nii.gz files (ratio ~1, ~250 members), BUSI ~1,600 PNGs and GlaS ~330 BMPs
    in zips of ratio ~1-3.

    Attributes:
        max_bytes: bytes written over all members.
        max_members: number of members (directories included).
        max_ratio: bytes written / the archive's size on disk.
        key_prefix: config key prefix named in the error (``datasets.<name>.``).
    """

    max_bytes: int = 8_000_000_000
    max_members: int = 20_000
    max_ratio: float = 20.0
    key_prefix: str = "datasets.<name>."

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], key_prefix: str) -> ExtractLimits:
        """The caps set by a dataset entry's ``extract_max_gb``, ``extract_max_members`` and
        ``extract_max_ratio`` (checked by ``prepare.parse_entry``); defaults for the rest."""
        caps: dict[str, Any] = {"key_prefix": key_prefix}
        if entry.get("extract_max_gb") is not None:
            caps["max_bytes"] = int(entry["extract_max_gb"] * 1e9)
        if entry.get("extract_max_members") is not None:
            caps["max_members"] = int(entry["extract_max_members"])
        if entry.get("extract_max_ratio") is not None:
            caps["max_ratio"] = float(entry["extract_max_ratio"])
        return cls(**caps)


@dataclass(frozen=True)
class Member:
    """One archive member that passed the scan.

    ``parts`` are the path components below the target (``.`` and empty ones dropped); a
    directory member with no parts is the archive's root entry (``./``) and creates nothing.
    """

    name: str
    parts: tuple[str, ...]
    is_dir: bool
    handle: Any


@dataclass(frozen=True)
class ArchiveSummary:
    """What an archive holds: members and bytes (as written or read, not as declared)."""

    members: int
    bytes: int
    archive_bytes: int

    @property
    def ratio(self) -> float:
        return self.bytes / max(self.archive_bytes, 1)


def archive_kind(archive: str | os.PathLike) -> str:
    """``tar`` or ``zip`` from the file name, or an error naming the allowed suffixes."""
    name = Path(archive).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    raise DataError(f"{archive}: unknown archive type; allowed: {', '.join(ARCHIVE_SUFFIXES)}")


# --- names ----------------------------------------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why a member name is unsafe or unusable as a path below the target, or None."""
    if not name:
        return "has an empty name"
    if "\x00" in name:
        return "has a NUL character in its name"
    if "\\" in name:
        return "has a backslash in its name (a Windows path separator; archives use '/')"
    if name.startswith("/"):
        return "has an absolute path"
    if re.match(r"[A-Za-z]:", name):
        return "has a drive letter"
    parts = member_parts(name)
    if ".." in parts:
        return "has a '..' path component"
    try:
        encoded = [os.fsencode(p) for p in parts]
    except UnicodeError:
        return "has a name that cannot be encoded for this file system"
    if any(len(p) > MAX_COMPONENT_BYTES for p in encoded):
        return f"has a path component longer than {MAX_COMPONENT_BYTES} bytes"
    if sum(len(p) + 1 for p in encoded) > MAX_MEMBER_PATH_BYTES:
        return f"has a path longer than {MAX_MEMBER_PATH_BYTES} bytes"
    return None


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of a member name, without empty and ``.`` components."""
    return tuple(p for p in name.split("/") if p not in ("", "."))


# --- reading archives -----------------------------------------------------------------------


def _tar_kind(info: tarfile.TarInfo) -> str:
    """``file``, ``dir``, or a description of a refused member type."""
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return f"is a symbolic link (to {info.linkname!r})"
    if info.islnk():
        return f"is a hard link (to {info.linkname!r})"
    if info.ischr() or info.isblk():
        return "is a device file"
    if info.isfifo():
        return "is a fifo"
    return f"has an unsupported member type {info.type!r}"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    """``file``, ``dir``, or a description of a refused entry."""
    if info.flag_bits & 0x1:
        return "is encrypted (encrypted entries are not supported)"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return "is a device, fifo or other special file"
    if info.filename.endswith("/") or kind == stat.S_IFDIR:
        return "dir"
    return "file"


class _Reader:
    """Uniform access to a tar or zip archive: member headers in order, and member streams."""

    def __init__(self, archive: Path, kind: str | None = None) -> None:
        self.archive = archive
        self.kind = kind or archive_kind(archive)
        try:
            if self.kind == "tar":
                self._tar: tarfile.TarFile | None = tarfile.open(archive, "r:*")
                self._zip: zipfile.ZipFile | None = None
            else:
                self._tar, self._zip = None, zipfile.ZipFile(archive)
        except _READ_ERRORS as exc:
            raise unreadable(archive, exc) from exc

    def close(self) -> None:
        for handle in (self._tar, self._zip):
            if handle is not None:
                handle.close()

    def headers(self) -> Iterator[tuple[str, str, int, Any]]:
        """``(name, kind, declared size, handle)`` of each member, in archive order."""
        try:
            if self._zip is not None:
                for info in self._zip.infolist():
                    yield info.filename, _zip_kind(info), info.file_size, info
                return
            assert self._tar is not None
            for info in self._tar:
                yield info.name, _tar_kind(info), info.size, info
            self._check_tar_end()
        except _READ_ERRORS as exc:
            raise unreadable(self.archive, exc) from exc

    def _check_tar_end(self) -> None:
        """Refuse a tar without its end-of-archive marker: tarfile takes a file cut at a member
        boundary (or inside a header) for a complete archive, and a truncated download looks
        exactly like that."""
        assert self._tar is not None
        fileobj = self._tar.fileobj
        fileobj.seek(self._tar.offset)
        if fileobj.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
            raise tarfile.ReadError(
                f"no end-of-archive marker after byte {self._tar.offset} (truncated?)"
            )

    def open(self, member: Member) -> BinaryIO:
        """A stream of ``member``'s bytes (zip: its CRC is checked when read to the end)."""
        if self._zip is not None:
            return self._zip.open(member.handle)
        assert self._tar is not None
        stream = self._tar.extractfile(member.handle)
        assert stream is not None  # regular files only reach here
        return stream


def unreadable(archive: Path, exc: BaseException, member: str | None = None) -> DataError:
    """An :class:`UnreadableArchiveError` naming the archive (and member) and the cause."""
    where = f" (member {member!r})" if member is not None else ""
    cause = str(exc) or type(exc).__name__
    return UnreadableArchiveError(f"{archive}: not a readable archive{where}: {cause}")


def _refuse(archive: Path, name: str, problem: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: refusing to extract the archive: member {name!r} {problem}; "
        "nothing was extracted"
    )


# --- caps -----------------------------------------------------------------------------------


class _Budget:
    """Counts members and bytes against :class:`ExtractLimits` and refuses past a cap."""

    def __init__(self, archive: Path, limits: ExtractLimits) -> None:
        self.archive, self.limits = archive, limits
        self.archive_bytes = archive.stat().st_size
        self.members = 0
        self.bytes = 0

    def _over(self, what: str, key: str, cap: float) -> ArchiveLimitError:
        return ArchiveLimitError(
            f"{self.archive}: refusing to extract the archive: {what}; so far "
            f"{self.members} members, {self.bytes} bytes written from a {self.archive_bytes}-byte "
            f"archive; the cap is {self.limits.key_prefix}{key} = {cap:g}, raise it if the "
            "archive is trusted; nothing was extracted"
        )

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise self._over(
                f"it has more than {self.limits.max_members} members",
                "extract_max_members",
                self.limits.max_members,
            )

    def check_bytes(self, total: int, what: str) -> None:
        """Refuse when ``total`` bytes (declared or written) pass the size or ratio cap."""
        if total > self.limits.max_bytes:
            raise self._over(
                f"its members {what} more than {self.limits.max_bytes} bytes",
                "extract_max_gb",
                self.limits.max_bytes / 1e9,
            )
        ratio = total / max(self.archive_bytes, 1)
        if ratio > self.limits.max_ratio:
            raise self._over(
                f"its members {what} {total} bytes, a compression ratio of {ratio:.1f} "
                f"(over {self.limits.max_ratio:g})",
                "extract_max_ratio",
                self.limits.max_ratio,
            )

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        self.check_bytes(self.bytes, "unpack to")

    def summary(self) -> ArchiveSummary:
        return ArchiveSummary(self.members, self.bytes, self.archive_bytes)


# --- scan -----------------------------------------------------------------------------------


def _scan(reader: _Reader, budget: _Budget, staging: Path | None) -> list[Member]:
    """Check every member header (step 1 of the module docstring); the members to write."""
    archive = reader.archive
    seen: dict[tuple[str, ...], str] = {}  # path -> "dir" | "file" (parents implied as dirs)
    members: list[Member] = []
    declared = 0
    data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4 / 3.10.12
    for name, kind, size, handle in reader.headers():
        budget.count_member()
        if kind not in ("file", "dir"):
            raise _refuse(archive, name, f"{kind}; {_NO_LINKS}")
        problem = name_problem(name)
        parts = member_parts(name)
        if problem is None and not parts and kind == "file":
            problem = "has an empty path"
        if problem:
            raise _refuse(archive, name, problem)
        _check_collision(archive, name, parts, kind, seen)
        if staging is not None and data_filter is not None and reader.kind == "tar":
            try:
                data_filter(handle, str(staging))  # second layer; never used for placement
            except tarfile.FilterError as exc:
                raise _refuse(
                    archive, name, f"is refused by tarfile's data filter ({exc})"
                ) from exc
        declared += size if kind == "file" else 0
        budget.check_bytes(declared, "declare")
        if parts or kind == "file":
            members.append(Member(name, parts, kind == "dir", handle))
    return members


def _check_collision(
    archive: Path, name: str, parts: tuple[str, ...], kind: str, seen: dict[tuple[str, ...], str]
) -> None:
    """Refuse a member whose path an earlier member already holds, or that needs a directory
    where an earlier member put a file."""
    for i in range(1, len(parts)):
        if seen.setdefault(parts[:i], "dir") != "dir":
            raise _refuse(
                archive, name, f"lies below {'/'.join(parts[:i])!r}, an earlier member's file"
            )
    earlier = seen.get(parts)
    if earlier is not None and not (earlier == "dir" and kind == "dir"):
        raise _refuse(archive, name, "has the same path as an earlier member")
    seen[parts] = kind


# --- write ----------------------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class StagingTree:
    """Creates directories and files strictly below ``root``, one component at a time.

    Every step goes through an open directory descriptor (``dir_fd``), so no path string is
    ever resolved by the kernel from ``root`` down: a component that exists on disk as a
    symlink or as anything but a directory is refused, whatever created it, and a file is only
    ever created new (``O_EXCL``) and never through a link (``O_NOFOLLOW``). Permissions are the
    umask's (``0o777`` / ``0o666`` requested), not the archive's.
    """

    def __init__(self, root: Path, archive: Path) -> None:
        self.root, self.archive = root, archive
        self._fd = os.open(root, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> StagingTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _enter(self, fd: int, part: str, name: str, create: bool) -> int:
        """Descriptor of directory ``part`` inside ``fd`` (created if missing and ``create``)."""
        if create:
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
        st = os.stat(part, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(self.archive, name, f"leads through {part!r}, a symbolic link on disk")
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(self.archive, name, f"leads through {part!r}, which is not a directory")
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:  # replaced between the stat and the open
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _refuse(
                    self.archive, name, f"leads through {part!r}, not a directory"
                ) from exc
            raise

    def _parent(self, parts: tuple[str, ...], name: str) -> int:
        """Descriptor of the directory holding ``parts[-1]``, creating the ones missing."""
        fd = os.dup(self._fd)
        try:
            for part in parts[:-1]:
                child = self._enter(fd, part, name, create=True)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def make_dir(self, parts: tuple[str, ...], name: str) -> None:
        """Create directory ``parts`` (and its parents) below the root."""
        parent = self._parent(parts, name)
        try:
            os.close(self._enter(parent, parts[-1], name, create=True))
        finally:
            os.close(parent)

    def create_file(self, parts: tuple[str, ...], name: str) -> int:
        """A new file ``parts`` below the root, opened for writing; returns its descriptor."""
        parent = self._parent(parts, name)
        try:
            return os.open(parts[-1], _NEW_FILE_FLAGS, 0o666, dir_fd=parent)
        except FileExistsError as exc:
            raise _refuse(
                self.archive,
                name,
                "collides with an earlier member (the same name on this file system, e.g. "
                "differing only in letter case)",
            ) from exc
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR):
                raise _refuse(self.archive, name, "would be written through a link") from exc
            raise
        finally:
            os.close(parent)


def _copy(reader: _Reader, member: Member, budget: _Budget, write: Callable[[bytes], None]) -> None:
    """Stream ``member``'s bytes into ``write``, counting them against the caps."""
    try:
        stream = reader.open(member)
    except _READ_ERRORS as exc:
        raise unreadable(reader.archive, exc, member.name) from exc
    with stream:
        while True:
            try:
                block = stream.read(CHUNK)
            except _READ_ERRORS as exc:
                raise unreadable(reader.archive, exc, member.name) from exc
            if not block:
                return
            budget.add_bytes(len(block))
            write(block)


def _write_member(tree: StagingTree, reader: _Reader, member: Member, budget: _Budget) -> None:
    """Create one directory, or one file with its bytes, below the staging root."""
    if member.is_dir:
        tree.make_dir(member.parts, member.name)
        return
    fd = tree.create_file(member.parts, member.name)
    path = tree.root.joinpath(*member.parts)
    with os.fdopen(fd, "wb") as out:

        def write(block: bytes) -> None:
            try:
                out.write(block)
            except OSError as exc:
                raise output_error(path, exc) from exc

        _copy(reader, member, budget, write)
        try:
            out.flush()
        except OSError as exc:
            raise output_error(path, exc) from exc


# --- entry points ---------------------------------------------------------------------------


def check_archive(
    archive: str | os.PathLike, limits: ExtractLimits | None = None, kind: str | None = None
) -> ArchiveSummary:
    """Read every member of ``archive`` to its end without writing anything.

    Applies every rule of :func:`safe_extract` (member types, names, caps) and reads each
    member's bytes (a zip's CRCs are checked, a tar's end marker is required), so a file that
    passes is complete and extractable. Used for downloads that have no checksum to verify.
    ``kind`` (``tar`` / ``zip``) overrides the type read from the file name (a ``.part`` file).

    Raises:
        UnsafeArchiveError, UnreadableArchiveError, ArchiveLimitError: naming the archive.
    """
    archive = Path(archive)
    reader = _Reader(archive, kind)
    try:
        budget = _Budget(archive, limits or ExtractLimits())
        for member in _scan(reader, budget, staging=None):
            if not member.is_dir:
                _copy(reader, member, budget, lambda _block: None)
    finally:
        reader.close()
    return budget.summary()


def safe_extract(
    archive: str | os.PathLike,
    target_dir: str | os.PathLike,
    log: logging.Logger = _LOG,
    limits: ExtractLimits | None = None,
) -> Path:
    """Extract ``archive`` into ``target_dir`` (see the module docstring); atomic.

    ``target_dir`` is replaced if it exists. On any error it is left as it was and no staging
    directory remains.

    Raises:
        UnsafeArchiveError, UnreadableArchiveError, ArchiveLimitError: naming the archive (and
            the member where one is at fault).
        segrobust.atomic.OutputError: a write failed (e.g. a full disk), naming the path.
    """
    archive, target = Path(archive), Path(target_dir)
    reader = _Reader(archive)
    try:
        budget = _Budget(archive, limits or ExtractLimits())
        with atomic_dir(target) as staging:
            members = _scan(reader, budget, staging)
            with StagingTree(staging, archive) as tree:
                for member in members:
                    _write_member(tree, reader, member, budget)
    finally:
        reader.close()
    summary = budget.summary()
    log.info(
        "extracted %d members (%d bytes, ratio %.2f) of %s into %s",
        summary.members,
        summary.bytes,
        summary.ratio,
        archive,
        target,
    )
    return target
