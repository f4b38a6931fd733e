"""The dataset contract on disk: NIfTI images and labels plus a decathlon-style ``datalist.json``.

Every dataset, synthetic or downloaded, ends in this form (see docs/ARCHITECTURE.md), so every
downstream stage has this one reader. Reading validates what a job would otherwise trip over later
(unreadable files, non-binary labels, image/label shape mismatch) and names the offending file.
Writing is atomic: a dataset is assembled in a temporary sibling directory and renamed into place
only when complete, so a failed job leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

SPLITS = ("training", "validation", "calibration", "test")
DATALIST = "datalist.json"
PROVENANCE = "provenance.json"


class DataError(ValueError):
    """Bad input data; the message names the file and what is wrong with it."""


@dataclass
class Case:
    """One image with its binary label, as read from a dataset.

    ``meta`` holds the datalist entry's extra keys (``complexity``, ``fg_ratio``, ...).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Read a NIfTI file as float32 with its voxel spacing and affine.

    Raises:
        DataError: naming ``path`` if it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: not a readable NIfTI image ({exc})") from exc
    if data.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 2D or 3D image, got shape {data.shape}")
    spacing = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    return data, spacing, np.asarray(img.affine, dtype=np.float64)


def validate_label(label: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Return ``label`` as uint8 if it only holds 0 and 1, else raise naming ``path``."""
    values = np.unique(label)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[:10])
        raise DataError(
            f"{path}: label is not binary (values found: {shown}); expected only 0 and 1"
        )
    return label.astype(np.uint8)


def load_case(dataset_dir: str | os.PathLike, entry: Mapping[str, Any]) -> Case:
    """Load one datalist entry (paths relative to ``dataset_dir``) with its checks."""
    root = Path(dataset_dir)
    image_path, label_path = root / entry["image"], root / entry["label"]
    image, spacing, affine = read_nifti(image_path)
    label, _, _ = read_nifti(label_path)
    if image.shape != label.shape:
        raise DataError(
            f"{label_path}: label shape {label.shape} does not match image {image_path} "
            f"shape {image.shape}"
        )
    label = validate_label(label, label_path)
    meta = {k: v for k, v in entry.items() if k not in ("image", "label", "id")}
    case_id = str(entry.get("id", Path(entry["image"]).name.split(".")[0]))
    return Case(case_id, image, label, spacing, affine, meta)


def read_datalist(dataset_dir: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Read and check ``datalist.json``: every split present, every entry with image and label."""
    path = Path(dataset_dir) / DATALIST
    try:
        datalist = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: dataset has no datalist (not prepared?)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    for split in SPLITS:
        entries = datalist.get(split)
        if not isinstance(entries, list):
            raise DataError(f"{path}: split {split!r} missing or not a list")
        for entry in entries:
            if not {"image", "label"} <= set(entry):
                raise DataError(f"{path}: entry {entry!r} in {split!r} lacks image or label")
    return datalist


def load_split(dataset_dir: str | os.PathLike, split: str) -> list[Case]:
    """All cases of one split of a dataset."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return [load_case(dataset_dir, e) for e in read_datalist(dataset_dir)[split]]


def affine_from_spacing(spacing: Sequence[float]) -> np.ndarray:
    """A diagonal affine for a 2D or 3D spacing (a 2D image gets a unit third axis)."""
    diag = list(spacing) + [1.0] * (3 - len(spacing)) + [1.0]
    return np.diag(np.asarray(diag, dtype=np.float64))


def write_nifti(
    path: str | os.PathLike,
    array: np.ndarray,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | None = None,
) -> None:
    """Write ``array`` as NIfTI atomically (temporary file in the same directory, then rename).

    The geometry comes from ``affine`` if given, else from ``spacing`` (default 1 per axis).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = affine_from_spacing(spacing if spacing is not None else (1.0,) * array.ndim)
    img = nib.Nifti1Image(np.asarray(array), affine)
    if spacing is not None:
        img.header.set_zooms(tuple(float(s) for s in spacing))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".nii.gz", dir=path.parent)
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


class DatasetWriter:
    """Builds a dataset in the contract form, atomically.

    Use as a context manager::

        with DatasetWriter(out_dir, provenance={"source": "synthetic", ...}) as ds:
            ds.add("case_000", image, label, spacing=(1.0, 1.0), split="training", complexity=1.2)

    Cases are written under a temporary sibling directory; on a clean exit ``datalist.json`` and
    ``provenance.json`` are written and the directory is renamed to ``out_dir`` (replacing an old
    one). On an exception the temporary directory is removed and ``out_dir`` is left untouched.
    """

    def __init__(self, out_dir: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.provenance = dict(provenance)
        self._datalist: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        self._tmp: Path | None = None

    def __enter__(self) -> DatasetWriter:
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(
            tempfile.mkdtemp(prefix=f".tmp-{self.out_dir.name}-", dir=self.out_dir.parent)
        )
        return self

    def add(
        self,
        case_id: str,
        image: np.ndarray,
        label: np.ndarray,
        *,
        split: str,
        spacing: Sequence[float] | None = None,
        affine: np.ndarray | None = None,
        **meta: Any,
    ) -> None:
        """Add one case to ``split``; extra keyword values go into its datalist entry."""
        assert self._tmp is not None, "DatasetWriter.add outside its with-block"
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        if image.shape != label.shape:
            raise DataError(f"{case_id}: image shape {image.shape} != label shape {label.shape}")
        label = validate_label(label, case_id)
        rel_image, rel_label = f"images/{case_id}.nii.gz", f"labels/{case_id}.nii.gz"
        write_nifti(self._tmp / rel_image, image.astype(np.float32), spacing, affine)
        write_nifti(self._tmp / rel_label, label, spacing, affine)
        entry = {"id": case_id, "image": rel_image, "label": rel_label}
        entry.update({k: _plain(v) for k, v in meta.items()})
        self._datalist[split].append(entry)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tmp is not None
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        write_json_atomic(self._tmp / DATALIST, self._datalist)
        write_json_atomic(self._tmp / PROVENANCE, self.provenance)
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        os.replace(self._tmp, self.out_dir)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars so the datalist serialises."""
    return value.item() if isinstance(value, np.generic) else value


def split_ids(
    ids: Iterable[str],
    fractions: Mapping[str, float],
    calibration_fraction: float,
    seed: int,
) -> dict[str, list[str]]:
    """Deterministically split case ids into training / validation / calibration / test.

    ``fractions`` has ``train``, ``validation`` and ``test`` (summing to 1, as the papers'
    70/10/20). The calibration split is carved from the held-out test share:
    ``calibration_fraction`` of it goes to calibration, the rest stays test, so calibration images
    are never trained on nor used for model selection.
    """
    ids = sorted(ids)
    total = sum(fractions[k] for k in ("train", "validation", "test"))
    if not np.isclose(total, 1.0):
        raise ValueError(f"split fractions must sum to 1, got {total:g}")
    if not 0.0 <= calibration_fraction < 1.0:
        raise ValueError(f"calibration_fraction must be in [0, 1), got {calibration_fraction:g}")
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    n = len(shuffled)
    n_train = int(round(fractions["train"] * n))
    n_val = int(round(fractions["validation"] * n))
    held_out = shuffled[n_train + n_val :]
    n_cal = int(round(calibration_fraction * len(held_out)))
    return {
        "training": shuffled[:n_train],
        "validation": shuffled[n_train : n_train + n_val],
        "calibration": held_out[:n_cal],
        "test": held_out[n_cal:],
    }
