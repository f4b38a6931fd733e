"""Resumable, verified downloads of dataset archives with the standard library.

Why not ``monai.apps.download_url``: it fetches with ``urllib.request.urlretrieve`` into the final
path, so an interrupted multi-GB download (the MSD spleen archive is 1.5 GB) starts again from
zero, and a half-written file sits at the destination until the hash check runs. Here the bytes
go to ``<dest>.part``, an interrupted transfer resumes with an HTTP ``Range`` request where the
server honours it (and restarts cleanly where it does not), and only a file whose size and
checksum match is renamed to ``dest`` -- atomically, so a rule's output is either absent or good.

Where no checksum is published (GlaS), a complete transfer cannot be told from a truncated one
when the server sends no ``Content-Length``; such a file is therefore read in full as an archive
(:func:`segrobust.data.extract.check_archive`: every member readable, zip CRCs, the tar end
marker, the size caps) before it is accepted, and its sha256 is logged (``prepare_dataset``
records it in the provenance). A file that fails is deleted, never cached.

Transient network failures (timeouts, dropped connections, HTTP 5xx / 408 / 429) are retried
here, resuming, up to ``attempts`` transfers; a refused connection, an HTTP 4xx, a checksum
mismatch or an unreadable archive is final. That is why the download rule has no Snakemake
``retries``: it would only download a file that failed its checksum again.

A server that sends more than it should is cut off, not read to its end: the transfer stops one
block after ``expected_size`` where the size is known, else after the most bytes the archive may
unpack to (``extract_max_gb``; an archive is not larger than its content, plus 1 % for its
headers), and the partial file is deleted (:class:`OversizeDownload`).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segrobust.atomic import check_output_path, output_error
from segrobust.data.sources import CHECKSUM_ALGORITHMS

CHUNK = 1 << 20
_LOG = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download that could not complete; the message says what to do by hand."""


class ChecksumError(DownloadError):
    """A file whose checksum or size is not the expected one."""


class TruncatedDownload(DownloadError):
    """The server closed the connection before sending every byte it announced."""


class TransientError(DownloadError):
    """A network failure worth another attempt (timeout, dropped connection, HTTP 5xx)."""


class UnreadableDownload(DownloadError):
    """A file without a checksum that is not a complete, readable archive."""


class OversizeDownload(ChecksumError):
    """The server sent more bytes than the file may have; the transfer was stopped."""


def download_limit(
    expected_size: int | None, extract_limits: Mapping[str, Any] | None
) -> tuple[int, str]:
    """The most bytes a download may have, and where that number comes from (for messages):
    ``expected_size`` where known, else the archive's unpacking cap plus 1 % (module
    docstring)."""
    if expected_size is not None:
        return int(expected_size), "the expected size"
    from segrobust.data.extract import ExtractLimits  # numpy / nibabel only when needed

    caps = dict(extract_limits or {})
    prefix = caps.get("key_prefix", "datasets.<name>.")
    limits = ExtractLimits.from_config(caps, prefix)
    return (
        limits.max_bytes + limits.max_bytes // 100,
        f"{limits.max_bytes / 1e9:g} GB, the most its archive may unpack to "
        f"({prefix}extract_max_gb), plus 1 %",
    )


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ValueError(
            f"unknown checksum algorithm {algorithm!r}; allowed: {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(
    path: str | os.PathLike,
    *,
    checksum: str | None,
    algorithm: str,
    expected_size: int | None = None,
    log: logging.Logger = _LOG,
) -> str:
    """Check a file's size and checksum; return its digest.

    With ``checksum=None`` (no published value) nothing can be compared: the sha256 is returned
    and logged so it can be recorded and pinned in the config.

    Raises:
        ChecksumError: naming the file, the expected and the actual value.
    """
    path = Path(path)
    if expected_size is not None and path.stat().st_size != expected_size:
        raise ChecksumError(
            f"{path}: size {path.stat().st_size} bytes, expected {expected_size} bytes"
        )
    if checksum is None:
        digest = file_digest(path, "sha256")
        log.warning("%s: no published checksum to verify against; sha256 = %s", path, digest)
        return digest
    actual = file_digest(path, algorithm)
    if actual.lower() != checksum.lower():
        raise ChecksumError(
            f"{path}: {algorithm} checksum mismatch: expected {checksum}, got {actual}"
        )
    log.info("%s: %s checksum verified (%s)", path, algorithm, actual)
    return actual


