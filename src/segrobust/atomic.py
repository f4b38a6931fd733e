"""Atomic outputs: a file or directory appears complete or not at all, readable as the umask says.

Every output of the pipeline is written through these helpers: to a temporary sibling first, then
renamed into place (``os.replace`` is atomic within one file system), so a killed or failed job
never leaves a half-written table, model or dataset that a later job could mistake for a result.

Two details the standard library gets in the way of:

- ``tempfile.mkstemp`` / ``mkdtemp`` create 0600 files and 0700 directories. Renamed into place
  as they are, a lab group could not read each other's results on a shared cluster. The final
  permissions here follow the process umask, as a plain ``open()`` would.
- A full disk surfaces deep inside a library (torch reports ``basic_ios::clear``, pandas a bare
  ``OSError``). :func:`output_error` turns any ``OSError`` into one naming the output path and
  the cause, and the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class OutputError(OSError):
    """Writing an output failed; the message names the output and the cause (``errno`` kept)."""


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Give ``path`` the permissions a plain ``open()`` / ``mkdir()`` would have given it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def output_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """An :class:`OutputError` for ``exc`` raised while writing ``path``."""
    if isinstance(exc, OutputError):
        return exc
    cause = exc.strerror or str(exc) or type(exc).__name__
    hint = "; free some space and re-run" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return OutputError(exc.errno, f"could not write {path}: {cause}{hint}")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was; an
    ``OSError`` is re-raised as :class:`OutputError` naming ``path``. ``suffix`` keeps an
    extension that a writer looks at (``.nii.gz``, ``.png``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise output_error(path, exc) from exc
    tmp = Path(name)
    try:
        yield tmp
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise output_error(path, exc) from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on a clean exit it replaces ``path``
    (an existing one is removed first). On any exception it is removed and ``path`` is left as
    it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        yield tmp
        apply_umask(tmp, directory=True)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise output_error(path, exc) from exc
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path: str | os.PathLike, frame: Any) -> None:
    """Write a pandas DataFrame to ``path`` as CSV (no index) atomically."""
    write_text(path, frame.to_csv(index=False))


def write_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically.

    Serialised in memory first and written with Python's file I/O: torch's own writer reports a
    full disk as ``basic_ios::clear`` without the path or the cause.
    """
    import torch  # only the callers that save tensors pay for importing torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())
