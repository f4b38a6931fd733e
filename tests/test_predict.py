"""segrobust predict: input geometry and preprocessing, the batch and its bad inputs, the
per-image model choice by the recipe, the statements, the console command and the rules'
scripts. Coverage and the trained round trip are in test_predict_coverage.py and
test_predict_geometry.py."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from schema_defaults import default_config, model_kwargs, train_settings

from segrobust.analysis.recipe import RECIPE_COLUMNS, recipe_tables
from segrobust.analysis.regime_ranges import regime_ranges
from segrobust.analysis.regimes import all_regimes
from segrobust.analysis.shift_coverage import SHIFT_COVERAGE_COLUMNS
from segrobust.cli import build_parser
from segrobust.cli import main as cli_main
from segrobust.contract import APPLICABILITY_COLUMNS, PER_IMAGE_COLUMNS, Run
from segrobust.data.dataset import DataError, DatasetWriter, load_split
from segrobust.data.prepare import percentile_intensity, resample_volume, to_gray, window_intensity
from segrobust.evaluation.embeddings import EmbeddingRecorder, bottleneck_module
from segrobust.evaluation.evaluate import TestCondition, evaluate_run
from segrobust.evaluation.infer import predict_probabilities
from segrobust.evaluation.label_free import label_free_statistics
from segrobust.guarantees.applicability import Verdict
from segrobust.guarantees.calibration_file import CALIBRATION_FILE, Calibration, DiceBound
from segrobust.networks.modelfile import load_model_file
from segrobust.perturb.catalog import PERTURBATIONS
from segrobust.perturb.testset import perturb_test_split
from segrobust.predict import inputs
from segrobust.predict.batch import (
    FAILURE_COLUMNS,
    PREDICTION_COLUMNS,
    PredictError,
    guarantee_text,
    predict_folder,
)
from segrobust.predict.recipe_lookup import RANGES_FILE, StudyRecipe
from segrobust.spec.config import ConfigError
from segrobust.spec.predict_targets import (
    DEFAULT_CONFIDENCE,
    DEFAULT_FNR_LEVEL,
    parse_run_path,
    predict_plan,
)
from segrobust.training.train import train_run

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SIZE = (16, 16)
#: A 2D affine that transposes and flips the array axes, with anisotropic pixels.
AFFINE_2D = np.array(
    [[0.0, -0.7, 0.0, 5.0], [1.3, 0.0, 0.0, -2.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


# --- geometry and preprocessing -------------------------------------------------------------


def _orientations_3d():
    """Every axis permutation with every flip: the 48 orientations of a 3D array."""
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((1.0, -1.0), repeat=3):
            yield np.array([[axis, flip] for axis, flip in zip(perm, flips, strict=True)])


def _affine(orientation, zooms):
    affine = np.zeros((4, 4))
    for axis, (world, flip) in enumerate(orientation):
        affine[int(world), axis] = flip * zooms[axis]
    affine[:, 3] = [3.0, -4.0, 5.0, 1.0]
    return affine


def test_canonical_orientation_is_nibabels_and_is_undone_exactly():
    rng = np.random.default_rng(0)
    data = rng.random((4, 5, 6)).astype(np.float32)
    zooms = (0.8, 1.0, 2.5)
    for orientation in _orientations_3d():
        affine = _affine(orientation, zooms)
        found = inputs.canonical_orientation(affine, Path("x"))
        canonical, squeezed = inputs.to_canonical(data, found)
        reference = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
        assert np.array_equal(canonical, np.asarray(reference.dataobj))
        spacing = inputs.canonical_spacing(affine, found, squeezed)
        assert np.allclose(spacing, reference.header.get_zooms())
        assert np.array_equal(inputs.from_canonical(canonical, found, squeezed), data)


def test_a_2d_image_is_reoriented_in_plane_and_back():
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    orientation = inputs.canonical_orientation(AFFINE_2D, Path("x"))
    canonical, squeezed = inputs.to_canonical(data, orientation)
    # array axis 1 runs along -x, axis 0 along +y: canonical axis 0 is the flipped axis 1
    assert np.array_equal(canonical, data.T[::-1, :])
    assert inputs.canonical_spacing(AFFINE_2D, orientation, squeezed) == pytest.approx((0.7, 1.3))
    assert np.array_equal(inputs.from_canonical(canonical, orientation, squeezed), data)


def test_normalisation_is_the_preparations():
    rng = np.random.default_rng(1)
    raw = rng.normal(40, 300, size=(20, 20)).astype(np.float32)
    window = {"method": "window", "window": [-200.0, 300.0]}
    percentile = {"method": "percentile", "percentiles": [1.0, 99.0]}
    assert np.array_equal(inputs.normalise(raw, window), window_intensity(raw, [-200, 300]))
    assert np.array_equal(inputs.normalise(raw, percentile), percentile_intensity(raw, [1, 99]))
    photo = rng.integers(0, 256, size=(20, 20)).astype(np.uint8)
    gray = {"method": "gray", "mode": "luminance"}
    assert np.array_equal(inputs.normalise(photo, gray), to_gray(photo, "luminance"))
    assert inputs.normalise(photo, gray).max() <= 1.0  # uint8 / 255
    mean = inputs.normalise(photo, {"method": "gray", "mode": "mean"})
    assert np.array_equal(mean, to_gray(photo, "mean"))
    assert np.array_equal(inputs.normalise(raw, {"method": "none"}), raw)


def test_3d_resampling_matches_the_preparation_and_comes_back():
    """Forward is the preparation's own resampling; back lands on the input grid (smooth field:
    linear interpolation loses little)."""
    shape, spacing, target = (30, 24, 10), (0.8, 1.0, 3.0), (1.5, 1.5, 1.5)
    grid = np.meshgrid(
        *[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    field = (np.sin(grid[0] / 6) * np.cos(grid[1] / 7) + grid[2] / 30).astype(np.float32)
    preprocessing = {"spacing": list(target)}
    model = inputs.to_model_grid(field, spacing, preprocessing, Path("x"))
    assert np.array_equal(model, resample_volume(field, spacing, target, is_label=False))
    image = SimpleNamespace(canonical=field, spacing=spacing, model_spacing=target)
    back = inputs.to_input_grid(np.clip(model, 0, 1), image)
    assert back.shape == shape
    interior = (slice(2, -3),) * 3
    assert np.abs(back - np.clip(field, 0, 1))[interior].max() < 0.05


def test_2d_resize_is_an_identity_at_the_training_size():
    image = np.random.default_rng(2).random(SIZE).astype(np.float32)
    model = inputs.to_model_grid(image, (1.0, 1.0), {"size": list(SIZE)}, Path("x"))
    assert np.allclose(model, image, atol=1e-6)


def test_the_written_mask_keeps_the_inputs_affine_header_and_shape(tmp_path):
    data = np.random.default_rng(3).random((5, 6, 1)).astype(np.float32)
    source = nib.Nifti1Image(data, AFFINE_2D)
    source.set_qform(AFFINE_2D, code=1)
    source.set_sform(AFFINE_2D, code=2)
    source.header.set_slope_inter(2.0, 1.0)
    nib.save(source, tmp_path / "in.nii")
    image = inputs.read_input(
        tmp_path / "in.nii", {"intensity": {"method": "none"}, "size": [8, 8]}, 2
    )
    mask = inputs.to_file_layout((image.canonical > 2.0).astype(np.uint8), image)
    inputs.write_like_input(tmp_path / "mask.nii.gz", mask, image)
    written = nib.load(tmp_path / "mask.nii.gz")
    original = nib.load(tmp_path / "in.nii")
    assert np.array_equal(written.affine, original.affine)
    assert written.shape == original.shape == (5, 6, 1)
    assert written.get_data_dtype() == np.uint8
    assert (written.header["qform_code"], written.header["sform_code"]) == (1, 2)
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj) > 2.0)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"hello", r"notes\.txt: not a NIfTI file; expected a name ending in \.nii"),
        ("broken.nii.gz", gzip.compress(b"not an image"), r"broken\.nii\.gz: not a readable NIfTI"),
    ],
    # Explicit ids: gzip bytes carry a timestamp, and ids built from them differ between xdist
    # workers, which then refuse to run the collection.
    ids=["not-nifti", "corrupt-gzip"],
)
def test_unreadable_files_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        inputs.read_input(tmp_path / name, {"intensity": {"method": "none"}, "size": [8, 8]}, 2)


def test_wrong_dimensionality_and_nan_intensities_are_named(tmp_path):
    volume = np.zeros((8, 8, 4), np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "vol.nii.gz")
    with pytest.raises(
        DataError, match=r"vol\.nii\.gz: a 3D image of shape \(8, 8, 4\), but the model segments 2D"
    ):
        inputs.read_input(
            tmp_path / "vol.nii.gz", {"intensity": {"method": "none"}, "size": [8, 8]}, 2
        )
    image = np.ones((8, 8), np.float32)
    image[2, 3] = np.nan
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(DataError, match=r"nan\.nii\.gz: 1 of 64 voxels are not finite"):
        inputs.read_input(
            tmp_path / "nan.nii.gz", {"intensity": {"method": "none"}, "size": [8, 8]}, 2
        )


# --- statements -----------------------------------------------------------------------------


def test_guarantee_text_never_overstates_and_says_why_not():
    ok = Verdict(True, 0.4, 0.05, "")
    assert guarantee_text(DiceBound(0.8299, 0.1, 0.9, "defined"), ok, 100) == (
        "Dice >= 0.82 with 90% confidence"
    )
    assert guarantee_text(DiceBound(0.82, 0.1, 0.975, "defined"), ok, 100) == (
        "Dice >= 0.82 with 97.5% confidence"
    )
    flagged = Verdict(False, 0.01, 0.05, "unlike the calibration images (p = 0.01)")
    out = guarantee_text(DiceBound(0.9, 0.1, 0.9, "defined"), flagged, 100)
    assert out == "no guarantee: unlike the calibration images (p = 0.01)"
    few = guarantee_text(DiceBound(math.nan, math.inf, 0.9, "undefined: ..."), ok, 5)
    assert (
        few == "no guarantee: the model was calibrated on 5 images; 9 are needed for 90% confidence"
    )


# --- the recipe -----------------------------------------------------------------------------


def test_recipe_complexity_regimes_carry_their_numeric_bin_edges():
    rng = np.random.default_rng(4)
    rows = []
    for i in range(30):
        complexity = float(rng.uniform(0, 3))
        for arch in ("unet", "noskip_unet"):
            rows.append(
                dict(
                    study="texture",
                    dataset="texture-background-0.5",
                    split="test",
                    condition="texture-background-0.5",
                    test_dataset="texture-background-0.5",
                    train_alpha=0.5,
                    test_alpha=0.5,
                    arch=arch,
                    seed=1,
                    patch="full",
                    image_id=f"tex_{i:04d}",
                    group=f"tex_{i:04d}",
                    dice=rng.uniform(0.5, 1),
                    complexity=complexity,
                )
            )
    table = recipe_tables(pd.DataFrame(rows).reindex(columns=list(PER_IMAGE_COLUMNS)), n_bins=3)[0]
    assert list(table.columns) == RECIPE_COLUMNS
    bins = table[table.regime_kind == "complexity"]
    complexities = pd.DataFrame(rows).groupby("image_id").complexity.first()
    edges = np.quantile(complexities, [0, 1 / 3, 2 / 3, 1])
    assert np.allclose(bins.low, edges[:-1]) and np.allclose(bins.high, edges[1:])
    for r in bins.itertuples():
        assert r.regime == f"complexity {r.low:.2f}-{r.high:.2f} bits"


def test_a_recipe_without_its_regime_ranges_or_columns_is_refused(tmp_path):
    path = tmp_path / "recipe.csv"
    pd.DataFrame([dict(study="texture", regime_kind="complexity", regime="c")]).reindex(
        columns=RECIPE_COLUMNS
    ).to_csv(path, index=False)
    with pytest.raises(FileNotFoundError, match=r"regime_ranges\.csv \(rule analyze writes it"):
        StudyRecipe.read(path, "texture", "d")
    pd.DataFrame([dict(study="texture")]).to_csv(tmp_path / "regime_ranges.csv", index=False)
    with pytest.raises(ValueError, match=r"regime_ranges\.csv: lacks column\(s\) regime_kind"):
        StudyRecipe.read(path, "texture", "d")
    pd.DataFrame([dict(regime_kind="complexity", regime="c")]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"recipe\.csv: lacks column\(s\) study"):
        StudyRecipe.read(path, "texture", "d")


# --- the batch ------------------------------------------------------------------------------

RUN = Run("perturbation", "squares", "unet", "full", 1)


SPLITS = {"training": 16, "validation": 4, "test": 2, "calibration": 15}


def _squares(path, seed=0):
    """Bright squares on noise: an easy task a tiny U-Net learns in a few epochs."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(
        path, provenance={"source": "synthetic-texture", "intensity": {"method": "none"}}
    ) as ds:
        for split, n in SPLITS.items():
            for i in range(n):
                image, label = _square_image(rng)
                ds.add(
                    f"{split}{i}",
                    image,
                    label,
                    split=split,
                    complexity=0.0,
                    fg_ratio=float(label.mean()),
                )
    return path


