"""The calibration file of a model run: the conformal guarantees travel with ``model.pt``.

``results/<study>/models/<run>/calibration.json`` (written by rule ``evaluate_model``, which
predicts the calibration split anyway: :class:`CalibrationRecorder`) holds what a segmentation
of an image nobody has labelled needs to carry a confidence rating:

* the **Dice lower bound**: the sorted calibration scores ``quality - dice`` of the run's
  in-domain calibration images (``segrobust.analysis.conformal``, guarantee (b)), so the bound
  ``clip(quality - q_hat, 0, 1)`` can be computed at any confidence level without the tables;
* the **FNR control**: the mean calibration false-negative-rate curve over the thresholds of
  ``FNR_THRESHOLDS`` and its n (guarantee (a)), so t-hat is computable at any level;
* the **calibration images' statistics**: per calibration image the label-free statistics that
  ``predict`` reports for a new image (``label_free_statistics``: LBP complexity under the
  predicted mask, predicted foreground ratio, intensity-noise estimate, quality), computed from
  the model's probabilities on the calibration split during evaluation, and their ranges (a
  description: the applicability check below compares them jointly, like for like, never
  against label-based ones);
* the **preprocessing** that turns a raw image into what the model was trained on (orientation,
  intensity normalisation, size or spacing), read from the dataset's ``provenance.json`` and
  its stored images, and the sliding-window settings of evaluation;
* the model file's SHA-256, so a calibration is never applied to another model;
* the **applicability check** (format 3): the joint check of how unlike the calibration images
  a new image is, and the held-out evidence its flag level is chosen on
  (``segrobust.analysis.applicability``, recorded by
  ``segrobust.evaluation.applicability_recorder``); an image it flags gets no guarantee.

The file holds no confidence or FNR level: the bound and the threshold are computed at the level
a reader asks for from the stored scores and curve (:class:`Calibration`), so changing the
analysis levels re-runs no evaluation. Where a guarantee is undefined at that level (too few
calibration images), the status says so with the minimum n, exactly as the analysis does.

The file format is versioned (``format_version``); a reader refuses a version it does not know.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

import segrobust
from segrobust.analysis import conformal
from segrobust.analysis.applicability import ApplicabilityRule, FlagLevel, applicability_rule
from segrobust.contract import RUN_KEYS, Run, in_domain
from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import PROVENANCE, Case
from segrobust.data.sources import SOURCES
from segrobust.evaluation.metrics import FNR_THRESHOLDS, foreground_ratio, soft_quality

#: Version of the calibration file layout; bump it whenever a key changes meaning.
FORMAT_VERSION = 3

#: The calibration file's name, beside ``model.pt``.
CALIBRATION_FILE = "calibration.json"

#: Threshold of the reported mask (as in evaluation, ``segrobust.evaluation.evaluate``).
MASK_THRESHOLD = 0.5

#: Label-free statistics of an image and its prediction whose calibrated range is checked.
RANGE_STATISTICS: tuple[str, ...] = ("complexity", "predicted_fg_ratio", "noise_sigma")

#: How a dataset's source normalised its intensities (``preprocessing.intensity.method``).
INTENSITY_METHODS: tuple[str, ...] = ("none", "window", "percentile", "gray")

#: Sources whose preparation is ``segrobust.data.msd`` (CT window or MRI percentiles).
_MSD_PREPARERS = ("segrobust.data.msd:prepare_msd_task", "segrobust.data.msd:import_msd")
#: Sources whose preparation is ``segrobust.data.prepare.to_gray`` (8-bit photos to [0, 1]).
_GRAY_PREPARERS = ("segrobust.data.prepare:prepare_busi", "segrobust.data.prepare:prepare_glas")
#: Generators whose images are stored as generated (no normalisation to reproduce).
_GENERATED_SOURCES = ("synthetic-texture", "synthetic-spheres")


class CalibrationError(ValueError):
    """A calibration file that is missing, unreadable or does not fit its model; the message
    names the file."""


# --- what is measured on every image --------------------------------------------------------


def noise_sigma(image: np.ndarray) -> float:
    """Robust estimate of the standard deviation of additive Gaussian noise in ``image``.

    The wavelet estimator of Donoho & Johnstone (1994): the median absolute deviation of the
    finest-scale diagonal wavelet coefficients divided by 0.6745 (the MAD of a standard
    normal). The diagonal band (a difference along every axis) holds little of an image's
    structure, so the estimate follows the noise; on fine textures it includes some texture,
    which is why a new image is compared against the same estimate on the calibration images,
    not against a noise level. Measured on the model-space image (after normalisation), so it
    is in the units the model saw; NaN for an image with an axis shorter than 2.

    This is ``skimage.restoration.estimate_sigma`` with the Haar (db1) wavelet, written out
    because that function needs PyWavelets, which segrobust does not depend on: the orthonormal
    Haar diagonal coefficient of a 2 x 2 (x 2) block is its signed sum / 2^(ndim / 2), so pure
    noise of standard deviation sigma gives coefficients of standard deviation sigma.
    """
    detail = np.asarray(image, dtype=np.float64)
    if min(detail.shape) < 2:
        return float("nan")
    for axis in range(detail.ndim):
        even = [slice(None)] * detail.ndim
        odd = [slice(None)] * detail.ndim
        stop = detail.shape[axis] // 2 * 2
        even[axis], odd[axis] = slice(0, stop, 2), slice(1, stop, 2)
        detail = (detail[tuple(even)] - detail[tuple(odd)]) / np.sqrt(2.0)
    return float(np.median(np.abs(detail)) / norm.ppf(0.75))


def label_free_statistics(image: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """What ``predict`` reports about an image without a label, from the model-space image and
    the model's probabilities on it.

    Returns:
        ``complexity`` (LBP KL divergence in bits, ``segrobust.data.complexity``, under the
        predicted mask ``prob >= 0.5``; NaN when that mask is empty or full),
        ``predicted_fg_ratio`` (foreground fraction of that mask), ``noise_sigma``
        (:func:`noise_sigma`) and ``quality`` (the soft-Dice self-estimate the Dice bound is
        calibrated on, ``segrobust.evaluation.metrics.soft_quality``).
    """
    mask = np.asarray(prob) >= MASK_THRESHOLD
    return {
        "complexity": lbp_complexity(image, mask),
        "predicted_fg_ratio": foreground_ratio(mask),
        "noise_sigma": noise_sigma(image),
        "quality": soft_quality(prob),
    }


# --- what reproduces the model's input ------------------------------------------------------


def _read_provenance(dataset_dir: Path) -> dict[str, Any]:
    path = dataset_dir / PROVENANCE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{path}: not found; the dataset's preparation is unknown") from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}: not valid JSON ({exc})") from exc


def intensity_normalisation(provenance: Mapping[str, Any], where: str | os.PathLike) -> dict:
    """How the dataset's preparation mapped raw intensities to the stored ones.

    Generated datasets are stored as generated (``none``); MSD sources used the CT window or the
    per-volume percentiles (``normalize: auto`` resolved by the recorded modality, as
    ``segrobust.data.msd.normalise`` does); BUSI and GlaS photos were scaled to [0, 1]
    (``gray``: 8-bit values / 255, else / max(max, 1), ``segrobust.data.prepare.to_gray``).

    Raises:
        CalibrationError: naming ``where`` for a source whose preparation is not known.
    """
    source = str(provenance.get("source", ""))
    if source in _GENERATED_SOURCES:
        return {"method": "none"}
    prepare = SOURCES.get(source).prepare if source in SOURCES else None
    options = provenance.get("preparation") or {}
    if prepare in _MSD_PREPARERS:
        method = options.get("normalize", "auto")
        if method == "auto":
            modality = str(provenance.get("modality", ""))
            method = "window" if modality.upper() == "CT" else "percentile"
        if method == "window":
            return {"method": "window", "window": [float(v) for v in options["window"]]}
        return {"method": "percentile", "percentiles": [float(v) for v in options["percentiles"]]}
    if prepare in _GRAY_PREPARERS:
        return {"method": "gray"}
    known = ", ".join([*_GENERATED_SOURCES, *SOURCES.names()])
    raise CalibrationError(
        f"{where}: source {source!r} is not one whose intensity normalisation segrobust can "
        f"reproduce on new images; known sources: {known}"
    )


def _common(values: Sequence[tuple], what: str, where: Path) -> list:
    distinct = sorted(set(values))
    if len(distinct) != 1:
        raise CalibrationError(
            f"{where}: the calibration images differ in {what} ({distinct[:5]}); a new image "
            f"cannot be brought to one model input {what}"
        )
    return list(distinct[0])


@dataclass(frozen=True)
class ImageGrid:
    """The voxel grid of one stored image: its shape and spacing (what the model saw)."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]

    @classmethod
    def of(cls, case: Case) -> ImageGrid:
        return cls(tuple(int(n) for n in case.image.shape), tuple(map(float, case.spacing)))


