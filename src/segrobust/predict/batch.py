"""Segment a folder of new images with calibrated model runs: masks, a table, a summary page.

For each NIfTI file of the folder (``segrobust.predict.inputs`` brings it to the model's input
and back) the output folder receives

    masks/<image>.nii.gz          the mask (probability >= 0.5) in the input's own geometry
    fnr_masks/<image>.nii.gz      the mask at the FNR-controlled threshold (when certified)
    probabilities/<image>.nii.gz  the probability map (optional)
    predictions.csv               one row per segmented image (``PREDICTION_COLUMNS``)
    failures.csv                  one row per file that could not be segmented, with the reason
    summary.html                  the one-page summary (``segrobust.predict.summary``)

Each row carries the image's label-free statistics (``label_free_statistics``), the conformal
Dice lower bound at the confidence level and the FNR-controlled threshold at the FNR level (both
from the run's calibration file, ``segrobust.guarantees.calibration_file``), whether the image is
like the calibration images (the applicability check of ``segrobust.guarantees.applicability``,
on its statistics and the model's bottleneck embedding jointly, and ``applicability_reason``
says why not), and the recipe's answer for the regime the image falls in. With the study's
per-shift coverage table (``results/analysis/shift_coverage.csv``) the summary page also states
where the rating was measured to hold and where it is withheld.

Model choice (``segrobust.predict.model_choice``). With one model run, every image is segmented
by it. With several (``recommended``) each image is first segmented by all of them; what the
recipe's regimes of the models' study are defined by is measured under their mean mask
(``segrobust.predict.recipe_lookup``: complexity bins, the perturbation regimes' observed noise
level and its brightness ratio, the context study's training foreground-ratio range; only the
regimes of the models' own study) and the regime's decision
picks the run: the recommended architecture's, the best calibrated of an equivalent set, else
the best calibrated run overall; the row's ``model_choice`` says which rule chose it and why,
``chosen_by`` which case applied. Where the rating does not apply (the applicability check
flags the image: outside the calibration range) the row carries no Dice bound and no FNR
threshold, and no FNR-controlled mask is written.

A bad file fails alone (its reason, naming it, goes to failures.csv) and the others complete; a
setup problem (a model without calibration, a calibration of another model, an unreadable
recipe) or the failure of every file stops the batch with :class:`PredictError`, and then
nothing is written. The output folder is checked before anything is loaded and written
atomically; predict replaces only what an earlier batch wrote there
(``segrobust.predict.output_folder``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from segrobust import atomic
from segrobust.analysis.shift_coverage import SHIFT_COVERAGE_COLUMNS, rating_limits
from segrobust.contract import read_table
from segrobust.data.dataset import DataError, count_nonfinite
from segrobust.evaluation.embeddings import EmbeddingError, EmbeddingRecorder, bottleneck_module
from segrobust.evaluation.infer import SlidingWindow, predict_probabilities
from segrobust.evaluation.label_free import MASK_THRESHOLD, label_free_statistics
from segrobust.evaluation.noise_level import noise_brightness_ratio
from segrobust.guarantees import kernel
from segrobust.guarantees.applicability import ApplicabilityRule, Verdict
from segrobust.guarantees.bounds import DiceBound, FnrControl, check_level
from segrobust.guarantees.calibration_file import CALIBRATION_FILE, Calibration, CalibrationError
from segrobust.networks.modelfile import ModelFileError, load_model_file
from segrobust.predict.inputs import (
    InputImage,
    nifti_name,
    read_input,
    to_file_layout,
    to_input_grid,
    write_like_input,
)
from segrobust.predict.model_choice import Candidate, Choice, choose_model
from segrobust.predict.output_folder import (
    MARKER,
    OutputFolderError,
    plan_output_folder,
    record_outputs,
)
from segrobust.predict.recipe_lookup import Measured, RecipeAnswer, StudyRecipe
from segrobust.predict.summary import ThumbnailCanvas, write_summary
from segrobust.spec.predict_targets import DEFAULT_CONFIDENCE, DEFAULT_FNR_LEVEL

#: ``predictions.csv``: one row per segmented image.
PREDICTION_COLUMNS: tuple[str, ...] = (
    "image", "file", "model", "arch", "model_choice", "chosen_by", "complexity", "noise_sigma",
    "predicted_fg_ratio", "quality", "confidence", "dice_lower_bound", "bound_status",
    "applicable", "applicability_p", "flag_level", "applicability_reason", "guarantee",
    "fnr_level", "fnr_threshold", "fnr_status", "regime", "recipe_decision", "recommended_arch",
    "recipe_note", "mask", "fnr_mask", "probabilities",
)  # fmt: skip

#: ``failures.csv``: one row per file that could not be segmented.
FAILURE_COLUMNS: tuple[str, ...] = ("image", "file", "error")

MODEL_FILE = "model.pt"


class PredictError(RuntimeError):
    """The batch cannot run or produced nothing; the message names the file(s) and why."""


# --- models ---------------------------------------------------------------------------------


@dataclass
class CalibratedModel:
    """A trained network with its calibration file."""

    path: Path
    calibration: Calibration
    network: torch.nn.Module
    info: dict[str, Any]
    window: SlidingWindow | None
    embedding: EmbeddingRecorder
    rules: dict[float, ApplicabilityRule] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.calibration.run_name

    @property
    def arch(self) -> str:
        return self.calibration.arch

    def applicability_rule(self, confidence: float) -> ApplicabilityRule:
        """The calibration's applicability check at ``confidence`` (chosen once per level)."""
        if confidence not in self.rules:
            try:
                self.rules[confidence] = self.calibration.applicability_rule(confidence)
            except CalibrationError as exc:
                raise PredictError(str(exc)) from None
        return self.rules[confidence]

    def probabilities(self, image: np.ndarray, device: Any, amp: bool) -> Prediction:
        """Sigmoid probabilities on a model-space image, inferred as in evaluation, and the
        bottleneck embedding the applicability check compares."""
        with self.embedding:
            prob = predict_probabilities(
                self.network, image, patch_size=self.info.get("patch_size"), window=self.window,
                device=device, amp=amp,
            )  # fmt: skip
            return Prediction(prob, self.embedding.take())