def manual_instructions(url: str, dest: Path, checksum: str | None, algorithm: str) -> str:
    """What to do when the pipeline cannot download: fetch by hand and place the file."""
    pin = f" ({algorithm} {checksum})" if checksum else ""
    return (
        f"download {url} by hand (in a browser or with curl/wget) and place it at "
        f"{dest.resolve()}{pin}; the pipeline verifies a file placed there the same way"
    )


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    checksum: str | None,
    algorithm: str,
    expected_size: int | None = None,
    extract_limits: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    attempts: int = 3,
    retry_wait: float = 5.0,
    log: logging.Logger = _LOG,
) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, rename into place.

    A ``dest`` that already exists (e.g. placed by hand) is verified instead of downloaded.
    Up to ``attempts`` transfers are made, each resuming where the last stopped; transient
    failures wait ``retry_wait`` seconds times the attempt number first. Without a ``checksum``
    the file must read in full as an archive within ``extract_limits`` (the dataset-entry keys
    ``extract_max_gb`` / ``_members`` / ``_ratio`` and the ``key_prefix`` naming them, as
    :func:`segrobust.data.sources.download_settings` gives them; defaults where absent).

    Returns:
        The file's hex digest (``algorithm``, or sha256 when ``checksum`` is None).

    Raises:
        ChecksumError: size or checksum mismatch (the partial file is deleted).
        UnreadableDownload: no checksum and not a complete, readable archive (deleted).
        OversizeDownload: the server sent more than the file may have (stopped; deleted).
        TruncatedDownload: the connection kept closing early (the partial is kept for a resume).
        DownloadError: no network or an HTTP error, with instructions for a manual download.
        segrobust.atomic.OutputError: the file could not be written (e.g. a full disk).
    """
    dest = check_output_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        log.info("%s exists; verifying it instead of downloading", dest)
        digest = verify_file(
            dest, checksum=checksum, algorithm=algorithm, expected_size=expected_size, log=log
        )
        if checksum is None:
            _check_readable(dest, dest, extract_limits, log, placed=True)
        return digest
    part = dest.with_name(dest.name + ".part")
    manual = manual_instructions(url, dest, checksum, algorithm)
    limit = download_limit(expected_size, extract_limits)
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, part, expected_size, timeout, log, limit)
            break
        except OversizeDownload as exc:
            part.unlink(missing_ok=True)
            raise OversizeDownload(f"{dest.name}: {exc}; the partial file was deleted") from None
        except (TruncatedDownload, TransientError) as exc:
            log.warning("attempt %d/%d: %s", attempt, attempts, exc)
            if attempt == attempts:
                raise type(exc)(
                    f"{exc} after {attempts} attempts; the partial file {part} is kept and a "
                    f"re-run resumes it; or {manual}"
                ) from None
            time.sleep(retry_wait * attempt)
        except (urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            status = (
                f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else "no connection"
            )
            raise DownloadError(f"could not download {url} ({status}: {reason}); {manual}") from exc
    try:
        digest = verify_file(
            part, checksum=checksum, algorithm=algorithm, expected_size=expected_size, log=log
        )
        if checksum is None:
            _check_readable(part, dest, extract_limits, log, placed=False)
    except ChecksumError as exc:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{dest.name} downloaded from {url} is corrupt and was deleted: {exc}"
        ) from None
    except UnreadableDownload as exc:
        part.unlink(missing_ok=True)
        raise UnreadableDownload(
            f"{dest.name} downloaded from {url} was deleted: {exc}; re-run to download it "
            f"again, or {manual}"
        ) from None
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise output_error(dest, exc) from exc
    log.info("downloaded %s -> %s", url, dest)
    return digest


def _check_readable(
    path: Path,
    dest: Path,
    extract_limits: Mapping[str, Any] | None,
    log: logging.Logger,
    *,
    placed: bool,
) -> None:
    """Refuse a file with no checksum unless it reads in full as an archive (module docstring).

    ``placed``: ``path`` is a file found at ``dest`` (put there by hand or by an older version),
    which is not deleted: the message says to delete it and why.
    """
    # imported here: the download rule's other paths need neither numpy nor nibabel
    from segrobust.data.dataset import DataError
    from segrobust.data.extract import ExtractLimits, archive_kind, check_archive

    caps = dict(extract_limits or {})
    limits = ExtractLimits.from_config(caps, caps.get("key_prefix", "datasets.<name>."))
    try:
        summary = check_archive(path, limits, kind=archive_kind(dest))
    except DataError as exc:
        why = (
            "there is no checksum to verify it by, so it was read as an archive and is not a "
            f"complete, readable one ({exc})"
        )
        if placed:
            raise UnreadableDownload(
                f"{dest}: {why}; delete {dest.resolve()} and re-run to download it again"
            ) from exc
        raise UnreadableDownload(why) from exc
    log.info(
        "%s: no checksum published; read in full as an archive (%d members, %d bytes, ratio %.2f)",
        dest,
        summary.members,
        summary.bytes,
        summary.ratio,
    )


def _is_transient(exc: BaseException) -> bool:
    """Whether a network failure is worth another attempt: a timeout, a dropped connection, or
    an HTTP 5xx / 408 / 429. A refused connection or a failed name lookup (offline, wrong URL)
    and other HTTP errors are not."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    return isinstance(exc, (TimeoutError, ConnectionResetError, ConnectionAbortedError))


