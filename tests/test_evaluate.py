"""evaluate_run on tiny datasets and a tiny random U-Net: table shape, metadata, atomic failure."""

from __future__ import annotations

import gzip
import math
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from schema_defaults import model_kwargs

from segrobust.contract import FNR_COLUMNS, PER_IMAGE_COLUMNS, Run
from segrobust.data.dataset import DataError, DatasetWriter, load_split
from segrobust.evaluation.evaluate import TestCondition, evaluate_run
from segrobust.evaluation.infer import SlidingWindow, predict_probabilities
from segrobust.evaluation.label_free import noise_sigma
from segrobust.evaluation.metrics import FNR_THRESHOLDS, segmentation_metrics, soft_quality
from segrobust.evaluation.noise_level import noise_brightness_ratio
from segrobust.networks import build_model
from segrobust.networks.modelfile import load_model_file, save_model_file

torch.set_num_threads(1)

RUN = Run("texture", "texture-fg-0.5", "unet", "full", 1)
UNET = model_kwargs("unet", channels=(4, 8))
AFFINE_2D = np.array(
    [[0.0, 0.7, 0.0, 5.0], [1.3, 0.0, 0.0, -2.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def make_dataset(path, shape, n_test=3, n_calibration=2, seed=0, affine=None):
    """Bright disc-ish squares on noise; complexity is a made-up per-case number; the first two
    cases are slices of one volume (``group`` vol0), the others name no group."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, provenance={"source": "test", "intensity": {"method": "none"}}) as ds:
        for i in range(n_test + n_calibration):
            label = np.zeros(shape, dtype=np.uint8)
            corner = rng.integers(1, 5, size=len(shape))
            label[tuple(slice(c, c + 6) for c in corner)] = 1
            image = (label + 0.3 * rng.standard_normal(shape)).astype(np.float32)
            split = "test" if i < n_test else "calibration"
            ds.add(
                f"case{i}",
                image,
                label,
                split=split,
                spacing=None if affine is not None else (0.5,) * len(shape),
                affine=affine,
                complexity=0.1 * i,
                fg_ratio=float(label.mean()),
                **({"group": "vol0"} if i < 2 else {}),
            )
    return path


def make_model(path, spatial_dims, patch_size=None):
    torch.manual_seed(0)
    model = build_model("unet", spatial_dims, **UNET)
    save_model_file(
        path,
        model,
        arch="unet",
        spatial_dims=spatial_dims,
        model_kwargs=UNET,
        img_size=None,
        patch_size=patch_size,
    )
    return path


@pytest.fixture
def setup(tmp_path):
    data = make_dataset(tmp_path / "data" / "texture-fg-0.5", (16, 16), affine=AFFINE_2D)
    other = make_dataset(tmp_path / "data" / "texture-fg-0.9", (16, 16), n_test=2, seed=1)
    model = make_model(tmp_path / "model.pt", 2)
    return tmp_path, data, other, model


def run(tmp_path, model, conditions, **kwargs):
    return evaluate_run(
        model,
        conditions,
        run=RUN,
        nsd_tolerance=1.0,
        nsd_unit="mm",
        out_per_image=tmp_path / "out" / "per_image.csv",
        out_fnr=tmp_path / "out" / "fnr.csv",
        log=lambda line: None,
        **kwargs,
    )


def test_table_columns_rows_and_metadata(setup):
    tmp_path, data, other, model = setup
    conditions = [
        TestCondition("clean", data, "test"),
        TestCondition("clean-cal", data, "calibration", {"perturbation": "none", "severity": 0}),
        TestCondition(
            "texture-fg-0.9",
            other,
            "test",
            {
                "test_dataset": "texture-fg-0.9",
                "direction": "fg",
                "train_alpha": 0.5,
                "test_alpha": 0.9,
                "level": "Harder",
            },
        ),
    ]
    returned = run(tmp_path, model, conditions)
    table = pd.read_csv(tmp_path / "out" / "per_image.csv")
    assert tuple(table.columns) == PER_IMAGE_COLUMNS
    assert len(returned) == len(table)
    assert table.groupby("condition").size().to_dict() == {
        "clean": 3,
        "clean-cal": 2,
        "texture-fg-0.9": 2,
    }
    assert (table[list(RUN.columns)].drop_duplicates().to_dict("records")) == [RUN.columns]
    clean = table[table.condition == "clean"]
    assert (clean.perturbation == "none").all() and (clean.severity == 0).all()
    assert clean.split.eq("test").all() and clean.test_dataset.isna().all()
    assert clean.direction.isna().all() and clean.train_alpha.isna().all()
    assert set(table[table.condition == "clean-cal"].split) == {"calibration"}
    moved = table[table.condition == "texture-fg-0.9"]
    assert (moved.test_alpha == 0.9).all() and (moved.train_alpha == 0.5).all()
    assert (moved.level == "Harder").all() and (moved.direction == "fg").all()
    assert moved.perturbation.isna().all()  # not set for this condition: left empty
    assert list(clean.image_id) == ["case0", "case1", "case2"]
    assert list(clean.group) == ["vol0", "vol0", "case2"]  # no group named: the image itself
    assert np.allclose(clean.complexity, [0.0, 0.1, 0.2])
    # the label-free statistics predict measures on a new image, of each stored image
    cases = {c.case_id: c.image for c in load_split(data, "test")}
    for row in clean.itertuples():
        assert row.noise_sigma == pytest.approx(noise_sigma(cases[row.image_id]))
        assert row.noise_brightness_ratio == pytest.approx(
            noise_brightness_ratio(cases[row.image_id]), nan_ok=True
        )
    for column in ("dice", "nsd", "quality", "fg_ratio"):
        assert table[column].between(0, 1).all(), column

    fnr = pd.read_csv(tmp_path / "out" / "fnr.csv")
    assert tuple(fnr.columns) == FNR_COLUMNS
    assert len(fnr) == len(table) * len(FNR_THRESHOLDS)
    assert (fnr[list(RUN.columns)].drop_duplicates().to_dict("records")) == [RUN.columns]
    assert (
        fnr.groupby(["condition", "image_id"]).fnr.apply(lambda f: f.is_monotonic_increasing).all()
    )


def test_rows_match_the_library_pieces_for_a_patch_model(tmp_path):
    # a patch-trained 3D model is evaluated with sliding windows of its patch size
    data = make_dataset(tmp_path / "spheres", (12, 12, 12), n_test=2, n_calibration=0)
    model_path = make_model(tmp_path / "model.pt", 3, patch_size=[8, 8, 8])
    window = SlidingWindow(0.25, "constant", 4)
    table = run(tmp_path, model_path, [TestCondition("clean", data)], window=window)
    model, _ = load_model_file(model_path)
    case_image = nib.load(data / "images" / "case1.nii.gz").get_fdata().astype(np.float32)
    case_label = nib.load(data / "labels" / "case1.nii.gz").get_fdata() > 0
    prob = predict_probabilities(model, case_image, patch_size=8, window=window)
    expected = segmentation_metrics(prob >= 0.5, case_label, (0.5, 0.5, 0.5), 1.0, nsd_unit="mm")
    row = table[table.image_id == "case1"].iloc[0]
    for name, value in expected.items():
        assert (math.isnan(value) and math.isnan(row[name])) or row[name] == pytest.approx(value)
    assert row.quality == pytest.approx(soft_quality(prob))
    assert row.fg_ratio == pytest.approx(case_label.mean())


def test_predictions_are_saved_with_the_input_affine(setup):
    tmp_path, data, _, model = setup
    out = tmp_path / "predictions"
    run(tmp_path, model, [TestCondition("clean", data)], predictions_dir=out)
    saved = sorted(p.name for p in (out / "test" / "clean").iterdir())
    assert saved == ["case0.nii.gz", "case1.nii.gz", "case2.nii.gz"]
    pred = nib.load(out / "test" / "clean" / "case0.nii.gz")
    np.testing.assert_allclose(pred.affine, AFFINE_2D)
    image = nib.load(data / "images" / "case0.nii.gz").get_fdata().astype(np.float32)
    net, _ = load_model_file(model)
    expected = predict_probabilities(net, image) >= 0.5
    np.testing.assert_array_equal(np.asarray(pred.dataobj), expected.astype(np.uint8))


def corrupt_garbage(data):
    path = data / "images" / "case1.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a nifti file" * 10))
    return path


def corrupt_non_binary(data):
    path = data / "labels" / "case1.nii.gz"
    label = np.zeros((16, 16), dtype=np.uint8)
    label[3:6, 3:6] = 2
    nib.save(nib.Nifti1Image(label, np.eye(4)), path)
    return path


def corrupt_shape(data):
    path = data / "labels" / "case0.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 14), dtype=np.uint8), np.eye(4)), path)
    return path


@pytest.mark.parametrize("corrupt", [corrupt_garbage, corrupt_non_binary, corrupt_shape])
def test_bad_file_raises_naming_it_and_writes_nothing(setup, corrupt):
    tmp_path, data, other, model = setup
    bad = corrupt(other)  # the second condition is bad: the first one's rows must not be written
    conditions = [TestCondition("clean", data), TestCondition("other", other)]
    with pytest.raises(DataError, match=re.escape(str(bad))):
        run(tmp_path, model, conditions, predictions_dir=tmp_path / "out" / "predictions")
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_arguments_are_rejected_before_any_work(setup):
    tmp_path, data, _, model = setup
    with pytest.raises(ValueError, match="unknown metadata noise.*allowed: test_dataset"):
        run(tmp_path, model, [TestCondition("clean", data, meta={"noise": 1})])
    with pytest.raises(ValueError, match=r"repeated: clean \(test\)"):
        run(tmp_path, model, [TestCondition("clean", data), TestCondition("clean", data)])
    with pytest.raises(ValueError, match="unknown split 'val'"):
        run(tmp_path, model, [TestCondition("clean", data, split="val")])
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_model_and_image_dimensions_must_agree(tmp_path):
    data = make_dataset(tmp_path / "flat", (16, 16), n_test=1, n_calibration=0)
    model = make_model(tmp_path / "model.pt", 3, patch_size=[8, 8, 8])
    with pytest.raises(ValueError, match="3D model cannot segment the 2D image 'case0'"):
        run(
            tmp_path,
            model,
            [TestCondition("clean", data)],
            window=SlidingWindow(0.25, "constant", 4),
        )


@pytest.mark.parametrize("shape", [(64, 64), (24, 24, 24)])
def test_the_noise_brightness_ratio_tells_multiplicative_from_additive_noise(shape):
    """On a two-level image (0.2 and 0.8) speckle's noise is 4 times stronger on the bright
    half; additive noise is the same on both."""
    rng = np.random.default_rng(0)
    image = np.full(shape, 0.2)
    image[: shape[0] // 2] = 0.8
    additive = image + 0.05 * rng.standard_normal(shape)
    speckle = image * (1 + 0.25 * rng.standard_normal(shape))
    assert noise_brightness_ratio(additive) == pytest.approx(1.0, abs=0.2)
    assert noise_brightness_ratio(speckle) == pytest.approx(4.0, rel=0.2)


def test_the_noise_brightness_ratio_is_undefined_without_noise_or_extent():
    assert math.isnan(noise_brightness_ratio(np.ones((8, 8))))
    assert math.isnan(noise_brightness_ratio(np.ones((1, 8))))