@dataclass(frozen=True)
class Prediction:
    """A model's probabilities on one image and its embedding of it."""

    prob: np.ndarray
    embedding: np.ndarray


def find_model_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The ``model.pt`` files named by ``paths``: a model file, a run directory holding one, or
    a directory searched recursively (every run below it)."""
    if not paths:
        raise PredictError(
            "no model given: name a model run folder, a model.pt or a folder of runs"
        )
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_file():
            found.append(given)
        elif (given / MODEL_FILE).is_file():
            found.append(given / MODEL_FILE)
        elif given.is_dir():
            below = sorted(given.rglob(MODEL_FILE))
            if not below:
                raise PredictError(f"{given}: no {MODEL_FILE} in this folder or below it")
            found.extend(below)
        else:
            raise PredictError(f"{given}: no such model file or folder")
    return list(dict.fromkeys(p.resolve() for p in found))


def load_calibrated_model(model_path: Path, device: Any) -> CalibratedModel:
    """Load a model file with the calibration file beside it.

    Raises:
        PredictError: naming the files, when the calibration is missing, unreadable or was
            computed for another model file, or the model file holds anything but tensors and
            plain data (it is then not loaded: ``segrobust.networks.modelfile``).
    """
    calibration_path = model_path.with_name(CALIBRATION_FILE)
    if not calibration_path.is_file():
        raise PredictError(
            f"{model_path}: no calibration file {calibration_path} beside it, so no confidence "
            "can be given; the run's evaluation writes it (rule evaluate_model: re-run "
            "snakemake in the project)"
        )
    try:
        calibration = Calibration.read(calibration_path)
        calibration.check_model(model_path)
        network, info = load_model_file(model_path, device=device)
    except (CalibrationError, ModelFileError) as exc:
        raise PredictError(str(exc)) from None
    inference = calibration.document["inference"]
    window = SlidingWindow.from_config(inference) if inference else None
    module = (calibration.document["applicability"] or {}).get("embedding_module")
    try:
        module = module or bottleneck_module(
            network, calibration.spatial_dims, info.get("patch_size") or info["img_size"], device
        )
        embedding = EmbeddingRecorder(network, module, calibration.spatial_dims)
    except EmbeddingError as exc:
        raise PredictError(f"{calibration_path}: {exc}") from None
    return CalibratedModel(model_path, calibration, network, info, window, embedding)


def _run_order(model: CalibratedModel) -> tuple:
    run = model.calibration.document["run"]
    patch = str(run["patch"])
    return (model.arch, patch != "full", int(patch) if patch.isdigit() else 0, int(run["seed"]))


def load_models(paths: Sequence[str | os.PathLike], device: Any) -> list[CalibratedModel]:
    """Every model named by ``paths`` (:func:`find_model_files`), ordered by architecture,
    patch and seed; several must share their preprocessing (one training dataset)."""
    models = sorted(
        (load_calibrated_model(p, device) for p in find_model_files(paths)), key=_run_order
    )
    first = models[0]
    for other in models[1:]:
        same = (
            other.calibration.spatial_dims == first.calibration.spatial_dims
            and other.calibration.preprocessing == first.calibration.preprocessing
        )
        if not same:
            raise PredictError(
                f"{other.path} and {first.path} need different input preprocessing (other "
                "training datasets); models compared per image must share one"
            )
    return models


# --- one image ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Levels and outputs of a batch."""

    confidence: float
    fnr_level: float
    save_probabilities: bool
    device: Any
    amp: bool


