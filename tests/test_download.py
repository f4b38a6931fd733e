"""Downloads: checksum mismatch, truncation, resume, restart without Range, the offline message,
and verification of a file placed by hand."""

import hashlib
import logging

import pytest
from archives import closed_port_url, make_glas_zip, serve

from segrobust.atomic import OutputError
from segrobust.data.download import (
    ChecksumError,
    DownloadError,
    TransientError,
    TruncatedDownload,
    UnreadableDownload,
    fetch,
    verify_file,
)

LOG = logging.getLogger("test")


@pytest.fixture
def payload(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    data = bytes(range(256)) * 400  # 100 KiB
    (served / "archive.tar").write_bytes(data)
    return served, data, hashlib.md5(data).hexdigest()


def test_fetch_verifies_and_renames_atomically(payload, tmp_path):
    served, data, md5 = payload
    dest = tmp_path / "out" / "archive.tar"
    with serve(served) as (url, _):
        digest = fetch(f"{url}/archive.tar", dest, checksum=md5, algorithm="md5", log=LOG)
    assert digest == md5 and dest.read_bytes() == data
    assert not dest.with_name("archive.tar.part").exists()


def test_checksum_mismatch_deletes_partial_and_names_values(payload, tmp_path):
    served, _, md5 = payload
    dest = tmp_path / "archive.tar"
    wrong = "0" * 32
    with serve(served) as (url, _), pytest.raises(ChecksumError) as err:
        fetch(f"{url}/archive.tar", dest, checksum=wrong, algorithm="md5", log=LOG)
    msg = str(err.value)
    assert "archive.tar" in msg and wrong in msg and md5 in msg
    assert not dest.exists() and not dest.with_name("archive.tar.part").exists()


def test_size_mismatch_is_refused(payload, tmp_path):
    served, data, md5 = payload
    with serve(served) as (url, _), pytest.raises(ChecksumError, match="size"):
        fetch(
            f"{url}/archive.tar",
            tmp_path / "a.tar",
            checksum=md5,
            algorithm="md5",
            expected_size=len(data) + 1,
            retry_wait=0,
            log=LOG,
        )


def test_truncated_download_is_detected_and_partial_kept(payload, tmp_path):
    served, data, md5 = payload
    dest = tmp_path / "archive.tar"
    with serve(served, mode="truncate") as (url, _), pytest.raises(TruncatedDownload) as err:
        fetch(
            f"{url}/archive.tar",
            dest,
            checksum=md5,
            algorithm="md5",
            attempts=2,
            retry_wait=0,
            log=LOG,
        )
    assert "connection closed" in str(err.value)
    assert not dest.exists()
    assert dest.with_name("archive.tar.part").exists()  # kept so a re-run resumes


def test_interrupted_download_resumes_with_range(payload, tmp_path):
    served, data, md5 = payload
    dest = tmp_path / "archive.tar"
    with serve(served, mode="truncate_once") as (url, requests):
        fetch(f"{url}/archive.tar", dest, checksum=md5, algorithm="md5", retry_wait=0, log=LOG)
    assert dest.read_bytes() == data
    assert requests[0]["range"] is None
    assert requests[1]["range"] == f"bytes={len(data) // 2}-"


def test_existing_partial_resumes_from_its_size(payload, tmp_path):
    served, data, md5 = payload
    dest = tmp_path / "archive.tar"
    dest.with_name("archive.tar.part").write_bytes(data[:1000])
    with serve(served, mode="range") as (url, requests):
        fetch(f"{url}/archive.tar", dest, checksum=md5, algorithm="md5", log=LOG)
    assert requests == [{"path": "/archive.tar", "range": "bytes=1000-"}]
    assert dest.read_bytes() == data


def test_server_without_range_support_restarts_cleanly(payload, tmp_path):
    served, data, md5 = payload
    dest = tmp_path / "archive.tar"
    dest.with_name("archive.tar.part").write_bytes(b"garbage from an older attempt")
    with serve(served, mode="plain") as (url, _):
        fetch(f"{url}/archive.tar", dest, checksum=md5, algorithm="md5", log=LOG)
    assert dest.read_bytes() == data


def test_complete_partial_is_verified_after_416(payload, tmp_path):
    served, data, md5 = payload
    dest = tmp_path / "archive.tar"
    dest.with_name("archive.tar.part").write_bytes(data)
    with serve(served, mode="range") as (url, _):
        fetch(f"{url}/archive.tar", dest, checksum=md5, algorithm="md5", log=LOG)
    assert dest.read_bytes() == data


def test_offline_error_says_what_to_download_and_where(tmp_path):
    dest = tmp_path / "downloads" / "msd_spleen" / "Task09_Spleen.tar"
    url = f"{closed_port_url()}/Task09_Spleen.tar"
    with pytest.raises(DownloadError) as err:
        fetch(url, dest, checksum="abc", algorithm="md5", timeout=5, log=LOG)
    msg = str(err.value)
    assert url in msg and str(dest.resolve()) in msg and "by hand" in msg and "md5 abc" in msg
    assert not dest.exists()


def test_http_404_gives_manual_instructions(payload, tmp_path):
    served, _, md5 = payload
    with serve(served) as (url, _), pytest.raises(DownloadError, match="HTTP 404.*by hand"):
        fetch(f"{url}/missing.tar", tmp_path / "m.tar", checksum=md5, algorithm="md5", log=LOG)


def test_file_placed_by_hand_is_verified_not_downloaded(payload, tmp_path):
    _, data, md5 = payload
    dest = tmp_path / "archive.tar"
    dest.write_bytes(data)
    # No server at all: a good file is accepted without network access.
    assert fetch(f"{closed_port_url()}/x", dest, checksum=md5, algorithm="md5", log=LOG) == md5
    dest.write_bytes(data[:-1])
    with pytest.raises(ChecksumError, match="mismatch"):
        fetch(f"{closed_port_url()}/x", dest, checksum=md5, algorithm="md5", log=LOG)


def test_no_published_checksum_returns_sha256(tmp_path, caplog):
    path = tmp_path / "f.zip"
    path.write_bytes(b"abc")
    with caplog.at_level(logging.WARNING):
        digest = verify_file(path, checksum=None, algorithm="sha256", log=LOG)
    assert digest == hashlib.sha256(b"abc").hexdigest()
    assert "no published checksum" in caplog.text


def test_unknown_algorithm_lists_allowed(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="allowed: md5, sha256"):
        verify_file(path, checksum="x", algorithm="crc32")


def test_checksum_mismatch_is_not_downloaded_again(payload, tmp_path):
    served, _, _ = payload
    with serve(served) as (url, requests), pytest.raises(ChecksumError):
        fetch(f"{url}/archive.tar", tmp_path / "a.tar", checksum="0" * 32, algorithm="md5", log=LOG)
    assert len(requests) == 1


def test_transient_http_error_is_retried(payload, tmp_path):
    served, data, md5 = payload
    dest = tmp_path / "archive.tar"
    with serve(served, mode="fail_once") as (url, requests):
        fetch(f"{url}/archive.tar", dest, checksum=md5, algorithm="md5", retry_wait=0, log=LOG)
    assert len(requests) == 2 and dest.read_bytes() == data
    with serve(served, mode="fail_once") as (url, _), pytest.raises(TransientError, match="503"):
        fetch(
            f"{url}/archive.tar",
            tmp_path / "b.tar",
            checksum=md5,
            algorithm="md5",
            attempts=1,
            retry_wait=0,
            log=LOG,
        )


@pytest.fixture
def glas_served(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    return served, make_glas_zip(served / "glas.zip")


def test_download_without_checksum_is_read_in_full_and_accepted(glas_served, tmp_path, caplog):
    _, archive = glas_served
    dest = tmp_path / "out" / "glas.zip"
    with serve(archive.parent) as (url, _), caplog.at_level(logging.INFO):
        digest = fetch(f"{url}/glas.zip", dest, checksum=None, algorithm="sha256", log=LOG)
    assert digest == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert dest.read_bytes() == archive.read_bytes()
    assert "read in full as an archive (17 members" in caplog.text


def test_unannounced_truncation_without_checksum_is_deleted(glas_served, tmp_path):
    _, archive = glas_served
    dest = tmp_path / "out" / "glas.zip"
    with serve(archive.parent, mode="truncate_unannounced") as (url, requests):
        with pytest.raises(UnreadableDownload) as err:
            fetch(f"{url}/glas.zip", dest, checksum=None, algorithm="sha256", log=LOG)
    message = str(err.value)
    assert "glas.zip downloaded from" in message and "was deleted" in message
    assert "not a readable archive" in message and "re-run to download it again" in message
    assert len(requests) == 1
    assert list(dest.parent.iterdir()) == []


def test_unreadable_file_in_place_without_checksum_says_what_to_delete(glas_served, tmp_path):
    _, archive = glas_served
    dest = tmp_path / "glas.zip"
    dest.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(UnreadableDownload) as err:
        fetch(f"{closed_port_url()}/x", dest, checksum=None, algorithm="sha256", log=LOG)
    assert f"delete {dest.resolve()} and re-run" in str(err.value)
    assert dest.exists()  # placed by hand: the user decides


def test_disk_full_while_downloading_names_the_file(payload, tmp_path, monkeypatch):
    import builtins
    import errno
    import os

    served, _, md5 = payload
    real_open = builtins.open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, block):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_full(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return FullDisk(f) if str(path).endswith(".part") else f

    monkeypatch.setattr(builtins, "open", open_full)
    dest = tmp_path / "archive.tar"
    with serve(served) as (url, _), pytest.raises(OutputError) as err:
        fetch(f"{url}/archive.tar", dest, checksum=md5, algorithm="md5", log=LOG)
    assert "archive.tar.part" in str(err.value) and "No space left on device" in str(err.value)
    assert not dest.exists()