def _square_image(rng):
    label = np.zeros(SIZE, np.uint8)
    corner = rng.integers(2, 8, size=2)
    label[corner[0] : corner[0] + 6, corner[1] : corner[1] + 6] = 1
    return (label + 0.2 * rng.standard_normal(SIZE)).astype(np.float32), label


def _calibrated_run(root, data, arch, seed):
    run = Run(RUN.study, RUN.dataset, arch, "full", seed)
    folder = root / arch / f"seed{seed}"
    train_run(
        data,
        run=run,
        spatial_dims=2,
        model_kwargs=model_kwargs(arch, channels=(4, 8)),
        settings=train_settings(epochs=6, batch_size=4, lr=0.02),
        device=torch.device("cpu"),
        out_model=folder / "model.pt",
        out_log=folder / "train_log.csv",
        out_patches=folder / "patches.csv",
        checkpoint_path=folder / "last.pt",
        log=lambda line: None,
    )
    conditions = [TestCondition("clean", data, "test"), TestCondition("clean", data, "calibration")]
    evaluate_run(
        folder / "model.pt",
        conditions,
        run=run,
        nsd_tolerance=1.0,
        nsd_unit="px",
        out_per_image=folder / "per_image.csv",
        out_fnr=folder / "fnr.csv",
        out_calibration=folder / CALIBRATION_FILE,
        out_applicability=folder / "applicability.csv",
        log=lambda line: None,
    )
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = _squares(root / "squares")
    unet = _calibrated_run(root / "models", data, "unet", 1)
    noskip = _calibrated_run(root / "models", data, "noskip_unet", 1)
    return SimpleNamespace(root=root, data=data, unet=unet, noskip=noskip)