@dataclass
class Segmentation:
    """One segmented image: its table row and the probabilities on its canonical grid."""

    image: InputImage
    row: dict[str, Any]
    canonical_prob: np.ndarray
    fnr: FnrControl


def percent(level: float) -> str:
    """``0.9`` -> ``90%``, ``0.975`` -> ``97.5%``."""
    return f"{level * 100:.10g}%"


def floor_to_hundredths(value: float) -> float:
    """``value`` rounded down to 2 decimals, so a stated bound never exceeds the computed one."""
    return math.floor(value * 100 + 1e-9) / 100


def guarantee_text(bound: DiceBound, verdict: Verdict, n_calibration: int) -> str:
    """The Dice bound as a clinician reads it, or why no guarantee is given."""
    if not bound.defined:
        needed = kernel.min_calibration_for_bound(1.0 - bound.confidence)
        return (
            f"no guarantee: the model was calibrated on {n_calibration} images; "
            f"{needed} are needed for {percent(bound.confidence)} confidence"
        )
    if not verdict.applicable:
        return f"no guarantee: {verdict.reason}"
    stated = floor_to_hundredths(bound.bound)
    return f"Dice >= {stated:.2f} with {percent(bound.confidence)} confidence"


def measured_under_mean_mask(probs: Sequence[np.ndarray], image: np.ndarray) -> Measured:
    """What the recipe's regimes are defined by, measured on ``image`` under the mean of the
    models' predicted masks (``label_free_statistics``)."""
    stats = label_free_statistics(image, np.mean(np.stack(probs), axis=0))
    mask = (
        "the predicted mask"
        if len(probs) == 1
        else f"the mean predicted mask of {len(probs)} models"
    )
    return Measured(
        complexity=stats["complexity"],
        noise_sigma=stats["noise_sigma"],
        noise_brightness_ratio=noise_brightness_ratio(image),
        fg_ratio=stats["predicted_fg_ratio"],
        mask=mask,
    )


def candidates(models: Sequence[CalibratedModel]) -> list[Candidate]:
    """What the model choice needs of each model."""
    return [
        Candidate(m.arch, str(m.calibration.document["run"]["patch"]), m.calibration.mean_dice)
        for m in models
    ]


