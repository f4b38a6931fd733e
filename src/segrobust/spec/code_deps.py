"""Which library files a pipeline script depends on, derived from its imports.

Snakemake re-runs a job when its script changes, not when the library code the script imports
changes. Each rule therefore declares the ``segrobust`` files its script imports, directly or
transitively, as inputs. A hand-kept list drifts (it missed modules before); this module computes
the list from the source with :mod:`ast`, without importing anything, so it is cheap at parse
time and works on a cluster node that has no torch.

What counts as an import of a ``segrobust`` module:

- ``import segrobust.x.y`` and ``from segrobust.x import y`` anywhere in a file (also inside
  functions: lazy imports are still dependencies);
- relative imports inside the package (``from .base import X``);
- the string ``"segrobust.x.y:function"``, the form in which a registry names a function it
  imports lazily (``segrobust.data.sources``).

Importing ``segrobust.a.b`` runs ``segrobust/__init__.py`` and ``segrobust/a/__init__.py`` too, so
the package files on the way are part of the closure. Paths are returned relative to the working
directory, so a copied or moved project keeps the same inputs and re-runs nothing.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from pathlib import Path

PACKAGE = "segrobust"
_LAZY_TARGET = re.compile(rf"^({PACKAGE}(?:\.\w+)*):\w+$")


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
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _LAZY_TARGET.match(node.value)
            if match:
                found.add(match.group(1))
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@functools.cache
def _closure(script: Path, src_root: Path) -> tuple[Path, ...]:
    seen: set[Path] = set()
    pending = [script]
    while pending:
        current = pending.pop()
        for module in imported_modules(current, src_root):
            for name in _with_parents(module):
                found = module_file(name, src_root)
                if found is not None and found not in seen:
                    seen.add(found)
                    pending.append(found)
    seen.discard(script)
    return tuple(sorted(seen))


def library_files(script: str | os.PathLike, src_root: str | os.PathLike) -> list[str]:
    """The ``segrobust`` source files ``script`` imports, transitively, as paths relative to the
    current working directory, sorted.

    Args:
        script: a Python file (a workflow script or a library module).
        src_root: the directory holding the ``segrobust`` package (the repository's ``src/``).
    """
    script, src_root = Path(script).resolve(), Path(src_root).resolve()
    return [os.path.relpath(p) for p in _closure(script, src_root)]
