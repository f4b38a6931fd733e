"""The dataset contract on disk: NIfTI images and labels plus a decathlon-style ``datalist.json``.

Every dataset, synthetic or downloaded, ends in this form (see docs/ARCHITECTURE.md), so every
downstream stage has this one reader. Reading validates what a job would otherwise trip over later
(unreadable files, non-finite intensities, non-binary labels, image/label shape mismatch, a path
leading out of the dataset directory) and names the offending file. Writing is atomic
(:mod:`segrobust.atomic`): a dataset is assembled in a temporary sibling directory and renamed
into place only when complete, with the permissions the umask gives, so a failed job leaves
nothing behind; a case id may be added once, and a non-finite intensity is refused.

**Array cache.** NIfTI stays the contract. Beside it the writer leaves ``arrays.npz`` when every
case has one shape and all fit in ``CACHE_MAX_BYTES``: the stacked arrays exactly as
:func:`load_case` returns them (read back from the written files), with a manifest naming each
case's files and a BLAKE2 digest of their bytes. :func:`load_split` uses it only when every
requested case is in it and every file's digest still matches (the files are read, not decoded);
otherwise it reads the NIfTI files as before. A test set of 600 small images then loads in a few
tens of milliseconds instead of half a second, and is not re-validated on every job: its arrays
were validated when they were written, and the digests prove the files are the same.

For 2D images the cache also holds each image's LBP codes on the papers' 256 px analysis grid
(``segrobust.data.complexity.analysis_codes``, computed from the cached array itself), with the
LBP parameters they were made with: evaluation scores every test and calibration image under each
model's predicted mask (``segrobust.evaluation.label_free``), and without the cached codes every
model's evaluation recomputed them, ~19 ms per image: 29 of a perturbation evaluation's 49 s
(profiled on the default study, a machine at ~50 ms/step of ``benchmarks/machine_speed.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

import segrobust
from segrobust import atomic
from segrobust.data.complexity import ANALYSIS_SIZE, analysis_codes
from segrobust.data.errors import DataError
from segrobust.data.image_header import exception_reason, load_nifti

SPLITS = ("training", "validation", "calibration", "test")
DATALIST = "datalist.json"
PROVENANCE = "provenance.json"
#: How a dataset's preparation mapped raw intensities to the stored ones, as its provenance
#: records them (``intensity.method``): ``none`` (generated, stored as made), ``window`` (CT
#: window), ``percentile`` (per-volume percentiles), ``gray`` (8-bit photos to [0, 1]).
INTENSITY_METHODS: tuple[str, ...] = ("none", "window", "percentile", "gray")
#: The optional array cache of a dataset (see the module docstring).
CACHE = "arrays.npz"
#: Largest array cache written: beyond it (large 3D volumes) reading the NIfTI files is the
#: smaller cost next to the work done on them, and the cache would double the disk use.
CACHE_MAX_BYTES = 256 * 2**20
#: The LBP settings the cached codes are made with (``analysis_codes``' defaults): codes
#: cached under other settings are not used.
CACHED_LBP = {"points": 24, "radius": 3, "size": ANALYSIS_SIZE}
#: A case id becomes a file name: letters, digits, ``_ . -``, not starting with a dot.
CASE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


@dataclass
class Case:
    """One image with its binary label, as read from a dataset.

    ``meta`` holds the datalist entry's extra keys (``complexity``, ``fg_ratio``, ...);
    ``lbp_codes`` the image's analysis-grid LBP codes when its dataset's array cache holds them
    (module docstring), else None.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    lbp_codes: np.ndarray | None = None


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """Read a NIfTI file as float32 with its voxel spacing and affine.

    Raises:
        DataError: naming ``path`` if it is missing, declares more than ``max_image_gb``
            (:mod:`segrobust.data.image_header`, checked before reading) or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    img = load_nifti(path)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: not a readable NIfTI image ({exception_reason(exc)})") from exc
    if data.ndim not in (2, 3):
        raise DataError(f"{path}: expected a 2D or 3D image, got shape {data.shape}")
    spacing = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    return data, spacing, np.asarray(img.affine, dtype=np.float64)


def count_nonfinite(array: np.ndarray) -> int:
    """Number of NaN or infinite elements of ``array``."""
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def check_finite(array: np.ndarray, what: str | os.PathLike) -> None:
    """Refuse an image holding NaN or infinite voxels, naming ``what`` (a file or a case) and
    the count: one NaN turns a percentile normalisation, and then the training loss, into NaN."""
    bad = count_nonfinite(array)
    if bad:
        raise DataError(
            f"{what}: {bad} of {array.size} voxels are not finite (NaN or infinite); repair "
            "the image or leave the case out"
        )


def validate_label(label: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Return ``label`` as uint8 if it only holds 0 and 1, else raise naming ``path``."""
    values = np.unique(label)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[:10])
        raise DataError(
            f"{path}: label is not binary (values found: {shown}); expected only 0 and 1"
        )
    return label.astype(np.uint8)