def _good_images(folder, n, seed=10, affine=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, _ = _square_image(rng)
        nib.save(
            nib.Nifti1Image(image, np.eye(4) if affine is None else affine),
            folder / f"img{i}.nii.gz",
        )
    return folder


def test_a_batch_with_bad_files_segments_the_good_ones_and_lists_the_others(runs, tmp_path):
    images = _good_images(tmp_path / "images", 2)
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 1), np.float32), AFFINE_2D), images / "slice.nii")
    (images / "notes.txt").write_text("not an image")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), np.eye(4)), images / "vol.nii.gz")
    bad = np.zeros(SIZE, np.float32)
    bad[0, 0] = np.nan
    nib.save(nib.Nifti1Image(bad, np.eye(4)), images / "nan.nii.gz")
    (images / "sub").mkdir()
    nib.save(nib.load(images / "img1.nii.gz"), images / "img1.nii")  # same image name

    result = predict_folder(images, tmp_path / "out", model_paths=[runs.unet], log=lambda s: None)

    out = tmp_path / "out"
    predictions = pd.read_csv(out / "predictions.csv")
    failures = pd.read_csv(out / "failures.csv")
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert list(failures.columns) == list(FAILURE_COLUMNS)
    assert sorted(predictions.image) == ["img0", "img1", "slice"]
    assert result.predictions.image.tolist() == predictions.image.tolist()
    reasons = dict(zip(failures.file, failures.error, strict=True))
    assert set(reasons) == {"img1.nii.gz", "nan.nii.gz", "notes.txt", "sub", "vol.nii.gz"}
    assert f"{images / 'notes.txt'}: not a NIfTI file" in reasons["notes.txt"]
    assert "same image name as img1.nii (outputs would collide)" in reasons["img1.nii.gz"]
    assert "voxels are not finite" in reasons["nan.nii.gz"]
    assert "the model segments 2D images" in reasons["vol.nii.gz"]
    assert "a folder" in reasons["sub"]
    for row in predictions.itertuples():
        written = nib.load(out / row.mask)
        source = nib.load(images / row.file)
        assert np.array_equal(written.affine, source.affine) and written.shape == source.shape
        assert row.model == "perturbation/squares/unet/pfull/seed1"
        assert row.guarantee.startswith(("Dice >= ", "no guarantee: "))
        assert row.confidence == 0.9 and row.fnr_level == 0.1  # the calibration's levels
        assert isinstance(row.probabilities, float) and math.isnan(row.probabilities)  # not saved
        assert row.recipe_note == "no recipe given"
    html = (out / "summary.html").read_text()
    assert "Segmentation of 3 of 8 files" in html
    assert html.count("data:image/webp;base64") == 3
    for name in reasons:
        assert name in html
    assert "https://" not in html and 'src="http' not in html  # self-contained


