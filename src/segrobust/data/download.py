"""Resumable, verified downloads of dataset archives with the standard library.

Why not ``monai.apps.download_url``: it fetches with ``urllib.request.urlretrieve`` into the final
path, so an interrupted multi-GB download (the MSD spleen archive is 1.5 GB) starts again from
zero, and a half-written file sits at the destination until the hash check runs. Here the bytes
go to ``<dest>.part``, an interrupted transfer resumes with an HTTP ``Range`` request where the
server honours it (and restarts cleanly where it does not), and only a file whose size and
checksum match is renamed to ``dest`` -- atomically, so a rule's output is either absent or good.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from segrobust.data.sources import CHECKSUM_ALGORITHMS

CHUNK = 1 << 20
_LOG = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download that could not complete; the message says what to do by hand."""


class ChecksumError(DownloadError):
    """A file whose checksum or size is not the expected one."""


class TruncatedDownload(DownloadError):
    """The server closed the connection before sending every byte it announced."""


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
    timeout: float = 60.0,
    attempts: int = 3,
    log: logging.Logger = _LOG,
) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, rename into place.

    A ``dest`` that already exists (e.g. placed by hand) is verified instead of downloaded.
    Up to ``attempts`` transfers are made, each resuming where the last stopped.

    Returns:
        The file's hex digest (``algorithm``, or sha256 when ``checksum`` is None).

    Raises:
        ChecksumError: size or checksum mismatch (the partial file is deleted).
        TruncatedDownload: the connection kept closing early (the partial is kept for a resume).
        DownloadError: no network or an HTTP error, with instructions for a manual download.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        log.info("%s exists; verifying it instead of downloading", dest)
        return verify_file(
            dest, checksum=checksum, algorithm=algorithm, expected_size=expected_size, log=log
        )
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, part, expected_size, timeout, log)
            break
        except TruncatedDownload as exc:
            log.warning("attempt %d/%d: %s", attempt, attempts, exc)
            if attempt == attempts:
                raise TruncatedDownload(
                    f"{exc} after {attempts} attempts; the partial file {part} is kept and a "
                    f"re-run resumes it; or {manual_instructions(url, dest, checksum, algorithm)}"
                ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            status = (
                f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else "no connection"
            )
            raise DownloadError(
                f"could not download {url} ({status}: {reason}); "
                f"{manual_instructions(url, dest, checksum, algorithm)}"
            ) from exc
    try:
        digest = verify_file(
            part, checksum=checksum, algorithm=algorithm, expected_size=expected_size, log=log
        )
    except ChecksumError as exc:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{dest.name} downloaded from {url} is corrupt and was deleted: {exc}"
        ) from None
    os.replace(part, dest)
    log.info("downloaded %s -> %s", url, dest)
    return digest


def _transfer(
    url: str, part: Path, expected_size: int | None, timeout: float, log: logging.Logger
) -> None:
    """One HTTP transfer into ``part``, appending from its current size where possible."""
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
            return _transfer(url, part, expected_size, timeout, log)
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
        received = 0
        with open(part, mode) as f:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    received += len(block)
            except http.client.IncompleteRead as exc:
                f.write(exc.partial)
                received += len(exc.partial)
    if announced is not None and received < announced:
        raise TruncatedDownload(
            f"{url}: connection closed after {offset + received} of {offset + announced} bytes"
        )
    if expected_size is not None and offset + received < expected_size:
        raise TruncatedDownload(
            f"{url}: got {offset + received} bytes, expected {expected_size} bytes"
        )


def _start_from_content_range(header: str) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", header.strip())
    return int(m.group(1)) if m else None


def _total_from_content_range(header: str) -> int | None:
    m = re.search(r"/(\d+)$", header.strip())
    return int(m.group(1)) if m else None
