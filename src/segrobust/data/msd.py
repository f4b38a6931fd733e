"""Datasets in the Medical Segmentation Decathlon layout: the MSD tasks and a user's own data.

The layout is ``dataset.json`` (with ``labels``, ``modality`` and the ``training`` list of
``{"image", "label"}``) beside ``imagesTr/`` and ``labelsTr/``. Cases come from dataset.json's
``training`` list, not from listing the folders: the MSD tarballs also hold macOS ``._*``
resource-fork files there that are not images.

``label_value`` picks the foreground (binary output); other label values become background.
Volumes are reoriented to the closest canonical (RAS) orientation so that the last array axis is
axial; 2D variants are the axial slices holding enough foreground (``min_fg_pixels`` pixels and
more than ``min_fg_fraction`` of the slice, measured before resizing), 3D variants whole
resampled volumes.

A user's directory is not trusted more than an archive: dataset.json paths must stay inside it
(symlinks followed), two files must not map to one case id, a volume with NaN or infinite voxels
or a label with several channels is refused (naming the file), and a split left empty is an
error, not an empty list downstream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from segrobust.data.dataset import DataError, DatasetWriter, check_finite, confined_path
from segrobust.data.image_header import exception_reason, load_nifti
from segrobust.data.prepare import (
    MAX_RESAMPLED_EDGE,
    PrepareOptions,
    assign_splits,
    case_meta,
    check_split_counts,
    check_unique_ids,
    percentile_intensity,
    resample_volume,
    resampled_shape,
    resize_pair,
    safe_id,
    window_intensity,
)

_LOG = logging.getLogger(__name__)


@dataclass
class MsdCase:
    case_id: str
    image: Path
    label: Path


@dataclass
class MsdLayout:
    """A parsed MSD-layout directory."""

    root: Path
    labels: dict[int, str]
    modality: str
    cases: list[MsdCase]


def read_layout(root: str | Path) -> MsdLayout:
    """Parse ``root/dataset.json`` and check every training case's files exist."""
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DataError(
            f"{meta_path}: not found; an MSD-layout directory holds dataset.json, imagesTr/ and "
            "labelsTr/"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc})") from exc
    training = meta.get("training")
    if not isinstance(training, list) or not training:
        raise DataError(f"{meta_path}: key 'training' missing or empty")
    cases = []
    for item in training:
        if not isinstance(item, dict) or not {"image", "label"} <= set(item):
            raise DataError(f"{meta_path}: training entry {item!r} lacks 'image' or 'label'")
        if not all(isinstance(item[k], str) and item[k] for k in ("image", "label")):
            raise DataError(f"{meta_path}: training entry {item!r}: paths must be strings")
        image = confined_path(root, item["image"], meta_path)
        label = confined_path(root, item["label"], meta_path)
        for path in (image, label):
            if not path.is_file():
                raise DataError(f"{path}: listed in {meta_path} 'training' but not found")
        stem = image.name.split(".")[0]
        cases.append(MsdCase(safe_id(stem), image, label))
    check_unique_ids(((c.case_id, c.image) for c in cases), meta_path)
    try:
        labels = {int(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    except ValueError as exc:
        raise DataError(f"{meta_path}: 'labels' keys must be integers ({exc})") from exc
    modality = str((meta.get("modality") or {}).get("0", "")).strip()
    return MsdLayout(root, labels, modality, sorted(cases, key=lambda c: c.case_id))


def check_label_value(layout: MsdLayout, label_value: int) -> None:
    """Refuse a label value that dataset.json's ``labels`` does not list."""
    if layout.labels and label_value not in layout.labels:
        present = ", ".join(f"{k} ({v})" for k, v in sorted(layout.labels.items()))
        raise DataError(
            f"{layout.root / 'dataset.json'}: label_value {label_value} is not in 'labels'; "
            f"values present: {present}"
        )


def load_volume(
    path: Path, channel: int | None = 0
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A 3D volume in canonical (RAS) orientation with its voxel spacing.

    A 4D image gives its ``channel``; with ``channel=None`` (labels) a 4D file is refused
    unless its fourth axis has length 1: taking one channel of a multi-channel label would
    silently drop the others' foreground.

    Raises:
        DataError: naming the file: declaring more than ``max_image_gb`` (checked from the
            header before reading, :mod:`segrobust.data.image_header`), unreadable, not 3D, or
            holding NaN / infinite voxels (also once converted to float32).
    """
    img = load_nifti(path)
    try:
        img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: not a readable NIfTI image ({exception_reason(exc)})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4 and channel is None:
        raise DataError(
            f"{path}: a label must be a 3D volume, got shape {data.shape} ({data.shape[3]} "
            "channels); store one label map with integer values per structure"
        )
    if data.ndim == 4:
        if not 0 <= channel < data.shape[3]:
            raise DataError(f"{path}: channel {channel} out of range 0..{data.shape[3] - 1}")
        data = data[..., channel]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, got shape {data.shape}")
    check_finite(data, path)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return data, zooms


def intensity_normalisation(opts: PrepareOptions, modality: str) -> dict[str, Any]:
    """How the preparation maps the task's intensities to [0, 1]: the CT window (Hounsfield
    units) or per-volume percentiles, ``normalize: auto`` resolved by the task's modality.
    Recorded in the dataset's provenance (``intensity``): predict maps a new image the same way.
    """
    method = opts.normalize
    if method == "auto":
        method = "window" if modality.upper() == "CT" else "percentile"
    if method == "window":
        return {"method": "window", "window": [float(v) for v in opts.window]}
    return {"method": "percentile", "percentiles": [float(v) for v in opts.percentiles]}


def normalise(volume: np.ndarray, intensity: Mapping[str, Any]) -> np.ndarray:
    """``volume`` mapped to [0, 1] as :func:`intensity_normalisation` says."""
    if intensity["method"] == "window":
        return window_intensity(volume, intensity["window"])
    return percentile_intensity(volume, intensity["percentiles"])


def keep_slice(label_slice: np.ndarray, opts: PrepareOptions) -> bool:
    """Whether a 2D slice holds enough foreground: at least ``min_fg_pixels`` pixels and a
    fraction strictly greater than ``min_fg_fraction`` (the papers' code keeps a slice with more
    than 0.5 % foreground), both measured on the slice as stored, before resizing."""
    n_fg = int(np.count_nonzero(label_slice))
    return n_fg >= opts.min_fg_pixels and n_fg / label_slice.size > opts.min_fg_fraction


def check_min_shape(volume: np.ndarray, path: Path, opts: PrepareOptions, dataset: str) -> None:
    """Refuse a resampled volume smaller than ``opts.min_shape`` (the largest context patch)."""
    if opts.min_shape is None:
        return
    if any(n < m for n, m in zip(volume.shape, opts.min_shape, strict=True)):
        raise DataError(
            f"{path}: resampled to {list(opts.spacing)} mm it is {list(volume.shape)} voxels, "
            f"smaller than the context study's largest patch {list(opts.min_shape)} "
            f"(studies.context.patch_sizes); use smaller patch sizes, a finer "
            f"datasets.{dataset}.spacing, or leave this volume out"
        )


def check_resampled_size(
    volume: np.ndarray, spacing: tuple[float, ...], path: Path, opts: PrepareOptions, dataset: str
) -> None:
    """Refuse a resampling that would make a volume longer than ``MAX_RESAMPLED_EDGE`` voxels
    along an axis, before SimpleITK allocates it."""
    shape = resampled_shape(volume.shape, spacing, opts.spacing)
    if max(shape) > MAX_RESAMPLED_EDGE:
        raise DataError(
            f"{path}: {list(volume.shape)} voxels of {list(spacing)} mm resampled to "
            f"datasets.{dataset}.spacing = {list(opts.spacing)} mm would be {shape} voxels, "
            f"over {MAX_RESAMPLED_EDGE} along an axis; use a coarser spacing"
        )


def write_msd_dataset(
    layout: MsdLayout,
    out_dir: Path,
    opts: PrepareOptions,
    provenance: dict[str, Any],
    log: logging.Logger = _LOG,
) -> None:
    """Write the 2D (axial slices with foreground) or 3D (resampled volumes) dataset."""
    check_label_value(layout, opts.label_value)
    dataset = provenance.get("dataset", out_dir.name)
    cases = layout.cases[: opts.max_cases] if opts.max_cases else layout.cases
    split_of = assign_splits((c.case_id for c in cases), opts, dataset, "volumes")
    intensity = intensity_normalisation(opts, layout.modality)
    provenance = {
        **provenance,
        "modality": layout.modality,
        "labels": layout.labels,
        "intensity": intensity,
    }
    values_seen: set[int] = set()
    without_slices: list[str] = []
    with DatasetWriter(out_dir, provenance) as ds:
        for case in cases:
            image, spacing = load_volume(case.image, opts.channel)
            raw_label, _ = load_volume(case.label, channel=None)
            if raw_label.shape != image.shape:
                raise DataError(
                    f"{case.label}: label shape {raw_label.shape} does not match image "
                    f"{case.image.name} shape {image.shape}"
                )
            values_seen.update(int(v) for v in np.unique(np.rint(raw_label)))
            label = (np.rint(raw_label) == opts.label_value).astype(np.uint8)
            image = normalise(image, intensity)
            split = split_of[case.case_id]
            if opts.variant == "3d":
                check_resampled_size(image, spacing, case.image, opts, dataset)
                image = resample_volume(image, spacing, opts.spacing, is_label=False)
                label = resample_volume(label, spacing, opts.spacing, is_label=True)
                check_min_shape(image, case.image, opts, dataset)
                meta = case_meta(image, label, group=case.case_id, original=case.image.name)
                ds.add(case.case_id, image, label, split=split, spacing=opts.spacing, **meta)
                continue
            in_plane = [spacing[i] * image.shape[i] / opts.image_size[i] for i in (0, 1)]
            kept = [k for k in range(image.shape[2]) if keep_slice(label[..., k], opts)]
            if not kept:
                without_slices.append(case.image.name)
            for k in kept:
                img2, lab2 = resize_pair(image[..., k], label[..., k], opts.image_size)
                meta = case_meta(img2, lab2, group=case.case_id, slice=k, original=case.image.name)
                ds.add(
                    f"{case.case_id}_z{k:03d}", img2, lab2, split=split, spacing=in_plane, **meta
                )
        if opts.label_value not in values_seen:
            raise DataError(
                f"{layout.root}: label_value {opts.label_value} occurs in no label volume; "
                f"values present: {', '.join(map(str, sorted(values_seen)))}"
            )
        counts = ds.counts()
        if not any(counts.values()):
            raise DataError(
                f"{layout.root}: no slice holds at least {opts.min_fg_pixels} foreground pixels "
                f"and more than a fraction {opts.min_fg_fraction:g} of label {opts.label_value}"
            )
        dropped = f", {len(without_slices)} without a slice kept" if without_slices else ""
        check_split_counts(counts, opts, dataset, f"{len(cases)} volumes{dropped}")
    if without_slices:
        log.warning(
            "%d volumes have no slice with enough foreground: %s",
            len(without_slices),
            ", ".join(without_slices),
        )
    log.info("wrote %d cases from %d volumes to %s", sum(counts.values()), len(cases), out_dir)


def find_task_dir(root: Path) -> Path:
    """The one directory holding dataset.json inside an extracted archive."""
    found = sorted(p.parent for p in root.rglob("dataset.json"))
    if len(found) != 1:
        raise DataError(
            f"{root}: expected one dataset.json in the extracted archive, found {len(found)}"
        )
    return found[0]


def prepare_msd_task(
    raw: Path, out_dir: Path, opts: PrepareOptions, provenance: dict, log: logging.Logger = _LOG
) -> None:
    """A downloaded MSD task (spleen CT, heart MRI) into the contract."""
    write_msd_dataset(read_layout(find_task_dir(raw)), out_dir, opts, provenance, log)


def import_msd(
    raw: Path, out_dir: Path, opts: PrepareOptions, provenance: dict, log: logging.Logger = _LOG
) -> None:
    """A user's dataset in the MSD layout (config: ``source: msd_import, path: <dir>``)."""
    write_msd_dataset(read_layout(raw), out_dir, opts, provenance, log)
