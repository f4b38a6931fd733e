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
from segrobust.predict import inputs
from segrobust.predict.batch import (
    FAILURE_COLUMNS,
    PREDICTION_COLUMNS,
    PredictError,
    guarantee_text,
    predict_folder,
)
from segrobust.predict.recipe_lookup import ComplexityRecipe
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


def _recipe_csv(path, regimes):
    rows = [
        dict(
            study="texture",
            regime_kind="complexity",
            regime=f"complexity {lo}-{hi} bits",
            low=lo,
            high=hi,
            decision=decision,
            recommended=arch,
            sentence=f"sentence {lo}",
        )
        for lo, hi, decision, arch in regimes
    ]
    rows.append(dict(study="perturbation", regime_kind="perturbation", regime="clean"))
    pd.DataFrame(rows).reindex(columns=RECIPE_COLUMNS).to_csv(path, index=False)
    return path


def test_recipe_lookup_maps_complexity_to_its_bin_and_says_when_outside(tmp_path):
    path = _recipe_csv(
        tmp_path / "recipe.csv",
        [(0.5, 1.0, "recommended", "unetpp"), (0.1, 0.5, "no recommendation", "")],
    )
    recipe = ComplexityRecipe.read(path)
    assert recipe.answer(0.1).regime.low == 0.1  # the first bin includes its lower edge
    assert recipe.answer(0.5).regime.high == 0.5  # every bin includes its upper edge
    assert recipe.answer(0.7).recommended_arch == "unetpp"
    assert recipe.answer(0.3).recommended_arch == ""
    outside = recipe.answer(1.2)
    assert outside.regime is None and "outside the recipe's range 0.1 to 1 bits" in outside.note
    assert "undefined" in recipe.answer(math.nan).note


def test_a_recipe_without_bin_edges_is_refused(tmp_path):
    path = tmp_path / "recipe.csv"
    pd.DataFrame([dict(regime_kind="complexity", regime="complexity 0-1 bits")]).to_csv(path)
    with pytest.raises(ValueError, match=r"recipe\.csv: recipe table lacks column\(s\) low, high"):
        ComplexityRecipe.read(path)


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
        assert row.dice_lower_bound == pytest.approx(bound.bound, nan_ok=True)
        assert row.bound_status == bound.status
        rule = calibration.applicability_rule(0.8)
        assert row.flag_level == rule.level.level
        assert row.applicable == (row.applicability_p > rule.level.level)
        reason = row.applicability_reason if isinstance(row.applicability_reason, str) else ""
        assert (reason == "") == row.applicable
        if not row.applicable:  # no bound and no FNR promise for a flagged image
            assert row.guarantee == f"no guarantee: {reason}"
            assert row.fnr_status == f"no promise: {reason}"
            assert isinstance(row.fnr_mask, float) and math.isnan(row.fnr_mask)
            continue
        control = calibration.fnr_control(0.2)
        assert row.fnr_threshold == control.threshold and row.fnr_status == control.status
        prob = np.asarray(nib.load(out / row.probabilities).dataobj)
        mask = np.asarray(nib.load(out / row.mask).dataobj)
        assert np.array_equal(mask, prob >= 0.5)
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


def test_recommended_uses_the_recipes_architecture_for_the_images_regime(runs, tmp_path):
    images = _good_images(tmp_path / "images", 3, seed=30)
    recipe = _recipe_csv(tmp_path / "recipe.csv", [(0.0, 100.0, "recommended", "noskip_unet")])
    predict_folder(
        images,
        tmp_path / "out",
        model_paths=[runs.root / "models"],
        recipe_path=recipe,
        log=lambda s: None,
    )
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert (predictions.arch == "noskip_unet").all()
    assert predictions.model_choice.str.contains(
        "regime 'complexity 0.0-100.0 bits' recommends"
    ).all()


def test_recommended_falls_back_to_the_best_calibrated_model_and_says_why(runs, tmp_path):
    images = _good_images(tmp_path / "images", 2, seed=40)
    recipe = _recipe_csv(tmp_path / "recipe.csv", [(0.0, 100.0, "recommended", "unetpp")])
    predict_folder(
        images,
        tmp_path / "out",
        model_paths=[runs.unet, runs.noskip],
        recipe_path=recipe,
        log=lambda s: None,
    )
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    dice = {
        arch: Calibration.read(p / CALIBRATION_FILE).mean_dice
        for arch, p in (("unet", runs.unet), ("noskip_unet", runs.noskip))
    }
    best = max(dice, key=dice.get)
    assert (predictions.arch == best).all()
    assert predictions.model_choice.str.contains(
        "recommends unetpp, not among the models given"
    ).all()
    assert predictions.model_choice.str.contains("highest calibration Dice").all()


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


def test_the_predict_images_script_runs_the_batch(runs, tmp_path):
    images = _good_images(tmp_path / "images", 1)
    recipe = _recipe_csv(tmp_path / "recipe.csv", [(0.0, 100.0, "recommended", "unet")])
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
    assert row.recommended_arch == "unet" and row.regime == "complexity 0.0-100.0 bits"
    # the page states where the rating holds for the architecture used (not vnet's rows)
    page = (tmp_path / "predict" / "summary.html").read_text()
    assert (
        "Perturbation study, confidence rating holds for: in-domain (90% rated); withheld "
        "(every image flagged) for: speckle s5." in page
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