def dataset_preprocessing(
    dataset_dir: str | os.PathLike, grids: Sequence[ImageGrid], ndim: int
) -> dict:
    """The preprocessing that brings a raw image to the model's input, as the dataset's
    preparation did (docs/ARCHITECTURE.md, contract 1).

    Every stored dataset is in the closest canonical (RAS+) orientation: generated arrays and
    photos are written with diagonal positive affines, MSD volumes are reoriented. 2D images
    are resized to the common size of the stored images (the preparation's ``image_size``,
    or the generator's); 3D volumes are resampled to their common spacing.

    Args:
        dataset_dir: the training dataset (its ``provenance.json`` is read).
        grids: the grids of stored images of the dataset (they define the model grid).
        ndim: the model's spatial dimensionality.
    """
    dataset_dir = Path(dataset_dir)
    provenance = _read_provenance(dataset_dir)
    if not grids:
        raise CalibrationError(f"{dataset_dir}: no images to read the model's input grid from")
    size = spacing = None
    if ndim == 2:
        size = [int(n) for n in _common([g.shape for g in grids], "size", dataset_dir)]
    else:
        rounded = [tuple(round(float(s), 6) for s in g.spacing) for g in grids]
        spacing = [float(s) for s in _common(rounded, "spacing", dataset_dir)]
    return {
        "dataset": provenance.get("dataset", dataset_dir.name),
        "source": provenance.get("source"),
        "orientation": "closest_canonical",
        "intensity": intensity_normalisation(provenance, dataset_dir / PROVENANCE),
        "size": size,
        "spacing": spacing,
    }