def recipe_columns(answer: RecipeAnswer | None) -> dict[str, str]:
    """The row's recipe columns (empty without a recipe)."""
    if answer is None:
        return dict(
            regime="", recipe_decision="", recommended_arch="", recipe_note="no recipe given"
        )
    regime = answer.regime
    return dict(
        regime=regime.label if regime else "",
        recipe_decision=regime.decision if regime else "",
        recommended_arch=answer.recommended_arch,
        recipe_note=answer.rule,
    )


def segment(
    path: Path,
    models: Sequence[CalibratedModel],
    recipe: StudyRecipe | None,
    settings: Settings,
) -> Segmentation:
    """Segment one file and fill its row (output paths are added when written).

    Raises:
        DataError: naming the file (see ``segrobust.predict.inputs.read_input``).
    """
    first = models[0].calibration
    image = read_input(path, first.preprocessing, first.spatial_dims)
    predictions = [
        m.probabilities(image.model_image, settings.device, settings.amp) for m in models
    ]
    probs = [p.prob for p in predictions]
    for model, prob in zip(models, probs, strict=True):
        if count_nonfinite(prob):
            raise DataError(
                f"{path}: the output of {model.name} holds {count_nonfinite(prob)} NaN or "
                "infinite values; the image's intensities lie outside what the model can handle"
            )
    choice: Choice = choose_model(
        candidates(models), recipe, lambda: measured_under_mean_mask(probs, image.model_image)
    )
    model, prob = models[choice.index], probs[choice.index]
    calibration = model.calibration
    stats = label_free_statistics(image.model_image, prob)
    bound = calibration.dice_bound(stats["quality"], settings.confidence)
    verdict = model.applicability_rule(settings.confidence).judge(
        stats, predictions[choice.index].embedding
    )
    fnr = calibration.fnr_control(settings.fnr_level)
    # --- where the rating does not apply (the applicability check flags the image), no bound and
    # no FNR promise (issues 20 and 21) ---
    applies = verdict.applicable
    if not applies:
        fnr = FnrControl(math.nan, False, fnr.level, f"no promise: {verdict.reason}")
    # ---
    row = dict(
        image=image.name,
        file=path.name,
        model=model.name,
        arch=model.arch,
        model_choice=choice.reason,
        chosen_by=choice.how,
        complexity=stats["complexity"],
        noise_sigma=stats["noise_sigma"],
        predicted_fg_ratio=stats["predicted_fg_ratio"],
        quality=stats["quality"],
        confidence=settings.confidence,
        dice_lower_bound=bound.bound if applies else math.nan,
        # a bound too few calibration images leave undefined stays "undefined: ..."
        bound_status=(
            bound.status
            if applies or not bound.defined
            else "withheld: outside the calibration range"
        ),
        applicable=applies,
        applicability_p=verdict.p_value,
        flag_level=verdict.level,
        applicability_reason=verdict.reason,
        guarantee=guarantee_text(bound, verdict, calibration.n_calibration),
        fnr_level=settings.fnr_level,
        fnr_threshold=fnr.threshold,
        fnr_status=fnr.status,
        **recipe_columns(choice.answer),
    )
    return Segmentation(image, row, to_input_grid(prob, image), fnr)


def output_arrays(seg: Segmentation, save_probabilities: bool) -> dict[str, np.ndarray]:
    """The arrays to write (folder -> array in the input file's layout)."""
    prob = seg.canonical_prob
    arrays = {"masks": (prob >= MASK_THRESHOLD).astype(np.uint8)}
    if seg.fnr.certified:
        arrays["fnr_masks"] = (prob >= seg.fnr.threshold).astype(np.uint8)
    if save_probabilities:
        arrays["probabilities"] = prob.astype(np.float32)
    return {folder: to_file_layout(array, seg.image) for folder, array in arrays.items()}


# --- the batch ------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What a batch produced: the rows, the failures and where they were written."""

    predictions: pd.DataFrame
    failures: pd.DataFrame
    out_dir: Path


