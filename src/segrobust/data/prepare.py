"""Preparation of real datasets into the dataset contract (docs/ARCHITECTURE.md, contract 1).

The entry point :func:`prepare_dataset` takes one ``datasets:`` config entry, verifies the
downloaded archive (also when it was placed by hand), extracts it safely into a temporary
directory, and calls the source's preparation function, which writes the dataset atomically with
:class:`segrobust.data.dataset.DatasetWriter`. Every case carries ``complexity`` (LBP KL
divergence) and ``fg_ratio``; splits come from :func:`segrobust.data.dataset.split_ids`, by
patient where the source knows patients (all slices of one volume, all GlaS images of one
patient, in one split).

2D variants follow the papers: images resized to ``image_size`` (labels nearest-neighbour), the
in-plane spacing after resizing written to the header. 3D variants (context study) are resampled
to ``spacing`` with SimpleITK (linear for images, nearest for labels).

Bad input stops preparation with a :class:`DataError` naming the file or the key, and nothing is
written: non-finite intensities (before any normalisation), source files whose case ids collide,
a split left empty (with the counts and the keys to change), an archive that cannot be read to
its end (with the file to delete, or why a new download would not help).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import SimpleITK as sitk
from skimage.color import rgb2gray
from skimage.transform import resize

import segrobust
from segrobust import atomic
from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import DataError, DatasetWriter, check_finite, split_ids
from segrobust.data.download import verify_file
from segrobust.data.extract import ExtractLimits, UnreadableArchiveError, safe_extract
from segrobust.data.image_header import check_photo, exception_reason
from segrobust.data.sources import (
    CHECKSUM_ALGORITHMS,
    DOWNLOAD_OVERRIDES,
    EXTRACT_LIMIT_KEYS,
    SOURCES,
    Source,
    download_settings,
)

_LOG = logging.getLogger(__name__)

NORMALIZATIONS = ("auto", "window", "percentile")
GRAY_MODES = ("luminance", "mean")
BUSI_CLASSES = ("benign", "malignant", "normal")
#: Keys of a ``datasets:`` entry that are not preparation options: where the raw data come
#: from, and the caps on unpacking its archive (used by the download and the extraction).
DOWNLOAD_KEYS = ("source", "path", *DOWNLOAD_OVERRIDES, *EXTRACT_LIMIT_KEYS)


@dataclass
class PrepareOptions:
    """Preparation parameters of one dataset (the config entry minus the download keys)."""

    variant: str = "2d"
    image_size: list[int] = field(default_factory=lambda: [256, 256])
    spacing: list[float] = field(default_factory=lambda: [1.5, 1.5, 2.0])
    normalize: str = "auto"
    window: list[float] = field(default_factory=lambda: [-200.0, 300.0])
    percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])
    label_value: int = 1
    channel: int = 0
    min_fg_pixels: int = 1
    min_fg_fraction: float = 0.0
    split: dict[str, float] = field(
        default_factory=lambda: {"train": 0.7, "validation": 0.1, "test": 0.2}
    )
    calibration_fraction: float = 0.5
    seed: int = 0
    max_cases: int | None = None
    classes: list[str] = field(default_factory=lambda: ["benign", "malignant"])
    gray: str = "luminance"
    pixel_spacing: float = 1.0
    #: Smallest shape every 3D volume must have after resampling: the context study's largest
    #: patch, passed by the prepare_dataset rule (not a user key), so a patch that cannot fit
    #: a volume fails here, naming it, and not inside MONAI at training time.
    min_shape: list[int] | None = None


OPTION_KEYS = tuple(f.name for f in fields(PrepareOptions))


def parse_entry(name: str, entry: Mapping[str, Any]) -> tuple[Source, PrepareOptions]:
    """Check one ``datasets:`` entry and return its source and preparation options.

    Raises:
        DataError / UnknownNameError: naming the dataset, the key and the allowed values.
    """
    if "source" not in entry:
        raise DataError(f"datasets.{name}: missing key 'source'; allowed: {', '.join(SOURCES)}")
    source = SOURCES.get(entry["source"])
    unknown = sorted(set(entry) - set(OPTION_KEYS) - set(DOWNLOAD_KEYS))
    if unknown:
        allowed = ", ".join(sorted(OPTION_KEYS + DOWNLOAD_KEYS))
        raise DataError(f"datasets.{name}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    values = {k: v for k, v in source.defaults.items() if k in OPTION_KEYS}
    values.update({k: v for k, v in entry.items() if k in OPTION_KEYS})
    if isinstance(values.get("image_size"), int):
        values["image_size"] = [values["image_size"]] * 2
    opts = PrepareOptions(**values)

    def bad(key: str, allowed: str) -> DataError:
        return DataError(f"datasets.{name}.{key}: got {getattr(opts, key)!r}; allowed: {allowed}")

    if opts.variant not in source.variants:
        raise bad("variant", ", ".join(source.variants) + f" (for source {source.name})")
    if opts.normalize not in NORMALIZATIONS:
        raise bad("normalize", ", ".join(NORMALIZATIONS))
    if opts.gray not in GRAY_MODES:
        raise bad("gray", ", ".join(GRAY_MODES))
    if not set(opts.classes) <= set(BUSI_CLASSES) or not opts.classes:
        raise bad("classes", f"a non-empty subset of {', '.join(BUSI_CLASSES)}")
    if len(opts.image_size) != 2 or not 8 <= min(opts.image_size) <= max(opts.image_size) <= 2048:
        raise bad("image_size", "an integer 8..2048 or a list [height, width] of them")
    if len(opts.spacing) != 3 or min(opts.spacing) <= 0:
        raise bad("spacing", "three positive numbers [x, y, z] in mm")
    if len(opts.window) != 2 or opts.window[0] >= opts.window[1]:
        raise bad("window", "[low, high] with low < high")
    if len(opts.percentiles) != 2 or not 0 <= opts.percentiles[0] < opts.percentiles[1] <= 100:
        raise bad("percentiles", "[low, high] with 0 <= low < high <= 100")
    if set(opts.split) != {"train", "validation", "test"}:
        raise bad("split", "a mapping with exactly train, validation, test")
    if opts.max_cases is not None and opts.max_cases < 1:
        raise bad("max_cases", "null (all) or a positive integer")
    if not 0 <= opts.min_fg_fraction < 1:
        raise bad("min_fg_fraction", "a fraction in [0, 1)")
    if opts.min_fg_fraction > 0 and not (opts.variant == "2d" and source.holds_volumes):
        raise bad("min_fg_fraction", "0 unless the dataset is the 2D variant of an MSD source")
    if opts.min_shape is not None and (
        len(opts.min_shape) != 3 or not all(isinstance(n, int) and n >= 1 for n in opts.min_shape)
    ):
        raise bad("min_shape", "null or three positive integers")
    if entry.get("checksum_algorithm", source.algorithm) not in CHECKSUM_ALGORITHMS:
        raise DataError(
            f"datasets.{name}.checksum_algorithm: got {entry['checksum_algorithm']!r}; "
            f"allowed: {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    check_extract_limits(name, entry)
    if source.name == "msd_import" and not entry.get("path"):
        raise DataError(
            f"datasets.{name}: source msd_import needs 'path', the directory holding "
            "imagesTr/, labelsTr/ and dataset.json"
        )
    return source, opts


def check_extract_limits(name: str, entry: Mapping[str, Any]) -> None:
    """The archive caps of an entry are positive numbers (members an integer, ratio >= 1)."""
    rules = {
        "extract_max_gb": (lambda v: v > 0, "a number > 0 (GB written)"),
        "extract_max_members": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
        "extract_max_ratio": (lambda v: v >= 1, "a number >= 1 (bytes written / archive size)"),
    }
    for key, (ok, allowed) in rules.items():
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise DataError(f"datasets.{name}.{key}: got {value!r}; allowed: {allowed}")


def prepare_dataset(
    name: str,
    entry: Mapping[str, Any],
    raw: str | os.PathLike,
    out_dir: str | os.PathLike,
    log: logging.Logger = _LOG,
) -> Path:
    """Prepare dataset ``name`` from ``raw`` (the downloaded archive, or the directory of an
    ``msd_import``) into ``out_dir``, atomically.
    """
    source, opts = parse_entry(name, entry)
    out_dir = atomic.check_output_path(out_dir)  # before the extraction's work folder beside it
    provenance: dict[str, Any] = {
        "dataset": name,
        "source": source.name,
        "licence": source.licence,
        "preparation": asdict(opts),
        "segrobust_version": segrobust.__version__,
    }
    if not source.downloadable:
        provenance["path"] = str(Path(raw).resolve())
        source.preparer()(Path(raw), out_dir, opts, provenance, log)
        return out_dir
    settings = download_settings(source.name, {name: dict(entry)})
    digest = verify_file(
        raw,
        checksum=settings["checksum"],
        algorithm=settings["algorithm"],
        expected_size=settings["expected_size"],
        log=log,
    )
    provenance.update(
        url=settings["url"],
        archive=Path(raw).name,
        checksum=digest,
        checksum_algorithm=settings["algorithm"] if settings["checksum"] else "sha256",
        checksum_verified=settings["checksum"] is not None,
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-extract-{out_dir.name}-", dir=out_dir.parent))
    try:
        limits = ExtractLimits.from_config(dict(entry), key_prefix=f"datasets.{name}.")
        try:
            extracted = safe_extract(raw, work / "raw", log, limits=limits)
        except UnreadableArchiveError as exc:
            advice = unreadable_archive_advice(name, source, Path(raw), settings)
            raise UnreadableArchiveError(f"{exc}; {advice}") from exc
        source.preparer()(extracted, out_dir, opts, provenance, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def unreadable_archive_advice(
    name: str, source: Source, raw: Path, settings: Mapping[str, Any]
) -> str:
    """What to do about a cached archive that cannot be read to its end, and why."""
    if settings["checksum"] is not None:
        return (
            f"its {settings['algorithm']} checksum matched, so it is the very file that checksum "
            "describes and downloading it again would not help: point "
            f"datasets.{name}.url and datasets.{name}.checksum at a good copy"
        )
    return (
        f"no checksum was published for {source.name}, so it was accepted unverified (a "
        f"download by an older segrobust, or a copy placed by hand): delete {raw.resolve()} "
        f"and re-run to download it again (and set datasets.{name}.checksum to pin a good copy)"
    )


# --- shared helpers -------------------------------------------------------------------------


def safe_id(text: str) -> str:
    """A case id from a file stem: lowercase letters, digits and underscores."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()