# --- building the file ----------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _list(values: Any) -> list[float | None]:
    return [_finite_or_none(v) for v in np.asarray(values, dtype=float)]


def _range(values: Any) -> list[float] | None:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return [float(finite.min()), float(finite.max())] if finite.size else None


def _run_rows(table: pd.DataFrame, run: Run, what: str) -> pd.DataFrame:
    """The rows of ``table`` that belong to ``run``, refusing a table of another run."""
    key = pd.Series(run.columns)
    own = (table[list(RUN_KEYS)].astype(str) == key.astype(str)).all(axis=1)
    if len(table) and not own.any():
        raise CalibrationError(f"{what}: no rows of run {run.model_dir}")
    return table[own]


def dice_bound_block(per_image: pd.DataFrame) -> dict[str, Any]:
    """Sorted calibration scores ``quality - dice`` of the in-domain calibration images; the
    bound at a level is computed from them (:meth:`Calibration.dice_bound`)."""
    rows = conformal.calibration_rows(per_image).dropna(subset=["quality", "dice"])
    scores = np.sort((rows["quality"] - rows["dice"]).to_numpy(float))
    return {"score": "quality - dice", "n": int(scores.size), "scores": _list(scores)}


def fnr_block(fnr: pd.DataFrame) -> dict[str, Any]:
    """Mean calibration FNR per threshold (images with a foreground only, as
    ``conformal_fnr``) and its n; t-hat at a level is computed from them
    (:meth:`Calibration.fnr_control`)."""
    rows = conformal.calibration_rows(fnr).dropna(subset=["fnr"])
    curve = rows.groupby("threshold")["fnr"].mean().reindex(FNR_THRESHOLDS)
    return {
        "n": int(rows["image_id"].nunique()),
        "thresholds": [float(t) for t in FNR_THRESHOLDS],
        "mean_fnr": _list(curve.to_numpy()),
    }


