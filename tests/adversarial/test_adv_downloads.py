"""Issue 11, case 4: a truncated or corrupt download is never cached, a cached unreadable
archive says which file to delete and why, and a checksum mismatch is not downloaded again.
Issue 22, case 6: a server that sends without end is cut off at the expected size, or at the
archive's unpacking cap, instead of being read to its end (300 MB in the issue).

A local HTTP server on 127.0.0.1 (tests/archives.py) plays the misbehaving server.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from archives import make_busi_zip, make_glas_zip, serve
from sandbox import make_sandbox

from segrobust.data.download import ChecksumError, OversizeDownload, UnreadableDownload, fetch
from segrobust.data.extract import UnreadableArchiveError
from segrobust.data.prepare import prepare_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    make_glas_zip(folder / "glas.zip")
    return folder


def test_truncated_download_without_checksum_or_length_is_not_cached(served, tmp_path):
    sandbox = make_sandbox(tmp_path / "work")
    dest = sandbox.target / "glas.zip"
    before = sandbox.snapshot()
    with serve(served, mode="truncate_unannounced") as (url, requests):
        with pytest.raises(UnreadableDownload) as err:
            fetch(f"{url}/glas.zip", dest, checksum=None, algorithm="sha256", log=_log())
    message = str(err.value)
    assert "glas.zip downloaded from" in message and "was deleted" in message
    assert "no checksum to verify it by" in message and "not a readable archive" in message
    assert len(requests) == 1
    # fetch creates the downloads directory (like Snakemake would); nothing is in it
    after = sandbox.snapshot()
    assert sorted(set(after) - set(before)) == ["l1/l2/l3/l4/l5/l6/l7/out"]
    assert list(sandbox.target.iterdir()) == []


def test_cached_unreadable_archive_names_the_file_to_delete(served, tmp_path):
    sandbox = make_sandbox(tmp_path / "work")
    cached = sandbox.root / "downloads" / "glas.zip"
    cached.parent.mkdir()
    cached.write_bytes((served / "glas.zip").read_bytes()[:-300])  # left by an older version
    before = sandbox.snapshot()
    with pytest.raises(UnreadableArchiveError) as err:
        prepare_dataset("glas", {"source": "glas"}, cached, sandbox.target)
    message = str(err.value)
    assert f"{cached}: not a readable archive" in message
    assert f"delete {cached.resolve()} and re-run to download it again" in message
    assert "no checksum was published for glas" in message
    sandbox.assert_untouched(before)  # the archive is kept: the message says what to do


def test_verified_but_unreadable_archive_says_a_new_download_would_not_help(tmp_path):
    sandbox = make_sandbox(tmp_path / "work")
    cached = sandbox.root / "Dataset_BUSI.zip"
    make_busi_zip(cached)
    cached.write_bytes(cached.read_bytes()[:-300])
    entry = {"source": "busi", "checksum": hashlib.sha256(cached.read_bytes()).hexdigest()}
    before = sandbox.snapshot()
    with pytest.raises(UnreadableArchiveError, match="downloading it again would not help"):
        prepare_dataset("busi", entry, cached, sandbox.target)
    sandbox.assert_untouched(before)


def test_checksum_mismatch_is_downloaded_once(served, tmp_path):
    sandbox = make_sandbox(tmp_path / "work")
    dest = sandbox.target / "glas.zip"
    with serve(served) as (url, requests), pytest.raises(ChecksumError, match="mismatch"):
        fetch(f"{url}/glas.zip", dest, checksum="0" * 64, algorithm="sha256", log=_log())
    assert len(requests) == 1 and list(sandbox.target.iterdir()) == []
    # ... and the rule does not retry it: Snakemake `retries` would re-run the whole job
    rules = (REPO / "workflow" / "rules" / "datasets.smk").read_text()
    rule = rules[rules.index("rule download_source:") : rules.index("rule prepare_dataset:")]
    assert not re.search(r"^\s*retries\s*:", rule, flags=re.MULTILINE)


@pytest.mark.parametrize(
    "limits, expected",
    [
        ({"expected_size": 1000}, "more than 1000 bytes (the expected size)"),
        (
            {"extract_limits": {"extract_max_gb": 0.001, "key_prefix": "datasets.glas."}},
            "more than 1010000 bytes (0.001 GB, the most its archive may unpack to "
            "(datasets.glas.extract_max_gb), plus 1 %)",
        ),
    ],
)
def test_an_endless_download_is_cut_off(served, tmp_path, limits, expected):
    sandbox = make_sandbox(tmp_path / "work")
    dest = sandbox.target / "glas.zip"
    before = sandbox.snapshot()
    with serve(served, mode="endless") as (url, requests):
        with pytest.raises(OversizeDownload) as err:
            fetch(f"{url}/glas.zip", dest, checksum=None, algorithm="sha256", log=_log(), **limits)
    assert str(err.value).startswith(f"glas.zip: {url}/glas.zip: the server sent {expected}")
    assert str(err.value).endswith("the transfer was stopped there; the partial file was deleted")
    assert len(requests) == 1 and requests[0]["sent"] < 64 * 2**20  # not 300 MiB
    after = sandbox.snapshot()
    assert sorted(set(after) - set(before)) == ["l1/l2/l3/l4/l5/l6/l7/out"]  # the empty folder
    assert list(sandbox.target.iterdir()) == []


def test_a_download_announcing_more_than_expected_is_not_read(served, tmp_path):
    sandbox = make_sandbox(tmp_path / "work")
    size = (served / "glas.zip").stat().st_size
    with serve(served) as (url, requests), pytest.raises(OversizeDownload) as err:
        fetch(f"{url}/glas.zip", sandbox.target / "glas.zip", checksum=None, algorithm="sha256",
              expected_size=size - 1, log=_log())  # fmt: skip
    assert f"the server announces {size} bytes, more than {size - 1}" in str(err.value)
    assert len(requests) == 1 and list(sandbox.target.iterdir()) == []


def _log():
    import logging

    return logging.getLogger("test_adv_downloads")