def test_row_values_follow_the_calibration_at_the_requested_levels(runs, tmp_path):
    images = _good_images(tmp_path / "images", 3, seed=20)
    out = tmp_path / "out"
    predict_folder(
        images,
        out,
        model_paths=[runs.unet / "model.pt"],
        confidence=0.8,
        fnr_level=0.2,
        save_probabilities=True,
        log=lambda s: None,
    )
    calibration = Calibration.read(runs.unet / CALIBRATION_FILE)
    for row in pd.read_csv(out / "predictions.csv").itertuples():
        bound = calibration.dice_bound(row.quality, 0.8)
        control = calibration.fnr_control(0.2)
        rule = calibration.applicability_rule(0.8)
        assert row.flag_level == rule.level.level
        assert row.applicable == (row.applicability_p > rule.level.level)
        reason = row.applicability_reason if isinstance(row.applicability_reason, str) else ""
        assert (reason == "") == row.applicable
        prob = np.asarray(nib.load(out / row.probabilities).dataobj)
        mask = np.asarray(nib.load(out / row.mask).dataobj)
        assert np.array_equal(mask, prob >= 0.5)
        if not row.applicable:  # the rating does not apply: no bound, no FNR promise, no FNR mask
            assert bound.defined  # the fixture's calibration is large enough at 0.8
            assert row.guarantee == f"no guarantee: {reason}"
            assert row.fnr_status == f"no promise: {reason}"
            assert math.isnan(row.dice_lower_bound) and math.isnan(row.fnr_threshold)
            assert row.bound_status == "withheld: outside the calibration range"
            assert not isinstance(row.fnr_mask, str)
            continue
        assert row.dice_lower_bound == pytest.approx(bound.bound, nan_ok=True)
        assert row.bound_status == bound.status
        assert row.fnr_threshold == control.threshold and row.fnr_status == control.status
        if control.certified:
            assert np.array_equal(
                np.asarray(nib.load(out / row.fnr_mask).dataobj), prob >= control.threshold
            )


def test_the_applicability_evidence_matches_the_calibration_file(runs):
    """applicability.csv holds every image with its role and p-value; the file's tuning records
    are its tuning rows, and the check the file stores gives the same p-values."""
    table = pd.read_csv(runs.unet / "applicability.csv")
    model, _ = load_model_file(runs.unet / "model.pt")
    assert list(table.columns) == list(APPLICABILITY_COLUMNS)
    test, calib = table[table.split == "test"], table[table.split == "calibration"]
    assert len(test) == SPLITS["test"] and len(calib) == SPLITS["calibration"]
    assert test["role"].tolist() == ["tuning", "report"]
    assert set(calib["role"]) == {"calibration"} and calib["p_value"].isna().all()
    assert (test["kind"] == "in-domain").all() and test["in_domain"].all()
    assert test["p_value"].between(1 / (SPLITS["calibration"] + 1), 1).all()
    document = json.loads((runs.unet / CALIBRATION_FILE).read_text())
    block = document["applicability"]
    tuning = test[test.role == "tuning"]
    assert block["tuning"]["p_value"] == pytest.approx(tuning["p_value"].tolist())
    assert block["tuning"]["dice"] == pytest.approx(tuning["dice"].tolist())
    assert block["embedding_module"] == bottleneck_module(model, 2, SIZE)
    rule = Calibration.read(runs.unet / CALIBRATION_FILE).applicability_rule(0.9)
    case = load_split(runs.data, "test")[1]
    recorder = EmbeddingRecorder(model, block["embedding_module"], 2)
    with recorder:
        prob = predict_probabilities(model, case.image)
    verdict = rule.judge(label_free_statistics(case.image, prob), recorder.take())
    assert verdict.p_value == pytest.approx(
        test.loc[test.image_id == case.case_id, "p_value"].item()
    )