def resize_pair(
    image: np.ndarray, label: np.ndarray, size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize a 2D image (linear, anti-aliased) and its binary label (nearest neighbour)."""
    size = tuple(int(s) for s in size)
    img = resize(image, size, order=1, anti_aliasing=True, preserve_range=True)
    lab = resize(label.astype(np.uint8), size, order=0, anti_aliasing=False, preserve_range=True)
    return img.astype(np.float32), (lab > 0).astype(np.uint8)


#: Most voxels along one axis of a resampled volume (CT slices are 512 across): a spacing typo
#: (0.01 instead of 1.0 mm) is refused instead of allocating terabytes.
MAX_RESAMPLED_EDGE = 1024


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> list[int]:
    """The shape of a volume of ``shape`` voxels of ``spacing`` mm resampled to ``new_spacing``."""
    sizes = zip(shape, spacing, new_spacing, strict=True)
    return [max(1, int(round(n * s / t))) for n, s, t in sizes]


def resample_volume(
    volume: np.ndarray, spacing: Sequence[float], new_spacing: Sequence[float], is_label: bool
) -> np.ndarray:
    """Resample a 3D array (x, y, z order, as nibabel reads it) to ``new_spacing`` (SimpleITK)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    new_size = resampled_shape(volume.shape, spacing, new_spacing)
    out = sitk.Resample(
        img,
        new_size,
        sitk.Transform(),
        sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear,
        img.GetOrigin(),
        [float(t) for t in new_spacing],
        img.GetDirection(),
        0,
        img.GetPixelID(),
    )
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def window_intensity(image: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """Clip to an intensity window (CT: Hounsfield units) and map it to [0, 1]."""
    lo, hi = float(window[0]), float(window[1])
    return ((np.clip(image, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def percentile_intensity(image: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Clip to the image's own percentiles (MRI has no absolute scale) and map to [0, 1]."""
    lo, hi = np.percentile(image, [float(percentiles[0]), float(percentiles[1])])
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    return window_intensity(image, (lo, hi))


def to_gray(image: np.ndarray, mode: str = "luminance") -> np.ndarray:
    """A 2D float image in [0, 1] from gray, RGB or RGBA 8-bit input."""
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else float(max(image.max(), 1))
    if image.ndim == 2:
        return (image / scale).astype(np.float32)
    rgb = image[..., :3] / scale
    gray = rgb2gray(rgb) if mode == "luminance" else rgb.mean(axis=-1)
    return gray.astype(np.float32)


def case_meta(image: np.ndarray, label: np.ndarray, **extra: Any) -> dict[str, Any]:
    """The datalist keys every prepared case carries."""
    return {
        "complexity": lbp_complexity(image, label),
        "fg_ratio": float(np.mean(label > 0)),
        **extra,
    }


def assign_splits(
    groups: Iterable[str], opts: PrepareOptions, dataset: str, unit: str = "images"
) -> dict[str, str]:
    """Group (patient / volume) -> split name, deterministic given ``opts.seed``.

    Raises:
        DataError: a required split would get no group (see :func:`check_split_counts`).
    """
    groups = sorted(set(groups))
    splits = split_ids(groups, opts.split, opts.calibration_fraction, opts.seed)
    counts = {split: len(members) for split, members in splits.items()}
    check_split_counts(counts, opts, dataset, f"{len(groups)} {unit}")
    return {g: split for split, members in splits.items() for g in members}


def required_splits(opts: PrepareOptions) -> tuple[str, ...]:
    """Splits a prepared dataset must not leave empty: training and validation (training and
    model selection), test, and calibration unless ``calibration_fraction`` is 0."""
    if opts.calibration_fraction > 0:
        return ("training", "validation", "calibration", "test")
    return ("training", "validation", "test")


def groups_needed(opts: PrepareOptions, limit: int = 10_000) -> int | None:
    """Fewest groups that fill every required split with these fractions (None: > ``limit``)."""
    for n in range(1, limit + 1):
        splits = split_ids([str(i) for i in range(n)], opts.split, opts.calibration_fraction, 0)
        if all(splits[s] for s in required_splits(opts)):
            return n
    return None


def check_split_counts(
    counts: Mapping[str, int], opts: PrepareOptions, dataset: str, what: str
) -> None:
    """Refuse a split layout that leaves a required split empty, with the counts and the fix.

    ``what`` says what was split (``"2 volumes"``, ``"5 volumes, 31 slices kept"``).
    """
    empty = [s for s in required_splits(opts) if not counts.get(s)]
    if not empty:
        return
    layout = ", ".join(
        f"{s} {counts.get(s, 0)}" for s in ("training", "validation", "calibration", "test")
    )
    fractions = ", ".join(f"{k} {opts.split[k]:g}" for k in ("train", "validation", "test"))
    needed = groups_needed(opts)
    more = f"at least {needed}" if needed else "more"
    splits = " and ".join(empty) + (" splits" if len(empty) > 1 else " split")
    raise DataError(
        f"dataset {dataset}: the {splits} would be empty ({what} split into "
        f"{layout}); these fractions need {more} volumes / patients / images with data: add "
        f"data, or change datasets.{dataset}.split (now {fractions}) or "
        f"datasets.{dataset}.calibration_fraction (now {opts.calibration_fraction:g}; 0 = no "
        "calibration split)"
    )


def check_unique_ids(sources: Iterable[tuple[str, Path]], where: str | os.PathLike) -> None:
    """Refuse source files whose case ids coincide (``case_07``, ``Case-07`` and ``case 07``
    all become ``case_07``), naming every colliding file: one would silently replace another."""
    by_id: dict[str, list[Path]] = {}
    for case_id, path in sources:
        by_id.setdefault(case_id, []).append(path)
    clashes = {cid: paths for cid, paths in by_id.items() if len(paths) > 1}
    if clashes:
        shown = "; ".join(
            f"{cid!r} from {', '.join(str(p) for p in paths)}"
            for cid, paths in sorted(clashes.items())[:10]
        )
        raise DataError(
            f"{where}: {len(clashes)} case id(s) shared by several source files ({shown}); "
            "case ids keep letters and digits only and ignore case, so rename these files"
        )


def read_image(path: Path) -> np.ndarray:
    """Read a PNG/BMP image, naming the file if its header declares more than
    ``max_image_gb`` (checked before decoding, :mod:`segrobust.data.image_header`) or it cannot
    be decoded."""
    check_photo(path)
    try:
        return np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises several types for corrupt files
        raise DataError(f"{path}: not a readable image ({exception_reason(exc)})") from exc


def write_2d_cases(
    cases: Sequence[tuple[str, str, Path, list[Path]]],
    out_dir: Path,
    opts: PrepareOptions,
    provenance: Mapping[str, Any],
    log: logging.Logger,
) -> None:
    """Write 2D photo-like cases ``(case_id, group, image_path, mask_paths)``: gray, merged
    masks (logical or), resized to ``image_size``."""
    dataset = provenance.get("dataset", out_dir.name)
    check_unique_ids(((c[0], c[2]) for c in cases), f"dataset {dataset}")
    if opts.max_cases is not None:
        cases = cases[: opts.max_cases]
    if not cases:
        raise DataError(f"{out_dir.name}: no images found in the source archive")
    split_of = assign_splits((c[1] for c in cases), opts, dataset, "images / patients")
    # how predict brings a new photo to what the model saw (segrobust.predict.inputs)
    provenance = {**provenance, "intensity": {"method": "gray", "mode": opts.gray}}
    with DatasetWriter(out_dir, provenance) as ds:
        for case_id, group, image_path, mask_paths in cases:
            raw = read_image(image_path)
            check_finite(raw, image_path)
            image = to_gray(raw, opts.gray)
            label = np.zeros(image.shape, dtype=bool)
            for mask_path in mask_paths:
                mask = read_image(mask_path)
                mask = mask[..., :3].max(axis=-1) if mask.ndim == 3 else mask
                if mask.shape != image.shape:
                    raise DataError(
                        f"{mask_path}: mask shape {mask.shape} does not match image "
                        f"{image_path.name} shape {image.shape}"
                    )
                label |= mask > 0
            sizes = zip(image.shape, opts.image_size, strict=True)
            spacing = [opts.pixel_spacing * n / s for n, s in sizes]
            image, label = resize_pair(image, label, opts.image_size)
            ds.add(
                case_id,
                image,
                label,
                split=split_of[group],
                spacing=spacing,
                **case_meta(image, label, group=group, original=image_path.name),
            )
    log.info("wrote %d cases to %s", len(cases), out_dir)


# --- BUSI -----------------------------------------------------------------------------------


def busi_cases(root: Path, classes: Sequence[str]) -> list[tuple[str, str, Path, list[Path]]]:
    """BUSI images with their masks (``<stem>_mask.png``, ``<stem>_mask_1.png``, ...).

    BUSI does not link images to its 600 patients, so each image is its own split group.
    """
    bases = [p for p in root.rglob("*") if p.is_dir() and p.name in BUSI_CLASSES]
    if not bases:
        raise DataError(f"{root}: no BUSI class folder ({', '.join(BUSI_CLASSES)}) found")
    cases = []
    for cls in classes:
        folder = next((b for b in bases if b.name == cls), None)
        if folder is None:
            raise DataError(f"{root}: BUSI class folder {cls!r} missing")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
        masks = [p for p in files if "_mask" in p.stem]
        for image_path in (p for p in files if "_mask" not in p.stem):
            own = [
                m
                for m in masks
                if m.stem == f"{image_path.stem}_mask"
                or m.stem.startswith(f"{image_path.stem}_mask_")
            ]
            if not own:
                raise DataError(f"{image_path}: no mask {image_path.stem}_mask.png beside it")
            case_id = f"{cls}_{safe_id(image_path.stem.replace(cls, ''))}"
            cases.append((case_id, case_id, image_path, sorted(own)))
    return cases


def prepare_busi(
    raw: Path, out_dir: Path, opts: PrepareOptions, provenance: dict, log: logging.Logger = _LOG
) -> None:
    """BUSI (breast ultrasound): the configured classes (default benign + malignant; 'normal'
    has no lesion), converted to gray, all masks of an image merged, resized."""
    write_2d_cases(busi_cases(raw, opts.classes), out_dir, opts, provenance, log)


# --- GlaS -----------------------------------------------------------------------------------


def glas_patients(folder: Path) -> dict[str, str]:
    """Image name -> patient id from GlaS's ``Grade.csv`` (empty if absent)."""
    import csv

    path = folder / "Grade.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = [
            {k.strip().lower(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(f)
        ]
    return {r["name"]: r["patient id"] for r in rows if r.get("name") and r.get("patient id")}


def glas_cases(root: Path) -> list[tuple[str, str, Path, list[Path]]]:
    """GlaS images (``<name>.bmp``) with their instance annotations (``<name>_anno.bmp``),
    grouped by patient where ``Grade.csv`` names one."""
    annos = sorted(root.rglob("*_anno.bmp"))
    if not annos:
        raise DataError(f"{root}: no GlaS annotation (*_anno.bmp) found")
    patients = glas_patients(annos[0].parent)
    cases = []
    for anno in annos:
        stem = anno.stem[: -len("_anno")]
        image_path = anno.with_name(f"{stem}.bmp")
        if not image_path.is_file():
            raise DataError(f"{anno}: no image {image_path.name} beside it")
        group = f"patient_{safe_id(patients[stem])}" if stem in patients else safe_id(stem)
        cases.append((safe_id(stem), group, image_path, [anno]))
    return cases


def prepare_glas(
    raw: Path, out_dir: Path, opts: PrepareOptions, provenance: dict, log: logging.Logger = _LOG
) -> None:
    """GlaS (colon histology): every gland instance -> foreground, image to gray (luminance or
    channel mean), resized."""
    write_2d_cases(glas_cases(raw), out_dir, opts, provenance, log)