def confined_path(root: str | os.PathLike, relative: str, listed_in: str | os.PathLike) -> Path:
    """``root / relative``, refused when it resolves (symlinks followed) outside ``root``.

    A dataset's list (datalist.json, an MSD dataset.json) must not make a job read files
    elsewhere on the machine; ``listed_in`` names that list in the error.
    """
    root = Path(root)
    path = root / relative
    base = root.resolve()
    if not path.resolve().is_relative_to(base):
        raise DataError(
            f"{listed_in}: path {relative!r} resolves to {path.resolve()}, outside the dataset "
            f"directory {base}; paths must stay inside it"
        )
    return path


def load_case(dataset_dir: str | os.PathLike, entry: Mapping[str, Any]) -> Case:
    """Load one datalist entry (paths relative to ``dataset_dir``, confined to it) with its
    checks."""
    root = Path(dataset_dir)
    image_path = confined_path(root, entry["image"], root / DATALIST)
    label_path = confined_path(root, entry["label"], root / DATALIST)
    image, spacing, affine = read_nifti(image_path)
    check_finite(image, image_path)
    label, _, _ = read_nifti(label_path)
    if image.shape != label.shape:
        raise DataError(
            f"{label_path}: label shape {label.shape} does not match image {image_path} "
            f"shape {image.shape}"
        )
    label = validate_label(label, label_path)
    meta = {k: v for k, v in entry.items() if k not in ("image", "label", "id")}
    return Case(_case_id(entry), image, label, spacing, affine, meta)


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