def _input_files(images_dir: Path) -> list[Path]:
    if not images_dir.is_dir():
        raise PredictError(f"{images_dir}: images folder not found")
    entries = sorted(images_dir.iterdir())
    if not entries:
        raise PredictError(f"{images_dir}: the images folder is empty")
    return entries


def _entry_problem(entry: Path, names_seen: dict[str, str]) -> str | None:
    """Why a folder entry cannot be an input image before reading it (None: read it)."""
    if entry.is_dir():
        return f"{entry}: a folder; only NIfTI files directly inside the images folder are read"
    name = nifti_name(entry)
    if name is not None and name in names_seen:
        return f"{entry}: the same image name as {names_seen[name]} (outputs would collide)"
    return None


#: Output folder of each written array -> the row column holding its path.
OUTPUT_COLUMNS = {"masks": "mask", "fnr_masks": "fnr_mask", "probabilities": "probabilities"}


def write_outputs(staged: Path, seg: Segmentation, save_probabilities: bool) -> None:
    """Write the image's arrays below ``staged`` and put their relative paths in its row."""
    for folder, array in output_arrays(seg, save_probabilities).items():
        relative = f"{folder}/{seg.image.name}.nii.gz"
        write_like_input(staged / relative, array, seg.image)
        seg.row[OUTPUT_COLUMNS[folder]] = relative


def failure_row(entry: Path, exc: Exception) -> dict[str, str]:
    """A failures.csv row whose message names the file."""
    message = str(exc) if str(entry) in str(exc) else f"{entry}: {exc}"
    return dict(image=nifti_name(entry) or "", file=entry.name, error=message)


def batch_settings(
    confidence: float, fnr_level: float, save_probabilities: bool, device: torch.device
) -> Settings:
    """The batch's levels, checked."""
    return Settings(
        confidence=check_level(confidence, "confidence"),
        fnr_level=check_level(fnr_level, "FNR level"),
        save_probabilities=save_probabilities,
        device=device,
        amp=device.type == "cuda",
    )


def read_recipe(
    recipe_path: str | os.PathLike | None, models: Sequence[CalibratedModel]
) -> StudyRecipe | None:
    """The recipe's regimes of the models' study and training dataset (None without a path;
    required for several models, which must then come from one study and dataset: the regimes
    quoted for an image are those of the study its model came from)."""
    if len(models) > 1 and recipe_path is None:
        raise PredictError(
            f"{len(models)} models given: choosing one per image needs the recipe table "
            "(results/analysis/recipe.csv)"
        )
    if recipe_path is None:
        return None
    runs = sorted(
        {
            (str(r["study"]), str(r["dataset"]))
            for r in (m.calibration.document["run"] for m in models)
        }
    )
    if len(runs) > 1:
        listed = ", ".join(f"{study} study on {dataset}" for study, dataset in runs)
        raise PredictError(
            f"the models given come from {listed}: the recipe's regimes are those of one "
            "study and training dataset; give the runs of one of them"
        )
    study, dataset = runs[0]
    try:
        return StudyRecipe.read(recipe_path, study, dataset)
    except (OSError, ValueError) as exc:
        raise PredictError(str(exc)) from None


def read_limits(path: str | os.PathLike | None, models: Sequence[CalibratedModel]) -> list[str]:
    """Where the rating holds for the models' study and architectures (empty without a path).

    Raises:
        PredictError: naming the file, when it is missing or not a per-shift coverage table.
    """
    if path is None:
        return []
    try:
        table = read_table(path)
    except (OSError, ValueError) as exc:
        raise PredictError(str(exc)) from None
    missing = [c for c in SHIFT_COVERAGE_COLUMNS if c not in table.columns]
    if missing:
        raise PredictError(
            f"{path}: not a per-shift coverage table (lacks {', '.join(missing)}); re-run the "
            "analysis (rule analyze)"
        )
    studies = sorted({str(m.calibration.document["run"]["study"]) for m in models})
    archs = {m.arch for m in models}
    used = table[table["arch"].isin(archs)]
    return [rating_limits(used, study) for study in studies]


