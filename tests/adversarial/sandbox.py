"""A directory tree with sentinel files around an output target, and snapshots that prove a
failed job changed nothing outside its target and left nothing behind."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

SENTINEL = b"sentinel: a hostile input must never change this file\n"
PAYLOAD = b"written by a hostile archive\n"


@dataclass
class Sandbox:
    """``root/l1/.../l<depth>/out``: ``out`` is the target; every directory from ``root`` down
    holds a ``sentinel.txt``, so a write any number of levels above the target hits one."""

    root: Path
    target: Path

    def snapshot(self) -> dict[str, tuple]:
        return snapshot(self.root)

    def sentinels(self) -> list[Path]:
        return sorted(self.root.rglob("sentinel.txt"))

    def assert_untouched(self, before: dict[str, tuple]) -> None:
        """Nothing below ``root`` was created, changed or removed, the target included, and
        every sentinel still holds its text."""
        after = self.snapshot()
        created = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        assert (created, removed, changed) == ([], [], []), (created, removed, changed)
        assert all(p.read_bytes() == SENTINEL for p in self.sentinels())
        assert not os.path.lexists(self.target)


def make_sandbox(base: Path, depth: int = 7) -> Sandbox:
    root = base / "lab"
    here = root
    for level in range(depth + 1):
        here.mkdir(parents=True, exist_ok=True)
        (here / "sentinel.txt").write_bytes(SENTINEL)
        if level < depth:
            here = here / f"l{level + 1}"
    return Sandbox(root, here / "out")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path below ``root`` (links not followed): type, mode, size, mtime and, for files,
    the content digest; for links, the target. A directory's size and mtime are left out: they
    change when a job creates and removes a temporary entry in it, which its entries show."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                detail = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_mode)
                continue
            key = str(path.relative_to(root))
            out[key] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size, st.st_mtime_ns, detail)
    return out