def _transfer(
    url: str,
    part: Path,
    expected_size: int | None,
    timeout: float,
    log: logging.Logger,
    limit: tuple[int, str],
) -> None:
    """One HTTP transfer into ``part``, appending from its current size where possible, never
    past ``limit`` (bytes, and where the number comes from: :func:`download_limit`).

    Raises:
        TransientError / TruncatedDownload: worth another attempt (see :func:`fetch`).
        OversizeDownload: the server announced or sent more than ``limit`` bytes.
        urllib.error.URLError / ConnectionError: final network failures.
    """
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        log.warning("%s is larger than the expected size; restarting", part)
        part.unlink()
        offset = 0
    request = urllib.request.Request(url, headers={"User-Agent": "segrobust"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Range not satisfiable: the part file may already be complete; verify it as is.
            total = _total_from_content_range(exc.headers.get("Content-Range", ""))
            exc.close()
            if total == offset:
                log.info("%s already holds all %d bytes", part, offset)
                return
            log.warning("server refused to resume %s; restarting", part)
            part.unlink()
            return _transfer(url, part, expected_size, timeout, log, limit)
        if _is_transient(exc):
            raise TransientError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        raise
    except (urllib.error.URLError, OSError) as exc:
        if _is_transient(exc):
            raise TransientError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
        raise
    with response:
        if offset and response.status == 206:
            start = _start_from_content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                raise DownloadError(f"{url}: server resumed at byte {start}, asked for {offset}")
            mode = "ab"
            log.info("resuming %s at byte %d", part.name, offset)
        else:
            if offset:
                log.info("server does not support resuming; restarting %s", part.name)
            mode, offset = "wb", 0
        length = response.headers.get("Content-Length")
        announced = int(length) if length is not None else None
        if announced is not None and offset + announced > limit[0]:
            raise OversizeDownload(
                f"{url}: the server announces {offset + announced} bytes, more than "
                f"{limit[0]} ({limit[1]}); nothing more was read"
            )
        received = _receive(url, response, part, mode, limit[0] - offset)
        if received > limit[0] - offset:
            raise OversizeDownload(
                f"{url}: the server sent more than {limit[0]} bytes ({limit[1]}); the transfer "
                "was stopped there"
            )
    if announced is not None and received < announced:
        raise TruncatedDownload(
            f"{url}: connection closed after {offset + received} of {offset + announced} bytes"
        )
    if expected_size is not None and offset + received < expected_size:
        raise TruncatedDownload(
            f"{url}: got {offset + received} bytes, expected {expected_size} bytes"
        )


def _receive(url: str, response: Any, part: Path, mode: str, room: int) -> int:
    """Copy the response body into ``part`` (``mode`` ``wb`` or ``ab``); the bytes received.

    Reading stops once more than ``room`` bytes arrived (the caller refuses the file then), so
    an endless body is never read to its end. A connection that drops mid-body keeps what
    arrived (the caller decides whether the file is complete); a failed write is reported with
    the path and the cause (e.g. a full disk).
    """
    received = 0
    try:
        with open(part, mode) as f:
            while received <= room:
                try:
                    block = response.read(CHUNK)
                except http.client.IncompleteRead as exc:
                    block = exc.partial
                    f.write(block)
                    return received + len(block)
                except (TimeoutError, ConnectionResetError, ConnectionAbortedError) as exc:
                    raise TransientError(f"{url}: {exc} after {received} bytes") from exc
                if not block:
                    return received
                f.write(block)
                received += len(block)
            return received
    except OSError as exc:
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        raise output_error(part, exc) from exc


def _start_from_content_range(header: str) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", header.strip())
    return int(m.group(1)) if m else None


def _total_from_content_range(header: str) -> int | None:
    m = re.search(r"/(\d+)$", header.strip())
    return int(m.group(1)) if m else None