def test_total_failure_writes_nothing_and_lists_every_file(runs, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.txt").write_text("x")
    (images / "b.png").write_bytes(b"\x89PNG")
    with pytest.raises(
        PredictError, match=r"(?s)no image of .* could be segmented.*a\.txt.*b\.png"
    ):
        predict_folder(images, tmp_path / "out", model_paths=[runs.unet], log=lambda s: None)
    assert not (tmp_path / "out").exists()


def test_a_model_without_calibration_is_refused_naming_both_files(runs, tmp_path):
    shutil.copy(runs.unet / "model.pt", tmp_path / "model.pt")
    images = _good_images(tmp_path / "images", 1)
    with pytest.raises(
        PredictError, match=r"model\.pt: no calibration file .*calibration\.json beside it"
    ):
        predict_folder(images, tmp_path / "out", model_paths=[tmp_path], log=lambda s: None)
    assert not (tmp_path / "out").exists()


def test_a_calibration_of_another_model_is_refused(runs, tmp_path):
    shutil.copy(runs.unet / "model.pt", tmp_path / "model.pt")
    shutil.copy(runs.noskip / CALIBRATION_FILE, tmp_path / CALIBRATION_FILE)
    images = _good_images(tmp_path / "images", 1)
    with pytest.raises(PredictError, match="another model file"):
        predict_folder(images, tmp_path / "out", model_paths=[tmp_path], log=lambda s: None)


def test_a_non_empty_output_folder_is_kept_unless_it_holds_an_earlier_output(runs, tmp_path):
    """Overwriting needs the marker of an earlier batch and keeps the files it does not list
    (the hostile cases: tests/adversarial/test_adv_predict_out.py)."""
    images = _good_images(tmp_path / "images", 1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(PredictError, match="not empty"):
        predict_folder(images, tmp_path / "out", model_paths=[runs.unet], log=lambda s: None)
    with pytest.raises(PredictError, match="not an output folder of segrobust predict"):
        predict_folder(
            images, tmp_path / "out", model_paths=[runs.unet], overwrite=True, log=lambda s: None
        )
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
    predict_folder(images, tmp_path / "new", model_paths=[runs.unet], log=lambda s: None)
    (tmp_path / "new" / "mine.txt").write_text("keep me")
    predict_folder(
        images, tmp_path / "new", model_paths=[runs.unet], overwrite=True, log=lambda s: None
    )
    assert (tmp_path / "new" / "predictions.csv").is_file()
    assert (tmp_path / "new" / "mine.txt").read_text() == "keep me"


# --- predict follows the recipe ---------------------------------------------------------------

SPECKLE = PERTURBATIONS.get("speckle")
#: Speckle on the squares' intensity range (label + noise is not in [0, 1]).
MINMAX = {"scaling": "minmax"}


def _speckled(image, label, severity, rng):
    return SPECKLE.apply(image, label, severity, rng, MINMAX)


@pytest.fixture(scope="module")
def study(runs):
    """The perturbation study of the two runs, as the workflow builds it: 40 test images, their
    speckle copies at every severity (perturb_test_split), both runs evaluated on them
    (contract 4, with the label-free statistics), the regimes and their ranges from those rows
    (the analysis's own functions). The decisions are set by the test (``recipe``)."""
    root = runs.root / "study"
    rng = np.random.default_rng(7)
    with DatasetWriter(root / "test_set", provenance={"source": "synthetic-texture"}) as ds:
        for i in range(40):
            image, label = _square_image(rng)
            ds.add(
                f"t{i}", image, label, split="test", complexity=0.0, fg_ratio=float(label.mean())
            )
    perturb_test_split(root / "test_set", "speckle", range(1, 6), 0, root / "speckle", MINMAX)
    conditions = [TestCondition("clean", root / "test_set", "test")] + [
        TestCondition(
            f"speckle-s{s}",
            root / "speckle" / f"s{s}",
            "test",
            {"perturbation": "speckle", "severity": s, "test_dataset": "squares"},
        )
        for s in range(1, 6)
    ]
    tables = []
    for folder in (runs.unet, runs.noskip):
        info = Calibration.read(folder / CALIBRATION_FILE).document["run"]
        run = Run(info["study"], info["dataset"], info["arch"], info["patch"], info["seed"])
        out = root / run.arch
        tables.append(
            evaluate_run(
                folder / "model.pt",
                conditions,
                run=run,
                nsd_tolerance=1.0,
                nsd_unit="px",
                out_per_image=out / "per_image.csv",
                out_fnr=out / "fnr.csv",
                log=lambda line: None,
            )
        )
    per_image = pd.concat(tables, ignore_index=True)
    regimes = all_regimes(per_image, None, n_bins=3)
    regime_ranges(regimes).to_csv(root / RANGES_FILE, index=False)
    return SimpleNamespace(root=root, labels=[r.label for r in regimes], per_image=per_image)


def _recipe(study, recommend) -> Path:
    """recipe.csv beside the study's regime ranges: each regime recommends ``recommend(label)``
    (and the texture study, which the models do not come from, recommends UNet++)."""
    rows = [
        dict(
            study="perturbation",
            regime_kind="perturbation",
            regime=label,
            decision="recommended",
            recommended=recommend(label),
            leader=recommend(label),
            mean_dice=0.8,
            sentence=f"For {label}, use {recommend(label)}.",
        )
        for label in study.labels
    ]
    rows.append(
        dict(
            study="texture",
            regime_kind="complexity",
            regime="complexity 0-99 bits",
            low=0.0,
            high=99.0,
            decision="recommended",
            recommended="unetpp",
        )
    )
    path = study.root / "recipe.csv"
    pd.DataFrame(rows).reindex(columns=RECIPE_COLUMNS).to_csv(path, index=False)
    return path


def _strong_speckle(label: str) -> str:
    return "noskip_unet" if label in {f"speckle severity {s}" for s in (3, 4, 5)} else "unet"


def test_the_study_records_the_label_free_statistics_of_every_test_image(study):
    rows = study.per_image
    assert rows[["noise_sigma", "noise_brightness_ratio"]].notna().all().all()
    noise = rows.groupby("severity")["noise_sigma"].mean()
    assert noise.is_monotonic_increasing  # stronger speckle, noisier images
    assert set(study.labels) == {"clean test images (Unperturbed)"} | {
        f"speckle severity {s}" for s in range(1, 6)
    }


def test_predict_follows_the_recipe_on_perturbed_images_and_withholds_out_of_range_ratings(
    runs, study, tmp_path
):
    """Acceptance (issue 20): on speckle severity 5 images, where the study recommends the
    No-skip U-Net, predict uses it and says so per image; clean images get the U-Net the clean
    regime recommends; images outside the calibration range carry no bound and no FNR promise;
    the page's counts are those of the table."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(99)
    for i in range(12):
        image, label = _square_image(rng)
        speckled = _speckled(image, label, 5, np.random.default_rng(i))
        nib.save(nib.Nifti1Image(speckled, np.eye(4)), images / f"speckle{i:02d}.nii.gz")
    _good_images(images, 6, seed=98)  # clean: img0 .. img5
    out = tmp_path / "out"
    predict_folder(
        images,
        out,
        model_paths=[runs.root / "models"],
        recipe_path=_recipe(study, _strong_speckle),
        log=lambda s: None,
    )
    rows = pd.read_csv(out / "predictions.csv", keep_default_na=False, na_values=[""])
    speckled = rows[rows.image.str.startswith("speckle")]
    mapped = speckled[speckled.regime.notna()]
    assert len(mapped) >= 10  # an image outside every regime's observed range gets none
    assert set(mapped.regime) <= {"speckle severity 4", "speckle severity 5"}
    assert (mapped.arch == "noskip_unet").all() and (
        mapped.chosen_by == "recipe: recommended"
    ).all()
    said = r"^speckle noise severity [45] regime: noise \S+ within \S+ to \S+, bright/dark noise "
    said += r"ratio \S+ within \S+ to \S+( \(nearest by standardised distance of \d regimes "
    said += r"holding it\))? -> No-skip U-Net, recommended there$"
    assert mapped.model_choice.str.match(said).all(), mapped.model_choice.tolist()
    for row in speckled[speckled.regime.isna()].itertuples():
        assert row.chosen_by == "fallback: best calibrated" and "no regime ->" in row.model_choice
    clean = rows[rows.image.str.startswith("img") & rows.regime.notna()]
    assert len(clean) >= 4 and (clean.arch == "unet").all()
    assert "clean test images (Unperturbed)" in set(clean.regime)  # or mild speckle, as noisy
    assert set(clean.regime.map(_strong_speckle)) == {"unet"}
    assert not rows.model_choice.str.contains("UNet\\+\\+|unetpp").any()  # not this study's
    # no bound and no FNR promise where the rating does not apply
    outside = rows[~rows.applicable]
    assert len(outside) >= len(mapped)  # speckle 5 is noisier than any calibration image
    assert outside.dice_lower_bound.isna().all() and outside.fnr_threshold.isna().all()
    assert outside.fnr_mask.isna().all() and outside.guarantee.str.startswith("no guarantee").all()
    assert outside.fnr_status.str.startswith("no promise: ").all()
    assert not (out / "fnr_masks").exists() or {p.name for p in (out / "fnr_masks").iterdir()} == {
        f"{name}.nii.gz" for name in rows[rows.applicable & rows.fnr_mask.notna()].image
    }
    # the page: counts as in the table, the rule per image, display names
    page = (out / "summary.html").read_text()
    guaranteed = int((rows.applicable & rows.dice_lower_bound.notna()).sum())
    counts = re.search(r"<p class='counts'>(.*?)</p>", page).group(1)
    assert counts.startswith(
        f"{guaranteed} of 18 with a guarantee; {len(outside)} outside the calibration range: "
        "check by eye"
    )
    n_noskip, n_fallback = (
        int((rows.arch == "noskip_unet").sum()),
        int((rows.chosen_by == "fallback: best calibrated").sum()),
    )
    assert f"No-skip U-Net segmented {n_noskip}" in page or f"No-skip U-Net {n_noskip}" in page
    assert f"recommended there by the recipe {18 - n_fallback}" in page
    assert page.count("-&gt; No-skip U-Net, recommended there") == len(mapped)
    assert page.count("no promise: the image is outside the calibration range") == len(outside)
    assert "noise noise" not in page and "noskip_unet, recommended" not in page


def test_the_fallback_is_the_best_calibrated_model_and_says_why(runs, study, tmp_path):
    images = _good_images(tmp_path / "images", 2, seed=40)
    predict_folder(
        images,
        tmp_path / "out",
        model_paths=[runs.unet, runs.noskip],
        recipe_path=_recipe(study, lambda label: "unetpp"),
        log=lambda s: None,
    )
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    dice = {
        arch: Calibration.read(p / CALIBRATION_FILE).mean_dice
        for arch, p in (("unet", runs.unet), ("noskip_unet", runs.noskip))
    }
    best = max(dice, key=dice.get)
    assert (predictions.arch == best).all()
    assert (predictions.chosen_by == "fallback: best calibrated").all()
    assert predictions.model_choice.str.contains(
        "recommends UNet\\+\\+, not among the models"
    ).all()
    assert predictions.model_choice.str.endswith(
        f"the best calibrated model given (calibration Dice {dice[best]:.3f})"
    ).all()


def test_models_of_several_studies_are_refused(runs, study, tmp_path):
    other = tmp_path / "texture_run"
    shutil.copytree(runs.noskip, other)
    document = json.loads((other / CALIBRATION_FILE).read_text())
    document["run"]["study"] = "texture"
    (other / CALIBRATION_FILE).write_text(json.dumps(document))
    images = _good_images(tmp_path / "images", 1)
    with pytest.raises(
        PredictError,
        match="come from perturbation study on squares, texture "
        "study on squares: the recipe's regimes",
    ):
        predict_folder(
            images,
            tmp_path / "out",
            model_paths=[runs.unet, other],
            recipe_path=_recipe(study, _strong_speckle),
            log=lambda s: None,
        )
    assert not (tmp_path / "out").exists()


def test_no_model_or_a_folder_without_models_is_refused(tmp_path):
    images = _good_images(tmp_path / "images", 1)
    with pytest.raises(PredictError, match="no model given"):
        predict_folder(images, tmp_path / "out", model_paths=[], log=lambda s: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictError, match=r"empty: no model\.pt in this folder or below it"):
        predict_folder(
            images, tmp_path / "out", model_paths=[tmp_path / "empty"], log=lambda s: None
        )


def test_several_models_need_the_recipe(runs, tmp_path):
    images = _good_images(tmp_path / "images", 1)
    with pytest.raises(PredictError, match="needs the recipe table"):
        predict_folder(
            images, tmp_path / "out", model_paths=[runs.unet, runs.noskip], log=lambda s: None
        )


# --- the console command --------------------------------------------------------------------


def test_the_console_script_is_declared_and_points_at_the_cli():
    """pyproject declares ``segrobust = "segrobust.cli:main"`` under [project.scripts] (read as
    text: tomllib needs Python 3.11, the project supports 3.10) and the target is callable."""
    text = (REPO / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section is not None
    entries = dict(re.findall(r'^(\S+)\s*=\s*"([^"]+)"', section.group(1), re.M))
    assert entries == {"segrobust": "segrobust.cli:main"}
    module, function = entries["segrobust"].split(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--model",
        "--images",
        "--out",
        "--recipe",
        "--confidence",
        "--fnr-level",
        "--save-probabilities",
        "--device",
        "--overwrite",
    ):
        assert option in text


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", "--images", "x"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", "--model", "m", "--images", "i", "--out", "o", "--confidence", "1.5"])
    assert exit_info.value.code == 2 and "strictly between 0 and 1" in capsys.readouterr().err


def test_exit_status_partial_and_total_failure(runs, tmp_path, capsys):
    images = _good_images(tmp_path / "images", 1)
    (images / "notes.txt").write_text("x")
    args = ["predict", "--model", str(runs.unet), "--images", str(images), "--device", "cpu"]
    assert cli_main([*args, "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "out" / "summary.html")
    assert "1 file(s) not segmented" in captured.err
    (images / "img0.nii.gz").unlink()
    assert cli_main([*args, "--out", str(tmp_path / "out2")]) == 1
    assert "notes.txt: not a NIfTI file" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_the_command_runs_as_a_module_in_a_fresh_process(runs, tmp_path):
    images = _good_images(tmp_path / "images", 1)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "segrobust.cli",
            "predict",
            "--model",
            str(runs.unet),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "summary.html").is_file()


# --- the rules' scripts and the config ------------------------------------------------------


def _script(name):
    spec = importlib.util.spec_from_file_location(
        name, REPO / "workflow" / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snakemake(tmp_path, **fields):
    return SimpleNamespace(log=[str(tmp_path / "job.log")], threads=1, rule="test", **fields)


def test_the_evaluate_model_script_writes_the_calibration_beside_the_model(runs, tmp_path):
    folder = runs.unet
    model = tmp_path / "model.pt"
    shutil.copy(folder / "model.pt", model)
    spec = dict(dataset_dir=str(runs.data), meta={"test_dataset": "squares"})
    job = _snakemake(
        tmp_path,
        input=SimpleNamespace(model=str(model)),
        output=SimpleNamespace(
            per_image=str(tmp_path / "per_image.csv"),
            fnr=str(tmp_path / "fnr.csv"),
            calibration=str(tmp_path / CALIBRATION_FILE),
            applicability=str(tmp_path / "applicability.csv"),
            predictions=str(tmp_path / "predictions"),
        ),
        wildcards=SimpleNamespace(
            study="perturbation", dataset="squares", arch="unet", patch="full", seed="1"
        ),
        params=SimpleNamespace(
            conditions=[
                dict(spec, name="clean", split="test"),
                dict(spec, name="clean", split="calibration"),
            ],
            window=None,
            save_predictions=False,
            evaluation={"nsd_tolerance": 1.0, "nsd_unit": "px"},
            device="cpu",
        ),
        resources={},
    )
    job.rule = "evaluate_model"
    _script("evaluate_model").main(job)
    written = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert written == json.loads((folder / CALIBRATION_FILE).read_text())
    # the same evidence (the fixture's conditions name no test dataset)
    evidence = pd.read_csv(tmp_path / "applicability.csv").drop(columns="test_dataset")
    expected = pd.read_csv(folder / "applicability.csv").drop(columns="test_dataset")
    pd.testing.assert_frame_equal(evidence, expected)


def test_the_predict_images_script_runs_the_batch(runs, study, tmp_path):
    images = _good_images(tmp_path / "images", 1)
    recipe = _recipe(study, _strong_speckle)
    shift = tmp_path / "shift_coverage.csv"
    rows = [
        dict(study="perturbation", arch="unet", kind="in-domain", fraction_flagged=0.1,
             status="holds", target=0.9, tolerance=0.05),
        dict(study="perturbation", arch="unet", kind="speckle s5", fraction_flagged=1.0,
             status="withheld", target=0.9, tolerance=0.05),
        dict(study="perturbation", arch="vnet", kind="blur s1", fraction_flagged=0.0,
             status="below target", coverage=0.5, target=0.9, tolerance=0.05),
    ]  # fmt: skip
    pd.DataFrame(rows).reindex(columns=SHIFT_COVERAGE_COLUMNS).to_csv(shift, index=False)
    job = _snakemake(
        tmp_path,
        input=SimpleNamespace(
            images=str(images),
            models=[str(runs.unet / "model.pt")],
            recipe=str(recipe),
            shift_coverage=str(shift),
        ),  # fmt: skip
        output=[str(tmp_path / "predict")],
        params=SimpleNamespace(
            confidence=0.9, fnr_level=0.1, save_probabilities=False, device="cpu"
        ),
    )
    _script("predict_images").main(job)
    row = pd.read_csv(tmp_path / "predict" / "predictions.csv").iloc[0]
    assert row.recommended_arch == "unet" and row.regime == "clean test images (Unperturbed)"
    # the page states where the rating holds for the architecture used (not vnet's rows)
    page = (tmp_path / "predict" / "summary.html").read_text()
    assert (
        "Perturbation study, confidence rating holds for: in-domain (90% rated); withheld "
        "(every image flagged) for: speckle noise s5." in page  # display names
    )
    assert "blur s1" not in page


def test_a_missing_or_foreign_shift_coverage_table_is_refused(runs, tmp_path):
    images = _good_images(tmp_path / "images", 1)
    with pytest.raises(PredictError, match="table not found"):
        predict_folder(images, tmp_path / "a", model_paths=[runs.unet],
                       shift_coverage_path=tmp_path / "none.csv", log=lambda s: None)  # fmt: skip
    (tmp_path / "recipe.csv").write_text("study,arch\ntexture,unet\n")
    with pytest.raises(PredictError, match="not a per-shift coverage table"):
        predict_folder(images, tmp_path / "b", model_paths=[runs.unet],
                       shift_coverage_path=tmp_path / "recipe.csv", log=lambda s: None)  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _config(**predict):
    config = default_config()
    config["predict"].update(predict)
    return config


RUNS = {
    "texture": [Run("texture", "texture-background-0.5", "unet", "full", 1)],
    "perturbation": [
        Run("perturbation", "texture_demo", arch, "full", seed)
        for arch in ("unet", "noskip_unet")
        for seed in (1, 2)
    ],
}


def test_predict_is_off_without_images_and_takes_the_analysis_levels():
    assert predict_plan(_config(), RUNS) is None
    plan = predict_plan(_config(images="new"), RUNS)
    assert plan.runs == tuple(r for r in RUNS["perturbation"] if r.seed == 1)
    assert (plan.confidence, plan.fnr_level) == pytest.approx((0.9, 0.1))
    config = _config(images="new", confidence=0.95, fnr_level=0.05)
    config["analysis"]["conformal_alpha"] = 0.2
    assert (predict_plan(config, RUNS).confidence, predict_plan(config, RUNS).fnr_level) == (
        0.95,
        0.05,
    )


def test_the_command_line_levels_are_the_workflow_defaults():
    """`segrobust predict` without --confidence / --fnr-level states what a default study's
    predict job states: 1 - the schema's conformal_alpha and its fnr_level."""
    analysis = default_config()["analysis"]
    assert DEFAULT_CONFIDENCE == pytest.approx(1 - analysis["conformal_alpha"])
    assert DEFAULT_FNR_LEVEL == analysis["fnr_level"]
    args = build_parser().parse_args(["predict", "--model", "m", "--images", "i", "--out", "o"])
    assert (args.confidence, args.fnr_level) == (DEFAULT_CONFIDENCE, DEFAULT_FNR_LEVEL)


def test_one_run_by_its_path_and_clear_errors_for_others():
    plan = predict_plan(
        _config(images="new", model="perturbation/texture_demo/unet/pfull/seed2"), RUNS
    )
    assert plan.runs == (Run("perturbation", "texture_demo", "unet", "full", 2),)
    assert parse_run_path("context/spheres/unet/p16/seed1") == Run(
        "context", "spheres", "unet", "16", 1
    )
    with pytest.raises(ConfigError, match=r"predict\.model: 'unet' is not allowed"):
        predict_plan(_config(images="new", model="unet"), RUNS)
    with pytest.raises(ConfigError, match=r"predict\.model: run .*seed9.* is not trained"):
        predict_plan(
            _config(images="new", model="perturbation/texture_demo/unet/pfull/seed9"), RUNS
        )
    with pytest.raises(ConfigError, match=r"predict\.study: study 'context' is not enabled"):
        predict_plan(_config(images="new", study="context"), RUNS)
    with pytest.raises(ConfigError, match=r"predict\.dataset: 'busi' is not a training dataset"):
        predict_plan(_config(images="new", dataset="busi"), RUNS)
    two = {
        **RUNS,
        "texture": [*RUNS["texture"], Run("texture", "texture-background-0.9", "unet", "full", 1)],
    }
    with pytest.raises(
        ConfigError, match=r"predict\.dataset: null, but study 'texture' trains on several"
    ):
        predict_plan(_config(images="new", study="texture"), two)