def load_split(dataset_dir: str | os.PathLike, split: str, *, use_cache: bool = True) -> list[Case]:
    """All cases of one split of a dataset: from its verified array cache when it has one
    (``use_cache``), else from the NIfTI files."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    entries = read_datalist(dataset_dir)[split]
    if use_cache and entries:
        cached = cached_cases(dataset_dir, entries)
        if cached is not None:
            return cached
    return [load_case(dataset_dir, e) for e in entries]


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b (128-bit) of a file's bytes: proof that a cached array came from this file."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def cached_cases(dataset_dir: str | os.PathLike, entries: Sequence[Mapping[str, Any]]):
    """``entries`` as cases from the dataset's array cache, or None when there is no cache or it
    does not hold exactly these files (a missing case, other paths, a changed file); a cache
    that cannot be read is reported in the log and skipped."""
    root = Path(dataset_dir)
    path = root / CACHE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            manifest = json.loads(str(cache["manifest"]))
            rows = [manifest["cases"].get(str(_case_id(e))) for e in entries]
            if any(row is None for row in rows) or not _files_match(root, entries, rows):
                return None
            index = np.array([row["index"] for row in rows])
            images, labels = cache["images"][index], cache["labels"][index]
            spacings, affines = cache["spacings"][index], cache["affines"][index]
            codes = (
                cache["lbp_codes"][index]
                if "lbp_codes" in cache.files and manifest.get("lbp") == CACHED_LBP
                else [None] * len(entries)
            )
            if codes[0] is not None and (
                codes.shape[1:] != (ANALYSIS_SIZE, ANALYSIS_SIZE) or codes.dtype != np.uint8
            ):
                raise ValueError(f"LBP codes of shape {codes.shape} and type {codes.dtype}")
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as exc:
        logging.getLogger(__name__).warning(
            "%s: unusable array cache (%s); reading NIfTI", path, exc
        )
        return None
    return [
        Case(
            str(_case_id(entry)), images[i], labels[i], tuple(float(v) for v in spacings[i]),
            affines[i], {k: v for k, v in entry.items() if k not in ("image", "label", "id")},
            codes[i],
        )
        for i, entry in enumerate(entries)
    ]  # fmt: skip


def _files_match(root: Path, entries, rows) -> bool:
    """Every entry names the cached files, confined to ``root``, with the cached digests."""
    for entry, row in zip(entries, rows, strict=True):
        for key in ("image", "label"):
            if entry[key] != row[key]:
                return False
            if (
                file_digest(confined_path(root, entry[key], root / DATALIST))
                != row[f"{key}_digest"]
            ):
                return False
    return True


def _case_id(entry: Mapping[str, Any]) -> str:
    return str(entry.get("id", Path(entry["image"]).name.split(".")[0]))


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
    """Write ``array`` as NIfTI atomically (:func:`segrobust.atomic.atomic_file`).

    The geometry comes from ``affine`` if given, else from ``spacing`` (default 1 per axis).
    """
    if affine is None:
        affine = affine_from_spacing(spacing if spacing is not None else (1.0,) * array.ndim)
    img = nib.Nifti1Image(np.asarray(array), affine)
    if spacing is not None:
        img.header.set_zooms(tuple(float(s) for s in spacing))
    with atomic.atomic_file(path, suffix=".nii.gz") as tmp:
        nib.save(img, tmp)


class DatasetWriter:
    """Builds a dataset in the contract form, atomically.

    Use as a context manager::

        with DatasetWriter(out_dir, provenance={"source": "synthetic", ...}) as ds:
            ds.add("case_000", image, label, spacing=(1.0, 1.0), split="training", complexity=1.2)

    Cases are written under a temporary sibling directory (:func:`segrobust.atomic.atomic_dir`);
    on a clean exit ``datalist.json`` and ``provenance.json`` are written and the directory is
    renamed to ``out_dir`` (replacing an old one). On an exception the temporary directory is
    removed and ``out_dir`` is left untouched; a failed write names the file and the cause
    (e.g. a full disk).
    """

    def __init__(self, out_dir: str | os.PathLike, provenance: Mapping[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.provenance = dict(provenance)
        self._datalist: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        self._split_of: dict[str, str] = {}
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._cache: _CacheBuilder | None = _CacheBuilder(CACHE_MAX_BYTES)

    def __enter__(self) -> DatasetWriter:
        self._tmp = self._stack.enter_context(atomic.atomic_dir(self.out_dir))
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
        """Add one case to ``split``; extra keyword values go into its datalist entry.

        Raises:
            DataError: a case id used before (in any split) or not usable as a file name, a
                shape mismatch, a non-binary label or a non-finite image voxel, naming the case.
        """
        assert self._tmp is not None, "DatasetWriter.add outside its with-block"
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        if not CASE_ID.fullmatch(case_id):
            raise DataError(
                f"case id {case_id!r}: not usable as a file name; allowed: letters, digits, "
                "'_', '.', '-', not starting with '.'"
            )
        if case_id in self._split_of:
            raise DataError(
                f"case id {case_id!r} added twice to {self.out_dir} (first in the "
                f"{self._split_of[case_id]!r} split); case ids must be unique"
            )
        if image.shape != label.shape:
            raise DataError(f"{case_id}: image shape {image.shape} != label shape {label.shape}")
        check_finite(image, f"case {case_id}")
        label = validate_label(label, case_id)
        rel_image, rel_label = f"images/{case_id}.nii.gz", f"labels/{case_id}.nii.gz"
        write_nifti(self._tmp / rel_image, image.astype(np.float32), spacing, affine)
        write_nifti(self._tmp / rel_label, label, spacing, affine)
        entry = {"id": case_id, "image": rel_image, "label": rel_label}
        entry.update({k: _plain(v) for k, v in meta.items()})
        self._datalist[split].append(entry)
        self._split_of[case_id] = split
        if self._cache is not None and not self._cache.add(self._tmp, case_id, entry):
            self._cache = None  # ragged or too large: NIfTI only

    def counts(self) -> dict[str, int]:
        """Cases added so far per split."""
        return {split: len(entries) for split, entries in self._datalist.items()}

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._tmp is not None
        if exc_type is None:
            try:
                atomic.write_json(self._tmp / DATALIST, self._datalist)
                atomic.write_json(self._tmp / PROVENANCE, self.provenance)
                if self._cache is not None and self._cache.cases:
                    self._cache.write(self._tmp / CACHE)
            except BaseException as err:
                if not self._stack.__exit__(type(err), err, err.__traceback__):
                    raise
                return False
        return bool(self._stack.__exit__(exc_type, exc, tb))


class _CacheBuilder:
    """Collects the array cache of a dataset being written (see the module docstring)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.shape: tuple[int, ...] | None = None
        self.cases: dict[str, dict[str, Any]] = {}
        self.images: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.spacings: list[tuple[float, ...]] = []
        self.affines: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []

    def add(self, root: Path, case_id: str, entry: Mapping[str, Any]) -> bool:
        """Add a written case, read back as :func:`load_case` reads it; False when the cache
        cannot take it (another shape, over the size limit)."""
        image, spacing, affine = read_nifti(root / entry["image"])
        label = validate_label(read_nifti(root / entry["label"])[0], root / entry["label"])
        if self.shape is not None and image.shape != self.shape:
            return False
        codes = analysis_codes(image, **CACHED_LBP) if image.ndim == 2 else None
        self.size += image.nbytes + label.nbytes + (0 if codes is None else codes.nbytes)
        if self.size > self.max_bytes:
            return False
        self.shape = image.shape
        self.cases[case_id] = {
            "index": len(self.images), "image": entry["image"], "label": entry["label"],
            "image_digest": file_digest(root / entry["image"]),
            "label_digest": file_digest(root / entry["label"]),
        }  # fmt: skip
        self.images.append(image)
        self.labels.append(label)
        self.spacings.append(spacing)
        self.affines.append(affine)
        if codes is not None:
            self.codes.append(codes)
        return True

    def write(self, path: Path) -> None:
        """The stacked arrays (and a 2D dataset's LBP codes) and the manifest as one
        uncompressed ``.npz`` (its members are read without decompression)."""
        manifest: dict[str, Any] = {"version": 2, "cases": self.cases}
        extra = {}
        if self.codes:
            manifest["lbp"], extra["lbp_codes"] = CACHED_LBP, np.stack(self.codes)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            images=np.stack(self.images), labels=np.stack(self.labels),
            spacings=np.asarray(self.spacings, dtype=np.float64),
            affines=np.stack(self.affines),
            manifest=np.array(json.dumps(manifest)), **extra,
        )  # fmt: skip
        atomic.write_bytes(path, buffer.getvalue())


def generated_provenance(
    source: str, generator: str, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """The provenance of a generated dataset: its source and generator, segrobust's version,
    every parameter the generator used, and its intensities stored as generated (predict has no
    normalisation to reproduce)."""
    return {
        "source": source,
        "intensity": {"method": "none"},
        "generator": generator,
        "segrobust_version": segrobust.__version__,
        "parameters": dict(parameters),
    }


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