def predict_folder(
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    model_paths: Sequence[str | os.PathLike],
    recipe_path: str | os.PathLike | None = None,
    shift_coverage_path: str | os.PathLike | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    fnr_level: float = DEFAULT_FNR_LEVEL,
    save_probabilities: bool = False,
    device: Any = "cpu",
    overwrite: bool = False,
    log: Callable[[str], Any] = print,
) -> BatchResult:
    """Segment every file of ``images_dir`` and write the outputs to ``out_dir``.

    Args:
        images_dir: folder of NIfTI images (2D or 3D, any orientation and spacing).
        out_dir: output folder (layout in the module docstring), written atomically.
        model_paths: model files, run folders or folders of runs; several means
            ``recommended`` (per-image choice by the recipe), which needs ``recipe_path``.
        recipe_path: ``results/analysis/recipe.csv``; optional with one model (then only the
            recipe columns use it).
        shift_coverage_path: ``results/analysis/shift_coverage.csv``; optional: with it the
            summary page states where the rating was measured to hold for these models.
        confidence: confidence of the Dice lower bound.
        fnr_level: FNR level of the controlled mask.
        save_probabilities: also write the probability maps.
        device: where the networks run (mixed precision on CUDA, as in evaluation).
        overwrite: replace the files an earlier batch wrote to a non-empty ``out_dir`` (only
            those: ``segrobust.predict.output_folder``).
        log: receives one progress line per image.

    Raises:
        PredictError: a setup problem (the output folder included) or every file failed (the
            message lists each failure); nothing is written then.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    try:
        folder = plan_output_folder(out_dir, images_dir, overwrite)
    except OutputFolderError as exc:
        raise PredictError(str(exc)) from None
    entries = _input_files(images_dir)
    device = torch.device(device)
    models = load_models(model_paths, device)
    recipe = read_recipe(recipe_path, models)
    limits = read_limits(shift_coverage_path, models)
    settings = batch_settings(confidence, fnr_level, save_probabilities, device)
    canvas = ThumbnailCanvas()
    rows, failures, thumbnails, names_seen = [], [], {}, {}
    with atomic.atomic_dir(out_dir, replaces=folder.earlier, last=(MARKER,)) as staged:
        for entry in entries:
            problem = _entry_problem(entry, names_seen)
            try:
                if problem:
                    raise DataError(problem)
                seg = segment(entry, models, recipe, settings)
            except Exception as exc:  # one bad file must not stop the batch; its reason is kept
                failures.append(failure_row(entry, exc))
                log(f"FAILED {failures[-1]['error']}")
                continue
            names_seen[seg.image.name] = entry.name
            write_outputs(staged, seg, save_probabilities)
            rows.append(seg.row)
            thumbnails[seg.image.name] = canvas.thumbnail(
                seg.image.canonical, seg.canonical_prob >= MASK_THRESHOLD, seg.image.spacing
            )
            log(f"{entry.name}: {seg.row['model']}; {seg.row['guarantee']}")
        if not rows:
            listed = "\n".join(f"  {f['error']}" for f in failures)
            raise PredictError(f"no image of {images_dir} could be segmented:\n{listed}")
        predictions = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
        failed = pd.DataFrame(failures, columns=list(FAILURE_COLUMNS))
        atomic.write_csv(staged / "predictions.csv", predictions)
        atomic.write_csv(staged / "failures.csv", failed)
        write_summary(
            staged / "summary.html",
            predictions,
            failed,
            thumbnails,
            models=[m.name for m in models],
            settings=settings,
            images_dir=images_dir,
            limits=limits,
        )
        record_outputs(folder, staged)
    log(f"{len(rows)} of {len(entries)} files segmented, {len(failures)} failed -> {out_dir}")
    return BatchResult(predictions, failed, out_dir)
