"""Atomic outputs: complete or absent, permissions from the umask, a full disk named clearly."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
import torch

from segrobust import atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_directories_follow_the_umask(tmp_path, umask_022):
    atomic.write_text(tmp_path / "a.txt", "x")
    with atomic.atomic_dir(tmp_path / "d") as staging:
        (staging / "inner.txt").write_text("y")
    assert _mode(tmp_path / "a.txt") == 0o644  # mkstemp alone would give 0600
    assert _mode(tmp_path / "d") == 0o755  # mkdtemp alone would give 0700
    assert (tmp_path / "d" / "inner.txt").read_text() == "y"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_a_failed_directory_leaves_the_old_directory(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "keep").write_text("old")
    with pytest.raises(ValueError), atomic.atomic_dir(target) as staging:
        (staging / "new").write_text("half")
        raise ValueError("bad case")
    assert [p.name for p in target.iterdir()] == ["keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_disk_full_names_the_output_and_the_cause(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    target = tmp_path / "models" / "model.pt"
    with pytest.raises(atomic.OutputError) as caught:
        atomic.write_torch(target, {"w": torch.zeros(2)})
    message = str(caught.value)
    assert str(target) in message and "No space left on device" in message
    assert "free some space" in message
    assert caught.value.errno == errno.ENOSPC
    assert list(target.parent.iterdir()) == []


def test_round_trips(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    atomic.write_csv(tmp_path / "t.csv", frame)
    atomic.write_json(tmp_path / "t.json", {"k": [1, 2]})
    atomic.write_torch(tmp_path / "t.pt", {"w": torch.arange(3)})
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), frame)
    assert (tmp_path / "t.json").read_text() == '{\n  "k": [\n    1,\n    2\n  ]\n}\n'
    assert torch.equal(torch.load(tmp_path / "t.pt")["w"], torch.arange(3))