def calibration_image_block(
    per_image: pd.DataFrame, statistics: Mapping[str, Mapping[str, float]], where: str
) -> dict[str, list]:
    """Per calibration image (in the per-image table's order): the label-free statistics of
    the re-prediction and the label-based complexity and foreground ratio of the table.

    Raises:
        CalibrationError: when the table's calibration images and the dataset's calibration
            split are not the same images (a table from another dataset or an older split).
    """
    rows = conformal.calibration_rows(per_image)
    ids = rows["image_id"].astype(str).tolist()
    if sorted(ids) != sorted(statistics):
        missing = sorted(set(ids) ^ set(statistics))[:5]
        raise CalibrationError(
            f"{where}: the calibration rows and the dataset's calibration split are different "
            f"images (e.g. {', '.join(missing)}); re-run the evaluation of this run"
        )
    block: dict[str, list] = {"image_id": ids}
    for name in (*RANGE_STATISTICS, "quality"):
        block[name] = _list([statistics[i][name] for i in ids])
    block["label_complexity"] = _list(rows["complexity"])
    block["label_fg_ratio"] = _list(rows["fg_ratio"])
    return block


def build_calibration(
    per_image: pd.DataFrame,
    fnr: pd.DataFrame,
    *,
    run: Run,
    model_info: Mapping[str, Any],
    model_sha256: str,
    preprocessing: Mapping[str, Any],
    statistics: Mapping[str, Mapping[str, float]],
    window: Mapping[str, Any] | None,
    applicability: Mapping[str, Any] | None = None,
    where: str = "per_image.csv",
) -> dict[str, Any]:
    """The calibration document of one run (see the module docstring for its keys).

    Args:
        per_image, fnr: the run's contract-4 tables (other runs' rows are refused).
        run: the model run.
        model_info: ``model.pt``'s metadata (``load_model_file``).
        model_sha256: the model file's digest.
        preprocessing: :func:`dataset_preprocessing`.
        statistics: image id -> :func:`label_free_statistics` of each calibration image.
        window: the sliding-window settings of evaluation (None for whole-image models).
        applicability: the applicability block (``ApplicabilityRecorder.finish``).
        where: names the tables in errors.
    """
    per_image = _run_rows(per_image, run, where)
    fnr = _run_rows(fnr, run, where)
    images = calibration_image_block(per_image, statistics, where)
    dice = conformal.calibration_rows(per_image)["dice"].to_numpy(float)
    return {
        "format_version": FORMAT_VERSION,
        "segrobust_version": segrobust.__version__,
        "run": run.columns,
        "model": {
            "file": "model.pt",
            "sha256": model_sha256,
            "arch": model_info["arch"],
            "spatial_dims": int(model_info["spatial_dims"]),
            "img_size": model_info.get("img_size"),
            "patch_size": model_info.get("patch_size"),
        },
        "inference": dict(window) if window else None,
        "preprocessing": dict(preprocessing),
        "dice_bound": dice_bound_block(per_image),
        "fnr": fnr_block(fnr),
        "calibration_images": images,
        "ranges": {name: _range(images[name]) for name in RANGE_STATISTICS},
        "label_ranges": {
            "complexity": _range(images["label_complexity"]),
            "fg_ratio": _range(images["label_fg_ratio"]),
        },
        "mean_dice": _finite_or_none(np.mean(dice)) if dice.size else None,
        "applicability": dict(applicability) if applicability is not None else None,
    }


def calibration_text(document: Mapping[str, Any]) -> str:
    """The document as strict JSON (no NaN / Infinity tokens), as the file holds it."""
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


