"""The calibration file of a model run: the conformal guarantees travel with ``model.pt``.

``results/<study>/models/<run>/calibration.json`` (written by rule ``evaluate_model``, which
predicts the calibration split anyway: ``segrobust.evaluation.calibration``) holds what a
segmentation of an image nobody has labelled needs to carry a confidence rating:

* the **Dice lower bound**: the sorted calibration scores ``quality - dice`` of the run's
  in-domain calibration images (``segrobust.guarantees.kernel``, guarantee (b)), so the bound
  ``clip(quality - q_hat, 0, 1)`` can be computed at any confidence level without the tables;
* the **FNR control**: the mean calibration false-negative-rate curve over the thresholds of
  ``FNR_THRESHOLDS`` and its n (guarantee (a)), so t-hat is computable at any level;
* the **calibration images' statistics**: per calibration image the label-free statistics that
  ``predict`` reports for a new image (``segrobust.evaluation.label_free``: LBP complexity under
  the predicted mask, predicted foreground ratio, intensity-noise estimate, quality), computed
  from the model's probabilities on the calibration split during evaluation, and their ranges (a
  description: the applicability check below compares them jointly, like for like, never
  against label-based ones);
* the **preprocessing** that turns a raw image into what the model was trained on (orientation,
  intensity normalisation, size or spacing: ``segrobust.evaluation.preprocessing``), and the
  sliding-window settings of evaluation;
* the model file's SHA-256, so a calibration is never applied to another model;
* the **applicability check** (format 3): the joint check of how unlike the calibration images
  a new image is, and the held-out evidence its flag level is chosen on
  (``segrobust.guarantees.applicability``, recorded by
  ``segrobust.evaluation.applicability_recorder``); an image it flags gets no guarantee.

The file holds no confidence or FNR level: the bound and the threshold are computed at the level
a reader asks for from the stored scores and curve (:class:`Calibration`,
``segrobust.guarantees.bounds``), so changing the analysis levels re-runs no evaluation. Where a
guarantee is undefined at that level (too few calibration images), the status says so with the
minimum n, exactly as the analysis does.

The file format is versioned (``format_version``); a reader refuses a version it does not know.
Torch-free: evaluation writes the file, predict reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import segrobust
from segrobust.contract import RUN_KEYS, Run
from segrobust.guarantees.applicability import ApplicabilityRule, FlagLevel, applicability_rule
from segrobust.guarantees.bounds import (
    DiceBound,
    FnrControl,
    check_level,
    dice_bound,
    fnr_control,
)
from segrobust.guarantees.calibration_schema import document_problem, read_calibration_json
from segrobust.guarantees.kernel import FNR_THRESHOLDS, calibration_rows

#: Version of the calibration file layout; bump it whenever a key changes meaning.
FORMAT_VERSION = 3

#: The calibration file's name, beside ``model.pt``.
CALIBRATION_FILE = "calibration.json"

#: Label-free statistics of an image and its prediction whose calibrated range is checked.
RANGE_STATISTICS: tuple[str, ...] = ("complexity", "predicted_fg_ratio", "noise_sigma")


class CalibrationError(ValueError):
    """A calibration file that is missing, unreadable or does not fit its model; the message
    names the file."""


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
    rows = calibration_rows(per_image).dropna(subset=["quality", "dice"])
    scores = np.sort((rows["quality"] - rows["dice"]).to_numpy(float))
    return {"score": "quality - dice", "n": int(scores.size), "scores": _list(scores)}


def fnr_block(fnr: pd.DataFrame) -> dict[str, Any]:
    """Mean calibration FNR per threshold (images with a foreground only, as
    ``conformal_fnr``) and its n; t-hat at a level is computed from them
    (:meth:`Calibration.fnr_control`)."""
    rows = calibration_rows(fnr).dropna(subset=["fnr"])
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
    rows = calibration_rows(per_image)
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
        preprocessing: ``segrobust.evaluation.preprocessing.dataset_preprocessing``.
        statistics: image id -> ``segrobust.evaluation.label_free.label_free_statistics`` of
            each calibration image.
        window: the sliding-window settings of evaluation (None for whole-image models).
        applicability: the applicability block
            (``segrobust.evaluation.applicability_recorder.ApplicabilityRecorder.finish``);
            None: no check, so ``predict`` flags every image.
        where: names the tables in errors.
    """
    per_image = _run_rows(per_image, run, where)
    fnr = _run_rows(fnr, run, where)
    images = calibration_image_block(per_image, statistics, where)
    dice = calibration_rows(per_image)["dice"].to_numpy(float)
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


# --- reading the file -----------------------------------------------------------------------

#: Keys every calibration document of ``FORMAT_VERSION`` holds.
REQUIRED_KEYS: tuple[str, ...] = (
    "format_version", "run", "model", "inference", "preprocessing", "dice_bound", "fnr",
    "calibration_images", "ranges", "mean_dice", "applicability",
)  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """A read, checked calibration file; computes the guarantees at any level."""

    path: Path
    document: Mapping[str, Any]

    @classmethod
    def read(cls, path: str | os.PathLike) -> Calibration:
        """Read ``path``.

        Raises:
            CalibrationError: naming the file: missing, too large, not JSON, another format
                version, or any field that does not fit its layout and numbers
                (``segrobust.guarantees.calibration_schema``), naming the field.
        """
        path = Path(path)
        try:
            document = read_calibration_json(path)
        except FileNotFoundError:
            raise CalibrationError(f"{path}: calibration file not found") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, too large
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
        problem = document_problem(document)
        if problem:
            raise CalibrationError(f"{path}: {problem}; re-run rule evaluate_model for this run")
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
        """The Dice lower bound of an image of self-estimated ``quality`` at ``confidence``,
        from the stored calibration scores (``segrobust.guarantees.bounds``)."""
        return dice_bound(self.document["dice_bound"]["scores"], quality, confidence)

    def fnr_control(self, level: float) -> FnrControl:
        """t-hat of conformal risk control at FNR ``level`` from the stored mean curve."""
        return fnr_control(self.document["fnr"], level)

    def applicability_rule(self, confidence: float) -> ApplicabilityRule:
        """The applicability check with its flag level at ``confidence``
        (``segrobust.guarantees.applicability``); a file without a check flags every image.

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
        except (ValueError, KeyError, TypeError) as exc:  # ApplicabilityError is a ValueError
            raise CalibrationError(f"{self.path}: unreadable applicability check ({exc})") from exc
