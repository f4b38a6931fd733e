"""The code that decides a job's outputs, as one short version string a rule passes as a param.

Snakemake re-runs a job when its script changes, not when the library code the script imports
changes. Each rule therefore passes ``params: code=<code version>``: a hash over the contents of
its script and of the ``segrobust`` files the script imports, directly or transitively, so that
Snakemake's params rerun trigger re-runs a job exactly when that code changed. A param, not the
files as inputs: a job's console lines stay short, the DAG does not check the flags of some fifty
inputs per job, and contents count, not modification times (a ``git checkout`` that touches
library files without changing them re-runs nothing). The imports are read from the source with
:mod:`ast`, without importing anything, so it is cheap at parse time and works on a cluster node
without torch; files are read and hashed once per content (cached by path, size and mtime).

What counts as an import of a ``segrobust`` module:

- ``import segrobust.x.y`` and ``from segrobust.x import y`` anywhere in a file (also inside
  functions: lazy imports are still dependencies);
- relative imports inside the package (``from .base import X``).

Importing ``segrobust.a.b`` runs ``segrobust/__init__.py`` and ``segrobust/a/__init__.py`` too, so
the package files on the way are part of the closure. A ``"module:function"`` string (the form in
which a record names code it imports only when used: an architecture's builder, a source's
preparation) is not followed: the job that uses a record declares it, so a job depends on its own
record's code only (``archs=``, ``modules=``).

What does not count:

- **Execution plumbing** (:data:`PLUMBING`): how a job runs, never what it writes: the package
  ``segrobust.execution`` (the job runner with its log file and timing lines, console progress,
  GPU slots). Editing it re-runs nothing; its imports are not followed. Two modules near it are
  code, not plumbing: ``segrobust.atomic`` places an output (a temporary sibling renamed into
  place, the umask's permissions), but it also serialises it (``write_json``'s indentation,
  ``write_csv`` without the index), so an edit there can change an output's bytes;
  ``segrobust.training.device`` places a job on a device, but also decides mixed precision, the
  seeding and the thread count (which changes a CPU job's floating-point results).
- **The record table** (:data:`ARCHITECTURE_TABLE`, ``segrobust.spec.architectures``): one
  record per architecture, imported by every training and evaluation job, each of which uses
  one record. A job that declares its architectures (``archs=``) hashes those records' build
  identity (builder and bound arguments) instead of the table's file, plus their builder modules
  and what they import: editing ``networks/skip_unet.py`` re-runs exactly the jobs of the
  architectures it builds; editing another record, or a record's display name, colour, size rule
  or cost constants, re-runs none of them. A job that declares none (the report, which shows
  every record's display name and colour) hashes the table's file.

Paths are named relative to the repository (the parent of ``src_root``), so a copied or moved
project keeps the same versions and re-runs nothing.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from segrobust.spec.architectures import get_architecture

PACKAGE = "segrobust"

#: Execution plumbing (see the module docstring): the packages no job's code version includes.
PLUMBING: tuple[str, ...] = ("segrobust.execution",)

#: The record table: one record per architecture (see the module docstring).
ARCHITECTURE_TABLE = "segrobust.spec.architectures"

#: Hex digits of a code version (48 bits: a collision between two versions of one job's code
#: is out of reach).
VERSION_DIGITS = 12


def is_plumbing(module: str) -> bool:
    """Whether ``module`` (dotted) is execution plumbing or inside a plumbing package."""
    return any(module == p or module.startswith(p + ".") for p in PLUMBING)


def module_file(module: str, src_root: Path) -> Path | None:
    """The file of ``module`` (dotted name) under ``src_root``, or None if there is none."""
    base = src_root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path, src_root: Path) -> list[str]:
    """The dotted package a file belongs to, as parts (``segrobust/data/x.py`` -> data)."""
    parts = list(path.relative_to(src_root).with_suffix("").parts)
    return parts if path.name == "__init__.py" else parts[:-1]


def imported_modules(path: Path, src_root: Path) -> set[str]:
    """Dotted names of the ``segrobust`` modules (and candidate submodules) ``path`` imports."""
    stat = path.stat()
    return set(_imported_modules(path, src_root, stat.st_mtime_ns, stat.st_size))


@functools.cache
def _imported_modules(path: Path, src_root: Path, mtime_ns: int, size: int) -> frozenset[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    package: list[str] | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    package = _package_of(path, src_root)
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            # ``from segrobust.x import y``: y may be a submodule
            found.update(f"{module}.{a.name}" for a in node.names if a.name != "*")
    return frozenset(m for m in found if m == PACKAGE or m.startswith(PACKAGE + "."))


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _locate(module: str, src_root: Path) -> Path:
    """The file of a module a record names: under ``src_root``, or (a module outside the
    package, e.g. a user's builder) where Python would import it from.

    Raises:
        ModuleNotFoundError: naming the module, when there is no such file.
    """
    found = module_file(module, src_root)
    if found is None and module.split(".")[0] != PACKAGE:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin and os.path.isfile(spec.origin):
            found = Path(spec.origin)
    if found is None:
        raise ModuleNotFoundError(f"no module {module!r} (under {src_root} or on sys.path)")
    return found


def _closure(starts: Iterable[Path], src_root: Path) -> set[Path]:
    """The start files and every non-plumbing ``segrobust`` file they import, transitively."""
    seen = set(starts)
    pending = list(seen)
    while pending:
        current = pending.pop()
        for module in imported_modules(current, src_root):
            for name in _with_parents(module):
                if is_plumbing(name):
                    break
                found = module_file(name, src_root)
                if found is not None and found not in seen:
                    seen.add(found)
                    pending.append(found)
    return seen


def code_files(
    script: str | os.PathLike,
    src_root: str | os.PathLike,
    *,
    archs: Sequence[str] = (),
    modules: Sequence[str] = (),
) -> list[Path]:
    """The files a job's code version hashes: ``script``, the ``segrobust`` files it imports
    transitively (plumbing left out), and ``modules`` with their imports; with ``archs``, the
    records' builder modules with their imports, and without the record table's file (its
    records are hashed instead: :func:`code_version`). Sorted absolute paths."""
    src_root = Path(src_root).resolve()
    named = [*modules, *(get_architecture(a).builder_module for a in archs)]
    files = _closure([Path(script).resolve(), *(_locate(m, src_root) for m in named)], src_root)
    if archs:
        files.discard(module_file(ARCHITECTURE_TABLE, src_root))
    return sorted(files)


def code_version(
    script: str | os.PathLike,
    src_root: str | os.PathLike,
    *,
    archs: Sequence[str] = (),
    modules: Sequence[str] = (),
) -> str:
    """The version of the code that decides the outputs of a job running ``script``: a hash
    of :func:`code_files`' contents (each named by its path relative to the repository, the
    parent of ``src_root``) and, with ``archs``, of those records' build identity.

    Args:
        script: the rule's workflow script.
        src_root: the directory holding the ``segrobust`` package (the repository's ``src/``).
        archs: the architectures the job builds (training, evaluation, predict).
        modules: further modules the job imports by name at run time (a source's preparation).

    Raises:
        UnknownNameError: an architecture without a record.
        ModuleNotFoundError: a module in ``modules`` or a builder that does not exist.
    """
    src_root = Path(src_root).resolve()
    repo = src_root.parent
    digest = hashlib.blake2b(digest_size=VERSION_DIGITS // 2)
    for path in code_files(script, src_root, archs=archs, modules=modules):
        name = os.path.relpath(path, repo) if path.is_relative_to(repo) else path.name
        digest.update(f"{name}\0{file_digest(path)}\0".encode())
    for arch in sorted(set(archs)):
        digest.update(f"{ARCHITECTURE_TABLE}:{get_architecture(arch).build_identity()}\0".encode())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """BLAKE2 digest of a file's contents (cached while its size and mtime stay the same)."""
    stat = path.stat()
    return _file_digest(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