class CalibrationRecorder:
    """Collects, while ``evaluate_run`` predicts a run's conditions, what ``calibration.json``
    needs beyond the evaluation tables: the label-free statistics of each in-domain calibration
    image (from the probabilities evaluation computed anyway, so no image is predicted twice)
    and the grid of the training dataset's stored images.

    Args:
        run: the model run.
        model_path: its ``model.pt`` (digest and metadata go into the file).
        model_info: ``model.pt``'s metadata (``load_model_file``).
        window: the sliding-window settings of evaluation (None for whole-image models).
    """

    def __init__(
        self,
        run: Run,
        model_path: str | os.PathLike,
        model_info: Mapping[str, Any],
        window: Mapping[str, Any] | None,
    ) -> None:
        self.run, self.model_path, self.model_info = run, Path(model_path), model_info
        self.window = window
        self.dataset_dir: Path | None = None
        self.statistics: dict[str, dict[str, float]] = {}
        self.grids: list[ImageGrid] = []

    def wants(self, condition_name: str, split: str, dataset_dir: str | os.PathLike) -> bool:
        """Whether a condition is the run's in-domain calibration split (whose images the
        guarantees are calibrated on); remembers its dataset, the training dataset."""
        row = {"condition": condition_name, "dataset": self.run.dataset}
        if split != "calibration" or not in_domain(row):
            return False
        self.dataset_dir = Path(dataset_dir)
        return True

    def observe(self, case: Case, prob: np.ndarray) -> None:
        """Record one calibration image and the model's probabilities on it."""
        self.statistics[case.case_id] = label_free_statistics(case.image, prob)
        self.grids.append(ImageGrid.of(case))

    def document(
        self,
        per_image: pd.DataFrame,
        fnr: pd.DataFrame,
        training_grids: Callable[[Path], Sequence[ImageGrid]],
        applicability: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The calibration document, from the run's finished tables.

        Args:
            training_grids: the grids of the training split of a dataset; read only when the
                dataset has no calibration images (``n_calibration`` 0) to define the model grid.

        Raises:
            CalibrationError: no calibration condition was evaluated, a dataset whose
                preparation cannot be reproduced, or tables that do not match the images.
        """
        if self.dataset_dir is None:
            raise CalibrationError(
                f"{self.model_path}: no in-domain calibration condition was evaluated, so "
                f"there is nothing to calibrate on"
            )
        ndim = int(self.model_info["spatial_dims"])
        grids = self.grids or training_grids(self.dataset_dir)
        return build_calibration(
            per_image,
            fnr,
            run=self.run,
            model_info=self.model_info,
            model_sha256=file_sha256(self.model_path),
            preprocessing=dataset_preprocessing(self.dataset_dir, grids, ndim),
            statistics=self.statistics,
            window=self.window,
            applicability=applicability,
            where=f"evaluation of {self.model_path}",
        )


# --- reading the file -----------------------------------------------------------------------

#: Keys every calibration document of ``FORMAT_VERSION`` holds.
REQUIRED_KEYS: tuple[str, ...] = (
    "format_version", "run", "model", "inference", "preprocessing", "dice_bound", "fnr",
    "calibration_images", "ranges", "mean_dice", "applicability",
)  # fmt: skip


@dataclass(frozen=True)
class DiceBound:
    """The per-image Dice lower bound at one confidence level."""

    bound: float  # NaN when undefined
    q_hat: float  # infinite when undefined
    confidence: float
    status: str  # ``defined`` or why not (``segrobust.analysis.conformal.bound_status``)

    @property
    def defined(self) -> bool:
        return self.status == conformal.DEFINED


@dataclass(frozen=True)
class FnrControl:
    """The conformal-risk-control threshold at one FNR level."""

    threshold: float
    certified: bool
    level: float
    status: str  # ``controlled`` or why not (``segrobust.analysis.conformal.fnr_status``)


@dataclass(frozen=True)
class Calibration:
    """A read, checked calibration file; computes the guarantees at any level."""

    path: Path
    document: Mapping[str, Any]

    @classmethod
    def read(cls, path: str | os.PathLike) -> Calibration:
        """Read ``path``.

        Raises:
            CalibrationError: naming the file: missing, not JSON, another format version, or
                keys missing.
        """
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(f"{path}: calibration file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"{path}: not a readable calibration file ({exc})") from exc
        if not isinstance(document, dict):
            raise CalibrationError(f"{path}: not a calibration file (a JSON object expected)")
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            raise CalibrationError(
                f"{path}: calibration format_version {version!r} is not supported (this "
                f"segrobust reads version {FORMAT_VERSION}); re-run the evaluation (rule "
                f"evaluate_model) to write it"
            )
        missing = [key for key in REQUIRED_KEYS if key not in document]
        if missing:
            raise CalibrationError(f"{path}: calibration file lacks {', '.join(missing)}")
        return cls(path, document)

    @property
    def run_name(self) -> str:
        """``<study>/<dataset>/<arch>/p<patch>/seed<seed>``: the run's path below results/."""
        run = self.document["run"]
        return f"{run['study']}/{run['dataset']}/{run['arch']}/p{run['patch']}/seed{run['seed']}"

    @property
    def arch(self) -> str:
        return str(self.document["model"]["arch"])

    @property
    def spatial_dims(self) -> int:
        return int(self.document["model"]["spatial_dims"])

    @property
    def preprocessing(self) -> Mapping[str, Any]:
        return self.document["preprocessing"]

    @property
    def n_calibration(self) -> int:
        return int(self.document["dice_bound"]["n"])

    @property
    def mean_dice(self) -> float:
        """Mean Dice of the calibration images (NaN without any)."""
        value = self.document["mean_dice"]
        return float("nan") if value is None else float(value)

    def check_model(self, model_path: str | os.PathLike) -> None:
        """Refuse a model file other than the one this calibration was computed for."""
        expected = self.document["model"]["sha256"]
        if file_sha256(model_path) != expected:
            raise CalibrationError(
                f"{self.path}: was computed for another model file than {model_path} (SHA-256 "
                f"differs); re-run rule evaluate_model for this run"
            )

    def dice_bound(self, quality: float, confidence: float) -> DiceBound:
        """``clip(quality - q_hat, 0, 1)`` with q_hat the conformal quantile of the stored
        scores at alpha = 1 - ``confidence`` (``segrobust.analysis.conformal``)."""
        check_level(confidence, "confidence")
        alpha = 1.0 - confidence
        scores = np.asarray(self.document["dice_bound"]["scores"], dtype=float)
        q_hat = conformal.conformal_quantile(scores, alpha)
        bound = float(conformal.dice_lower_bound(quality, q_hat))
        status = conformal.bound_status(int(scores.size), alpha)
        return DiceBound(bound, q_hat, confidence, status)

    def fnr_control(self, level: float) -> FnrControl:
        """t-hat of conformal risk control at FNR ``level`` from the stored mean curve."""
        check_level(level, "FNR level")
        block = self.document["fnr"]
        n = int(block["n"])
        if n:
            curve = np.asarray(block["mean_fnr"], dtype=float)
            t_hat, certified = conformal.crc_threshold(block["thresholds"], curve, n, level)
        else:
            t_hat, certified = 0.0, False
        return FnrControl(t_hat, certified, level, conformal.fnr_status(certified, n, level))

    def applicability_rule(self, confidence: float) -> ApplicabilityRule:
        """The applicability check with its flag level at ``confidence``
        (``segrobust.analysis.applicability``); a file without a check flags every image.

        Raises:
            CalibrationError: naming the file, when its check cannot be read.
        """
        alpha = 1.0 - check_level(confidence, "confidence")
        block = self.document["applicability"]
        if block is None:
            reason = "the calibration file holds no applicability check"
            return ApplicabilityRule(None, FlagLevel(1.0, reason), reason)
        try:
            return applicability_rule(block, self.document["dice_bound"]["scores"], alpha)
        except (ValueError, KeyError, TypeError) as exc:
            raise CalibrationError(f"{self.path}: unreadable applicability check ({exc})") from exc


def check_level(value: float, what: str) -> float:
    """``value`` if it lies in (0, 1), else a ValueError naming ``what``."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{what} must lie strictly between 0 and 1, got {value:g}")
    return value
