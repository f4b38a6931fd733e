"""Evaluate one trained model on its test conditions: the per-image table of contract 4.

For each test condition (a dataset directory and split, plus metadata columns) every image is
predicted once, thresholded at 0.5 and scored; the table holds one row per (condition, image) and
a long-form false-negative-rate table holds the FNR curve of each image. These two files are all
that aggregation, statistics and conformal analysis read: nothing downstream re-runs a model.
The same pass records what the run's ``calibration.json`` needs (the label-free statistics of
its in-domain calibration images, ``segrobust.evaluation.calibration``), so ``predict`` gets
its guarantees without predicting the calibration split a second time, and every image's
applicability evidence (``segrobust.evaluation.applicability_recorder``: its shift kind, role and
conformal outlier p-value, ``applicability.csv``), including the images of shift-only conditions,
which stay out of the two tables.

Outputs are written only when every condition has been evaluated (temporary files, then rename),
so a bad input file leaves no partial table behind.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from segrobust import atomic
from segrobust.contract import (
    CLEAN,
    CONDITION_COLUMNS,
    FNR_COLUMNS,
    PER_IMAGE_COLUMNS,
    Run,
)
from segrobust.data.dataset import Case, load_split
from segrobust.evaluation.applicability_recorder import ApplicabilityRecorder
from segrobust.evaluation.calibration import CalibrationRecorder
from segrobust.evaluation.infer import SlidingWindow, predict_probabilities, save_prediction
from segrobust.evaluation.label_free import noise_sigma
from segrobust.evaluation.metrics import (
    FNR_THRESHOLDS,
    fnr_curve,
    foreground_ratio,
    segmentation_metrics,
    soft_quality,
)
from segrobust.evaluation.noise_level import noise_brightness_ratio
from segrobust.evaluation.preprocessing import ImageGrid
from segrobust.execution.job import mark
from segrobust.guarantees.calibration_file import calibration_text
from segrobust.networks.modelfile import load_model_file

#: Threshold turning probabilities into the predicted mask.
THRESHOLD = 0.5


@dataclass
class TestCondition:
    """A named test set (contract 2): a dataset's split plus metadata copied onto its rows.

    ``meta`` keys must be among ``CONDITION_COLUMNS`` (perturbation, severity, level, direction,
    train_alpha, test_alpha, test_dataset). A condition named ``clean`` defaults to perturbation
    ``none`` and severity 0.
    """

    __test__ = False  # not a pytest test class despite its name

    name: str
    dataset_dir: str | os.PathLike
    split: str = "test"
    meta: dict[str, Any] = field(default_factory=dict)
    #: Only for the applicability evidence (``applicability.csv``): its images are kept out of
    #: the per-image and FNR tables (``segrobust.spec.shifts``).
    shift_only: bool = False

    def columns(self) -> dict[str, Any]:
        """The condition's metadata columns, empty (None) where not set."""
        unknown = sorted(set(self.meta) - set(CONDITION_COLUMNS))
        if unknown:
            raise ValueError(
                f"test condition {self.name!r}: unknown metadata {', '.join(unknown)}; "
                f"allowed: {', '.join(CONDITION_COLUMNS)}"
            )
        values = dict.fromkeys(CONDITION_COLUMNS)
        if self.name == "clean":
            values.update(CLEAN)
        values.update(self.meta)
        return values


def _check_conditions(conditions: Sequence[TestCondition]) -> None:
    if not conditions:
        raise ValueError("no test conditions to evaluate")
    # one name may cover several splits (an in-domain condition's test and calibration images)
    keys = [(c.name, c.split) for c in conditions]
    duplicated = sorted({f"{n} ({s})" for n, s in keys if keys.count((n, s)) > 1})
    if duplicated:
        raise ValueError(
            f"test conditions must be unique per (name, split); repeated: {', '.join(duplicated)}"
        )
    for condition in conditions:
        if not condition.name or any(sep in condition.name for sep in ("/", "\\")):
            raise ValueError(
                f"test condition name {condition.name!r} must be a non-empty file name"
            )
        condition.columns()  # validates the metadata keys before any work is done


@dataclass
class ModelUnderTest:
    """A loaded model run and how it sees an image: whole, or through sliding windows of its
    training patch (``window``: overlap, blending, batch)."""

    model: torch.nn.Module
    path: str | os.PathLike
    spatial_dims: int
    patch_size: Sequence[int] | None
    window: SlidingWindow | None
    device: str | torch.device
    amp: bool

    def probabilities(self, case: Case, where: str | os.PathLike) -> np.ndarray:
        """The model's probabilities on one case (refusing an image of other dimensions)."""
        if case.image.ndim != self.spatial_dims:
            raise ValueError(
                f"{self.path}: a {self.spatial_dims}D model cannot segment the "
                f"{case.image.ndim}D image {case.case_id!r} of {where}"
            )
        return predict_probabilities(
            self.model, case.image, patch_size=self.patch_size, window=self.window,
            device=self.device, amp=self.amp,
        )  # fmt: skip


