"""A predict batch's output folder: checked before the batch, and never a place where predict
deletes what it did not write.

Before any model is loaded (:func:`plan_output_folder`):

- the output folder must not be the images folder, lie inside it or contain it (compared after
  resolving symbolic links in both paths and their parents), since replacing it would delete
  or mix the inputs;
- it must not itself be a symbolic link (replacing a link's target is not what a user asked for,
  and ``shutil.rmtree`` refuses links only after the whole batch ran);
- an existing folder that is not empty is replaced only when overwriting is allowed *and* it
  holds ``MARKER``, the record an earlier batch wrote of the files it wrote. Then only those
  files are replaced or removed (:func:`segrobust.atomic.atomic_dir` with ``replaces``); every
  other file in the folder is kept, and a new output that would land on one of them is refused.

The marker lists only paths of the layout predict writes (``OUTPUT_FILE``), so an edited marker
cannot make predict delete anything else. While an earlier output is being replaced the marker
lists the earlier and the new files together (written before the first file changes), so a
crash leaves a folder the marker still describes and the next batch can replace it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import segrobust
from segrobust import atomic

#: The record of what a batch wrote, in its output folder.
MARKER = ".segrobust-predict.json"
#: Who writes the marker (its ``written_by``).
WRITER = "segrobust predict"
#: Every path a batch writes below its output folder.
OUTPUT_FILE = re.compile(
    r"predictions\.csv|failures\.csv|summary\.html|"
    + re.escape(MARKER)
    + r"|(masks|fnr_masks|probabilities)/[^/\x00]+\.nii\.gz"
)


class OutputFolderError(RuntimeError):
    """The output folder cannot be used; nothing was written or deleted."""


@dataclass(frozen=True)
class OutputFolder:
    """Where a batch writes and what it replaces there.

    Attributes:
        path: the folder as given.
        earlier: the files an earlier batch wrote there (from its marker), replaced by this
            batch; None when the folder is new or empty (then it is created whole).
    """

    path: Path
    earlier: frozenset[str] | None


def _overlap_problem(out: Path, images: Path) -> str | None:
    """Why ``out`` cannot be the output folder of a batch reading ``images`` (None: it can)."""
    out_real, images_real = out.resolve(), images.resolve()
    where = f" ({out_real})" if out_real != out.absolute() else ""
    if out_real == images_real:
        return (
            f"the output folder {out}{where} is the images folder {images}: the batch would "
            "replace its own inputs; choose another output folder"
        )
    if out_real.is_relative_to(images_real):
        return (
            f"the output folder {out}{where} lies inside the images folder {images}; choose an "
            "output folder outside it"
        )
    if images_real.is_relative_to(out_real):
        return (
            f"the output folder {out}{where} contains the images folder {images}: replacing it "
            "would delete the images; choose another output folder"
        )
    return None


def plan_output_folder(
    out_dir: str | os.PathLike, images_dir: str | os.PathLike, overwrite: bool
) -> OutputFolder:
    """Check the output folder of a batch (see the module docstring) before it starts.

    Raises:
        OutputFolderError: naming the folder and why it cannot be used; nothing was changed.
    """
    out, images = Path(out_dir), Path(images_dir)
    if out.is_symlink():
        raise OutputFolderError(
            f"the output folder {out} is a symbolic link (to {os.readlink(out)}); give the folder "
            "it points to or a new folder, not a link"
        )
    problem = _overlap_problem(out, images)
    if problem:
        raise OutputFolderError(problem)
    if not out.exists():
        return OutputFolder(out, None)
    if not out.is_dir():
        raise OutputFolderError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return OutputFolder(out, None)
    if not overwrite:
        raise OutputFolderError(
            f"{out}: folder exists and is not empty; choose a new output folder, or allow "
            "overwriting if it holds an earlier predict output"
        )
    if not (out / MARKER).is_file():
        raise OutputFolderError(
            f"{out}: not an output folder of {WRITER} (no {MARKER} listing what an earlier batch "
            "wrote), so overwriting it could delete files predict did not write; nothing was "
            "deleted: choose a new output folder, or empty this one yourself"
        )
    return OutputFolder(out, read_marker(out / MARKER))


def read_marker(path: Path) -> frozenset[str]:
    """The files an earlier batch recorded in its marker ``path``.

    Raises:
        OutputFolderError: naming the marker, when it is not a predict record or lists a path
            predict never writes.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputFolderError(
            f"{path}: not a readable record of a predict output ({exc})"
        ) from exc
    files = document.get("files") if isinstance(document, dict) else None
    if document.get("written_by") != WRITER or not isinstance(files, list):
        raise OutputFolderError(
            f"{path}: not a record of a predict output (written_by {WRITER!r} and a list of "
            "files expected); nothing was deleted"
        )
    for name in files:
        if not isinstance(name, str) or not OUTPUT_FILE.fullmatch(name):
            raise OutputFolderError(
                f"{path}: lists {name!r}, not a file predict writes (predictions.csv, "
                "failures.csv, summary.html, masks/, fnr_masks/, probabilities/<image>.nii.gz); "
                "nothing was deleted"
            )
    return frozenset(files)


def marker_document(files: Iterable[str]) -> dict:
    """The marker's content for a batch that wrote ``files`` (relative paths)."""
    return {
        "written_by": WRITER,
        "segrobust_version": segrobust.__version__,
        "files": sorted({*files, MARKER}),
    }


def staged_files(staged: Path) -> list[str]:
    """The files written below the staging folder ``staged``, relative, with ``/``."""
    return sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())


def record_outputs(folder: OutputFolder, staged: Path) -> None:
    """Write the marker of the files staged for ``folder``. When they replace an earlier output,
    first check that replacing changes nothing else (:func:`segrobust.atomic.check_merge`), then
    mark the folder itself with the earlier and the new files together (module docstring), so
    that a crash while the files are replaced leaves it described."""
    written = staged_files(staged)
    if folder.earlier is not None:
        atomic.check_merge(staged, folder.path, folder.earlier)
        atomic.write_json(folder.path / MARKER, marker_document([*folder.earlier, *written]))
    atomic.write_json(staged / MARKER, marker_document(written))
