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

**The path guard.** Being the one writer, this module is where a path built from a bad name
(``resources/datasets/../../../victim``) is stopped whatever the caller checked: once a process
is confined (:func:`confine_outputs`; the Snakefile confines every pipeline job to the project's
``results/``, ``resources/`` and ``logs/``), every write, replace or delete here first checks
(:func:`check_output_path`) that the path, its parent folders resolved (symlinks followed), lies
strictly below one of those folders, and has no ``..``, ``.`` or empty component. The roots
travel in the environment (``SEGROBUST_OUTPUT_ROOTS``), so the scripts Snakemake starts, the
processes forked for them and cluster jobs (which parse the Snakefile again) are confined alike.
An unconfined process (library use, ``segrobust predict``, tests) is not checked: predict guards
its own output folder (``segrobust.predict.output_folder``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any


class OutputError(OSError):
    """Writing an output failed; the message names the output and the cause (``errno`` kept)."""


class OutputPathError(ValueError):
    """A write or delete outside the folders this process may change (nothing was changed)."""


#: Environment variable holding the absolute folders (``os.pathsep``-separated) that writes and
#: deletes of a confined process must lie below (:func:`confine_outputs`).
OUTPUT_ROOTS_ENV = "SEGROBUST_OUTPUT_ROOTS"

#: The temporary directories :func:`atomic_dir` holds open in this process: a staged output is
#: written below one before it is renamed into place.
_staging: set[Path] = set()


def confine_outputs(roots: Iterable[str | os.PathLike]) -> None:
    """Confine every write and delete of this process, and of the processes it starts, to below
    ``roots`` (made absolute against the working directory now)."""
    os.environ[OUTPUT_ROOTS_ENV] = os.pathsep.join(os.path.abspath(root) for root in roots)


def output_roots() -> tuple[Path, ...] | None:
    """The folders this process is confined to, or None when it is not confined."""
    value = os.environ.get(OUTPUT_ROOTS_ENV)
    if not value:
        return None
    return tuple(Path(root) for root in value.split(os.pathsep) if root)


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as given, if this process may write or delete it (see the module docstring).

    Raises:
        OutputPathError: naming the path, where it leads and the folders allowed.
    """
    roots = output_roots()
    if roots is None:
        return Path(path)
    text = os.fspath(path)
    components = text.split(os.sep)  # the first may be "" (absolute) or "." ("./results/...")
    if ".." in components or any(c in ("", ".") for c in components[1:]) or "\x00" in text:
        raise OutputPathError(
            f"refusing to write or delete {text!r}: an output path has no '..', '.' or empty "
            "component and no NUL (a name in the config or a wildcard that is not a plain name?)"
        )
    given = Path(text)
    where = given.parent.resolve() / given.name
    allowed = [root.resolve() for root in roots] + [tmp.resolve() for tmp in _staging]
    if not any(where != root and where.is_relative_to(root) for root in allowed):
        shown = ", ".join(str(root) for root in roots)
        raise OutputPathError(
            f"refusing to write or delete {text}: it is {where}, outside the folders this run "
            f"may change ({shown}); nothing was written or deleted"
        )
    return given


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
    path = check_output_path(path)
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
def atomic_dir(
    path: str | os.PathLike,
    *,
    replaces: Collection[str] | None = None,
    last: Collection[str] = (),
) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on a clean exit it replaces ``path``.
    On any exception it is removed and ``path`` is left as it was.

    ``replaces`` None: an existing ``path`` is removed whole first (a symbolic link is replaced,
    not followed). A collection of file paths relative to ``path``: an existing folder is kept
    and only files change (:func:`_merge`): the listed files are removed, the staged files are
    moved in one by one (those named in ``last`` after the others) and every other entry is
    kept. A staged file that would land on an entry not listed, or below a symbolic link, is
    refused before anything changes. A merge is atomic per file, not as a whole: a caller that
    needs to know what a crash left keeps a record covering both (``segrobust.predict``'s
    marker file).
    """
    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    except OSError as exc:
        raise output_error(path, exc) from exc
    _staging.add(tmp)
    try:
        yield tmp
        apply_umask(tmp, directory=True)
        if replaces is not None and path.is_dir() and not path.is_symlink():
            _merge(tmp, path, replaces, last)
        else:
            _remove_existing(path)
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise output_error(path, exc) from exc
        raise
    finally:
        _staging.discard(tmp)


def _remove_existing(path: Path) -> None:
    """Remove what is at ``path`` (a checked output path): a link itself, a folder with its
    contents, a file."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _relative_file(text: str, root: Path) -> Path:
    """``root / text`` for a plain relative path ``text`` (no ``..``, ``.``, empty or absolute
    component) that does not lead through a symbolic link below ``root``."""
    parts = text.split("/")
    if text.startswith("/") or any(part in ("", ".", "..") or "\x00" in part for part in parts):
        raise OutputPathError(f"refusing to change {root}/{text}: not a plain relative path")
    target = root.joinpath(*parts)
    inside = root.resolve().joinpath(*parts[:-1])
    if target.parent.resolve() != inside:
        raise OutputPathError(
            f"refusing to change {target}: a folder on its way is a symbolic link (to "
            f"{target.parent.resolve()}); nothing was changed"
        )
    return target


def check_merge(
    tmp: str | os.PathLike, path: str | os.PathLike, replaces: Collection[str]
) -> list[str]:
    """The files staged in ``tmp`` (relative, with ``/``), once it is sure that moving them into
    the existing folder ``path`` in place of ``replaces`` changes nothing else (see
    :func:`atomic_dir`).

    Raises:
        OutputPathError: naming the file that would be changed although not listed, or that
            lies below a symbolic link; nothing was changed.
    """
    tmp, path = Path(tmp), check_output_path(path)
    staged = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if not p.is_dir())
    replaced = set(replaces)
    for rel in sorted(replaced):
        target = _relative_file(rel, path)
        if os.path.lexists(target) and (target.is_symlink() or not target.is_file()):
            raise OutputPathError(
                f"refusing to replace {target}: listed as a file written before, but it is a "
                "folder or a symbolic link now; nothing was changed"
            )
    for rel in staged:
        target = _relative_file(rel, path)
        if os.path.lexists(target) and rel not in replaced:
            raise OutputPathError(
                f"refusing to replace {target}: it was not written by the output it replaces "
                "(someone else's file); nothing was changed"
            )
    return staged


def _merge(tmp: Path, path: Path, replaces: Collection[str], last: Collection[str]) -> None:
    """Move the files staged in ``tmp`` into the existing folder ``path``, removing the files
    of ``replaces`` and keeping every other entry (see :func:`atomic_dir`)."""
    staged = check_merge(tmp, path, replaces)  # a refusal changes nothing
    replaced = set(replaces)
    for rel in sorted(replaced - set(staged)):
        target = path.joinpath(*rel.split("/"))
        target.unlink(missing_ok=True)
        for folder in target.parents:  # folders the removed files leave empty
            if folder == path or not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
    for rel in sorted(staged, key=lambda r: r in last):
        target = path.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, target)
    shutil.rmtree(tmp)


def remove(path: str | os.PathLike) -> None:
    """Delete the file ``path`` (checked like every output: :func:`check_output_path`); a
    missing file is no error."""
    check_output_path(path)
    Path(path).unlink(missing_ok=True)


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