@dataclass
class RunScores:
    """The rows of a run's two tables, collected condition by condition."""

    run: Run
    nsd_tolerance: float
    nsd_unit: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    fnr_rows: list[tuple] = field(default_factory=list)

    def row(self, condition: TestCondition, case: Case, prob: np.ndarray) -> dict[str, Any]:
        """The per-image row of one image (contract 4), from its probabilities."""
        label = case.label.astype(bool)
        return {
            **self.run.columns,
            **condition.columns(),
            "condition": condition.name,
            "split": condition.split,
            "image_id": case.case_id,
            # The volume / patient the image was cut from (its split group); an image of its
            # own where the datalist names none.
            "group": str(case.meta.get("group", case.case_id)),
            **segmentation_metrics(
                prob >= THRESHOLD, label, case.spacing, self.nsd_tolerance, nsd_unit=self.nsd_unit
            ),
            "fg_ratio": foreground_ratio(label),
            "complexity": case.meta.get("complexity", math.nan),
            # label-free, as predict measures a new image: what maps an unlabelled image to a
            # perturbation regime (analysis.regime_ranges)
            "noise_sigma": noise_sigma(case.image),
            "noise_brightness_ratio": noise_brightness_ratio(case.image),
            "quality": soft_quality(prob),
        }

    def add(self, condition: TestCondition, case: Case, prob: np.ndarray, row: dict) -> None:
        """Keep one image's row (:meth:`row`) and its FNR curve in the tables."""
        self.rows.append(row)
        where = (condition.name, condition.split, case.case_id)
        curve = fnr_curve(prob, case.label.astype(bool))
        for threshold, fnr in zip(FNR_THRESHOLDS, curve, strict=True):
            self.fnr_rows.append((*self.run.columns.values(), *where, threshold, fnr))

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``per_image.csv`` and ``fnr.csv`` as frames (contract 4)."""
        return (
            pd.DataFrame(self.rows, columns=list(PER_IMAGE_COLUMNS)),
            pd.DataFrame(self.fnr_rows, columns=list(FNR_COLUMNS)),
        )


def evaluate_condition(
    tested: ModelUnderTest,
    condition: TestCondition,
    scores: RunScores,
    recorder: CalibrationRecorder | None,
    evidence: ApplicabilityRecorder | None,
    staged: Path | None,
) -> list[float]:
    """Predict and score every image of one condition; record the in-domain calibration
    images for ``calibration.json``, every image's applicability evidence, and stage the masks
    when asked. A shift-only condition's images go to the evidence alone. Returns the images'
    Dice."""
    cases = load_split(condition.dataset_dir, condition.split)
    record = recorder is not None and recorder.wants(
        condition.name, condition.split, condition.dataset_dir
    )
    columns = condition.columns()
    dice = []
    for position, case in enumerate(cases):
        prob = tested.probabilities(case, condition.dataset_dir)
        if record:
            recorder.observe(case, prob)
        row = scores.row(condition, case, prob)
        if evidence is not None:
            evidence.observe(condition.name, columns, condition.split, position, case, prob, row)
        dice.append(row["dice"])
        if condition.shift_only:
            continue
        scores.add(condition, case, prob, row)
        if staged is not None:
            save_prediction(
                staged / condition.split / condition.name / f"{case.case_id}.nii.gz",
                (prob >= THRESHOLD).astype(np.uint8),
                case.affine,
            )
    return dice


def evaluate_run(
    model_path: str | os.PathLike,
    conditions: Sequence[TestCondition],
    *,
    run: Run,
    nsd_tolerance: float,
    nsd_unit: str,
    out_per_image: str | os.PathLike,
    out_fnr: str | os.PathLike,
    out_calibration: str | os.PathLike | None = None,
    out_applicability: str | os.PathLike | None = None,
    window: SlidingWindow | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
    predictions_dir: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
    progress: Callable[[str], Any] | None = None,
) -> pd.DataFrame:
    """Score the model in ``model_path`` on every test condition; write and return the table.

    The steps: load the model (:class:`ModelUnderTest`), evaluate each condition
    (:func:`evaluate_condition`, collecting :class:`RunScores`, the calibration images and the
    applicability evidence), then write the tables, the applicability table and the calibration
    file, all staged until every condition succeeded.

    Args:
        model_path: a ``model.pt`` (contract 3). Its ``patch_size`` selects sliding-window
            inference with that window (``window`` then gives overlap, blending and batch);
            without one each image is predicted whole.
        conditions: the test sets, unique per (name, split).
        run: the model run; its columns lead every row of both tables.
        nsd_tolerance, nsd_unit: the NSD tolerance and its unit (``mm``, or ``px``: voxels of the
            finest axis; see ``segrobust.evaluation.metrics.nsd_tolerance_mm``).
        out_per_image: ``per_image.csv``, columns ``contract.PER_IMAGE_COLUMNS``.
        out_fnr: ``fnr.csv``, columns ``contract.FNR_COLUMNS``, one row per image and threshold
            of ``FNR_THRESHOLDS``.
        out_calibration: if given, the run's ``calibration.json`` (conformal scores, FNR curve,
            label-free statistics of the in-domain calibration images, preprocessing), which
            ``predict`` reads beside ``model.pt``; it holds the applicability check, so
            ``out_applicability`` is required with it.
        out_applicability: ``applicability.csv`` (``contract.APPLICABILITY_COLUMNS``): every
            evaluated image's shift kind, role and applicability p-value, including the
            images of shift-only conditions (``segrobust.evaluation.applicability_recorder``).
        window: sliding-window settings, required for a patch-trained model.
        device, amp: where and how the network runs.
        predictions_dir: if given, the predicted masks (uint8 NIfTI, the input image's affine) are
            saved as ``<predictions_dir>/<split>/<condition>/<image_id>.nii.gz``.
        log: receives one line per condition (the job's log file).
        progress: if given, also receives a line per condition with the count done so far (a
            job throttles it for the console).

    Raises:
        segrobust.data.dataset.DataError: naming the file, for an unreadable image, a non-binary
            label or an image / label shape mismatch. Nothing is written then.
        segrobust.guarantees.calibration_file.CalibrationError: ``out_calibration`` asked for a
            run whose calibration cannot be written (no calibration condition, a dataset whose
            preparation cannot be reproduced). Nothing is written then either.
    """
    _check_conditions(conditions)
    if out_calibration is not None and out_applicability is None:
        raise ValueError("out_calibration needs out_applicability (the check it stores)")
    model, model_info = load_model_file(model_path, device=device)
    tested = ModelUnderTest(
        model, model_path, int(model_info["spatial_dims"]), model_info.get("patch_size"), window,
        device, amp,
    )  # fmt: skip
    recorder = (
        CalibrationRecorder(run, model_path, model_info, window.to_config() if window else None)
        if out_calibration is not None
        else None
    )
    scores = RunScores(run, nsd_tolerance, nsd_unit)
    mark("first_step")
    with contextlib.ExitStack() as outputs:
        evidence = (
            outputs.enter_context(ApplicabilityRecorder(run, model, model_info, device))
            if out_applicability is not None
            else None
        )
        # Every output is staged and moved into place only when all conditions succeeded.
        per_image_tmp = outputs.enter_context(atomic.atomic_file(out_per_image))
        fnr_tmp = outputs.enter_context(atomic.atomic_file(out_fnr))
        staged = (
            outputs.enter_context(atomic.atomic_dir(predictions_dir))
            if predictions_dir is not None
            else None
        )
        for done, condition in enumerate(conditions):
            dice = evaluate_condition(tested, condition, scores, recorder, evidence, staged)
            mean = np.mean(dice) if dice else math.nan
            log(f"{condition.name} ({condition.split}): {len(dice)} images, mean Dice {mean:.4f}")
            if progress is not None:
                progress(f"{done + 1}/{len(conditions)} test sets, {len(scores.rows)} images")
        mark("last_step")
        per_image, fnr = scores.tables()
        applicability = None
        if evidence is not None:
            evidence_table, applicability = evidence.finish()
            evidence_tmp = outputs.enter_context(atomic.atomic_file(out_applicability))
            evidence_table.to_csv(evidence_tmp, index=False)
        if recorder is not None:
            document = recorder.document(per_image, fnr, _training_grids, applicability)
            calibration_tmp = outputs.enter_context(atomic.atomic_file(out_calibration))
            calibration_tmp.write_text(calibration_text(document))
            log(
                f"calibration: {document['dice_bound']['n']} in-domain calibration images "
                f"(scores, FNR curve, label-free statistics, applicability check) -> "
                f"{out_calibration}"
            )
        per_image.to_csv(per_image_tmp, index=False)
        fnr.to_csv(fnr_tmp, index=False)
    return per_image


def _training_grids(dataset_dir: str | os.PathLike) -> list[ImageGrid]:
    """The grids of a dataset's training images (the model grid without calibration images)."""
    return [ImageGrid.of(case) for case in load_split(dataset_dir, "training")]


def conditions_from_specs(specs: Sequence[Mapping[str, Any]]) -> list[TestCondition]:
    """Test conditions from the plain dicts the rules pass (``segrobust.spec.runs``), with the
    papers' named ``level`` added to perturbed conditions that have one."""
    from segrobust.perturb import paper_level

    conditions = []
    for spec in specs:
        meta = dict(spec["meta"])
        if "perturbation" in meta and "level" not in meta:
            level = paper_level(meta["perturbation"], meta["severity"])
            if level is not None:
                meta["level"] = level
        conditions.append(
            TestCondition(
                spec["name"],
                spec["dataset_dir"],
                spec["split"],
                meta,
                shift_only=bool(spec.get("shift_only", False)),
            )
        )
    return conditions
