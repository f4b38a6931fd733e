"""The calibration file beside model.pt: its numbers equal the analysis' at every level, it is
strict versioned JSON, it refuses the wrong model or tables, and its noise estimate is right."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from schema_defaults import model_kwargs

from segrobust.analysis import conformal
from segrobust.contract import FNR_COLUMNS, PER_IMAGE_COLUMNS, Run
from segrobust.data import msd
from segrobust.data.dataset import DatasetWriter, load_split
from segrobust.data.prepare import PrepareOptions
from segrobust.evaluation import label_free, preprocessing
from segrobust.evaluation.evaluate import TestCondition, evaluate_run
from segrobust.evaluation.infer import SlidingWindow, predict_probabilities
from segrobust.evaluation.metrics import FNR_THRESHOLDS
from segrobust.guarantees import calibration_file as cal
from segrobust.networks import build_model
from segrobust.networks.modelfile import save_model_file

torch.set_num_threads(1)

RUN = Run("perturbation", "shapes", "unet", "full", 1)
UNET = model_kwargs("unet", channels=(4, 8))


# --- the noise estimate ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(96, 96), (40, 40, 24)])
@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.3])
def test_noise_sigma_recovers_gaussian_noise_on_a_smooth_image(shape, sigma):
    rng = np.random.default_rng(0)
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    smooth = np.sin(3 * grids[0]) + grids[1] ** 2  # structure the diagonal band barely sees
    estimate = label_free.noise_sigma(smooth + sigma * rng.standard_normal(shape))
    assert estimate == pytest.approx(sigma, rel=0.08)


def test_noise_sigma_of_a_constant_or_too_thin_image():
    assert label_free.noise_sigma(np.ones((8, 8))) == 0.0
    assert math.isnan(label_free.noise_sigma(np.ones((1, 8))))


# --- numbers equal to the analysis' ---------------------------------------------------------


def _per_image(rng, n_cal, n_test=30, shift=0.0):
    """Calibration and test rows of RUN (plus rows the calibration must ignore)."""
    rows = []
    for split, condition, n in (
        ("calibration", "clean", n_cal),
        ("test", "clean", n_test),
        ("calibration", "speckle-s3", 5),  # not in-domain: never calibrated on
    ):
        for i in range(n):
            quality = rng.uniform(0.6, 1.0)
            dice = float(np.clip(quality - rng.normal(0.05, 0.05) - shift, 0, 1))
            rows.append(
                dict(
                    RUN.columns,
                    condition=condition,
                    split=split,
                    image_id=f"{split}{i}",
                    group=f"{split}{i}",
                    dice=dice,
                    quality=quality,
                    complexity=rng.uniform(0, 2),
                    fg_ratio=rng.uniform(0.05, 0.3),
                )
            )
    return pd.DataFrame(rows).reindex(columns=list(PER_IMAGE_COLUMNS))


def _fnr(rng, per_image):
    rows = []
    for r in per_image.itertuples():
        p = rng.beta(2, 1, size=50)
        curve = (p[None, :] < FNR_THRESHOLDS[:, None]).mean(axis=1)
        for t, f in zip(FNR_THRESHOLDS, curve, strict=True):
            rows.append(
                dict(
                    RUN.columns,
                    condition=r.condition,
                    split=r.split,
                    image_id=r.image_id,
                    group=r.image_id,
                    threshold=t,
                    fnr=f,
                )
            )
    return pd.DataFrame(rows, columns=list(FNR_COLUMNS))


def _statistics(per_image):
    cal_rows = conformal.calibration_rows(per_image)
    return {
        i: dict(complexity=0.1 * k, predicted_fg_ratio=0.01 * k, noise_sigma=0.2, quality=0.9)
        for k, i in enumerate(cal_rows["image_id"])
    }


def _document(per_image, fnr):
    return cal.build_calibration(
        per_image,
        fnr,
        run=RUN,
        model_info=dict(arch="unet", spatial_dims=2, img_size=[16, 16]),
        model_sha256="0" * 64,
        preprocessing={"size": [16, 16]},
        statistics=_statistics(per_image),
        window=None,
    )


def test_dice_bound_scores_are_the_sorted_in_domain_calibration_scores():
    per_image = _per_image(np.random.default_rng(1), n_cal=40)
    block = cal.dice_bound_block(per_image)
    own = per_image[(per_image.split == "calibration") & (per_image.condition == "clean")]
    assert block["scores"] == sorted((own.quality - own.dice).tolist())
    assert block["n"] == 40
    # k = ceil(41 * 0.9) = 37: the 37th smallest score
    q_hat = cal.Calibration("x", _document(per_image, _fnr(np.random.default_rng(2), per_image)))
    assert q_hat.dice_bound(0.9, 0.9).q_hat == pytest.approx(sorted(own.quality - own.dice)[36])


def test_too_few_calibration_images_is_undefined_with_the_minimum_n():
    per_image = _per_image(np.random.default_rng(1), n_cal=5)
    calibration = cal.Calibration(
        "x", _document(per_image, _fnr(np.random.default_rng(2), per_image))
    )
    bound = calibration.dice_bound(0.9, 0.9)
    assert math.isnan(bound.bound) and not bound.defined and "n_calibration = 5 < 9" in bound.status
    control = calibration.fnr_control(0.1)
    assert not control.certified and "5 < 9" in control.status


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95])
def test_bound_at_any_level_equals_the_analysis_bound(confidence):
    """The file (which stores no level) gives at each level what the analysis gives there."""
    rng = np.random.default_rng(3)
    per_image = _per_image(rng, n_cal=60)
    calibration = cal.Calibration("x", _document(per_image, _fnr(rng, per_image)))
    alpha = 1 - confidence
    expected, _ = conformal.calibrate_dice_bounds(per_image, alpha=alpha)
    test = expected[expected.split == "test"]
    got = [calibration.dice_bound(q, confidence).bound for q in test.quality]
    assert np.allclose(got, test.dice_lower_bound)


@pytest.mark.parametrize("level", [0.05, 0.1, 0.2])
def test_fnr_threshold_at_any_level_equals_the_analysis_threshold(level):
    rng = np.random.default_rng(4)
    per_image = _per_image(rng, n_cal=60)
    fnr = _fnr(rng, per_image)
    calibration = cal.Calibration("x", _document(per_image, fnr))
    expected = conformal.conformal_fnr(fnr, level)
    control = calibration.fnr_control(level)
    assert control.threshold == expected["t_hat"].iloc[0]
    assert control.certified == bool(expected["certified"].iloc[0])
    assert control.status == expected["status"].iloc[0]


def test_tables_of_another_run_are_refused():
    per_image = _per_image(np.random.default_rng(1), n_cal=12)
    other = per_image.assign(arch="vnet")
    with pytest.raises(cal.CalibrationError, match="no rows of run"):
        _document(other, _fnr(np.random.default_rng(2), per_image))


def test_without_calibration_images_nothing_is_claimed():
    per_image = _per_image(np.random.default_rng(1), n_cal=0)
    document = cal.build_calibration(
        per_image,
        _fnr(np.random.default_rng(2), per_image),
        run=RUN,
        model_info=dict(arch="unet", spatial_dims=2),
        model_sha256="0" * 64,
        preprocessing={},
        statistics={},
        window=None,
    )
    calibration = cal.Calibration("x", document)
    assert document["ranges"] == dict.fromkeys(cal.RANGE_STATISTICS)
    assert document["mean_dice"] is None and math.isnan(calibration.mean_dice)
    verdict = calibration.applicability_rule(0.9).judge(
        dict(complexity=1, predicted_fg_ratio=0.1, noise_sigma=0, quality=0.9), np.zeros(4)
    )
    assert not verdict.applicable and "holds no applicability check" in verdict.reason
    assert not calibration.dice_bound(0.9, 0.9).defined
    assert not calibration.fnr_control(0.1).certified


# --- preprocessing from the provenance ------------------------------------------------------


WINDOW = {"normalize": "window", "window": [-100, 200]}
AUTO = {"normalize": "auto", "window": [-200, 300], "percentiles": [2, 98]}


@pytest.mark.parametrize(
    ("options", "modality", "expected"),
    [
        (WINDOW, "CT", {"method": "window", "window": [-100.0, 200.0]}),
        (AUTO, "CT", {"method": "window", "window": [-200.0, 300.0]}),
        (AUTO, "MRI", {"method": "percentile", "percentiles": [2.0, 98.0]}),
        ({"normalize": "percentile"}, "CT", {"method": "percentile", "percentiles": [1.0, 99.0]}),
    ],
)
def test_msd_preparation_records_its_intensity_normalisation(options, modality, expected):
    """What the MSD preparation writes into the provenance, ``auto`` resolved by modality."""
    assert msd.intensity_normalisation(PrepareOptions(**options), modality) == expected


@pytest.mark.parametrize(
    "intensity",
    [
        {"method": "none"},
        {"method": "gray", "mode": "mean"},
        {"method": "window", "window": [-100.0, 200.0]},
        {"method": "percentile", "percentiles": [1.0, 99.0]},
    ],
)
def test_calibration_takes_the_normalisation_the_provenance_records(intensity):
    provenance = {"source": "any", "intensity": intensity}
    assert preprocessing.intensity_normalisation(provenance, "provenance.json") == intensity


@pytest.mark.parametrize(
    "provenance", [{"source": "scanner"}, {"intensity": {"method": "histogram"}}]
)
def test_a_provenance_without_a_known_normalisation_is_refused_naming_the_file(provenance):
    with pytest.raises(
        cal.CalibrationError,
        match=r"data/provenance.json: records no intensity normalisation.*none, window, "
        r"percentile, gray",
    ):
        preprocessing.intensity_normalisation(provenance, "data/provenance.json")


# --- written by the evaluation, end to end -----------------------------------------------


def _dataset(path, shape, n_test=3, n_calibration=12, seed=0, spacing=None):
    rng = np.random.default_rng(seed)
    with DatasetWriter(
        path, provenance={"source": "synthetic-texture", "intensity": {"method": "none"}}
    ) as ds:
        for i in range(n_test + n_calibration):
            label = np.zeros(shape, dtype=np.uint8)
            corner = rng.integers(1, 6, size=len(shape))
            label[tuple(slice(c, c + 6) for c in corner)] = 1
            image = (label + 0.3 * rng.standard_normal(shape)).astype(np.float32)
            split = "test" if i < n_test else "calibration"
            ds.add(
                f"case{i}",
                image,
                label,
                split=split,
                spacing=spacing or (1.0,) * len(shape),
                complexity=0.1 * i,
                fg_ratio=float(label.mean()),
            )
    return path


def _model(path, spatial_dims=2, patch_size=None, seed=0):
    torch.manual_seed(seed)
    model = build_model("unet", spatial_dims, **UNET)
    save_model_file(
        path,
        model,
        arch="unet",
        spatial_dims=spatial_dims,
        model_kwargs=UNET,
        img_size=[16] * spatial_dims,
        patch_size=patch_size,
    )
    return path, model


def _evaluate(model_path, conditions, out_dir, out_calibration, **kwargs):
    return evaluate_run(
        model_path,
        conditions,
        run=RUN,
        nsd_tolerance=1.0,
        nsd_unit="px",
        out_per_image=out_dir / "per_image.csv",
        out_fnr=out_dir / "fnr.csv",
        out_calibration=out_calibration,
        out_applicability=out_dir / "applicability.csv",
        log=lambda line: None,
        **kwargs,
    )


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    data = _dataset(root / "shapes", (16, 16))
    model_path, model = _model(root / "run" / "model.pt")
    conditions = [TestCondition("clean", data, "test"), TestCondition("clean", data, "calibration")]
    _evaluate(model_path, conditions, root / "m", root / "run" / cal.CALIBRATION_FILE)
    return root, data, model_path, model


def test_evaluation_writes_strict_json_with_the_calibration_images_statistics(evaluated):
    root, data, model_path, model = evaluated

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    on_disk = json.loads((root / "run" / cal.CALIBRATION_FILE).read_text(), parse_constant=refuse)
    assert on_disk["format_version"] == cal.FORMAT_VERSION
    assert on_disk["run"] == RUN.columns
    assert on_disk["model"]["sha256"] == cal.file_sha256(model_path)
    assert on_disk["inference"] is None
    assert on_disk["preprocessing"] == {
        "dataset": "shapes",
        "source": "synthetic-texture",
        "orientation": "closest_canonical",
        "intensity": {"method": "none"},
        "size": [16, 16],
        "spacing": None,
    }
    cases = {c.case_id: c for c in load_split(data, "calibration")}
    images = on_disk["calibration_images"]
    assert sorted(images["image_id"]) == sorted(cases)
    for i, case_id in enumerate(images["image_id"]):
        prob = predict_probabilities(model, cases[case_id].image)
        expected = label_free.label_free_statistics(cases[case_id].image, prob)
        for key in (*cal.RANGE_STATISTICS, "quality"):
            stored = math.nan if images[key][i] is None else images[key][i]  # JSON null = NaN
            assert stored == pytest.approx(expected[key], nan_ok=True), key
    for key in cal.RANGE_STATISTICS:
        finite = [v for v in images[key] if v is not None]
        assert on_disk["ranges"][key] == ([min(finite), max(finite)] if finite else None)
    per_image = pd.read_csv(root / "m" / "per_image.csv")
    own = per_image[per_image.split == "calibration"]
    assert on_disk["label_ranges"]["fg_ratio"] == pytest.approx(
        [own.fg_ratio.min(), own.fg_ratio.max()]
    )
    assert on_disk["mean_dice"] == pytest.approx(own.dice.mean())
    assert on_disk["dice_bound"]["n"] == 12
    assert on_disk["dice_bound"]["scores"] == sorted((own.quality - own.dice).tolist())
    # no level is stored: changing the analysis levels must not re-run any evaluation
    assert set(on_disk["dice_bound"]) == {"score", "n", "scores"}
    assert set(on_disk["fnr"]) == {"n", "thresholds", "mean_fnr"}
    assert set(on_disk["applicability"]) == {"embedding_module", "check", "reason", "tuning"}


def test_the_window_of_a_patch_model_is_stored_as_config_keys(tmp_path):
    data = _dataset(tmp_path / "shapes", (16, 16), n_test=1, n_calibration=2)
    model_path, _ = _model(tmp_path / "run" / "model.pt", patch_size=[8, 8])
    conditions = [TestCondition("clean", data, "calibration")]
    window = SlidingWindow(overlap=0.25, mode="gaussian", batch_size=2)
    _evaluate(model_path, conditions, tmp_path, tmp_path / "calibration.json", window=window)
    stored = json.loads((tmp_path / "calibration.json").read_text())["inference"]
    assert stored == {"overlap": 0.25, "mode": "gaussian", "sw_batch_size": 2}
    assert SlidingWindow.from_config(stored) == window


def test_without_a_calibration_condition_nothing_is_written(evaluated, tmp_path):
    _, data, model_path, _ = evaluated
    out = tmp_path / cal.CALIBRATION_FILE
    with pytest.raises(cal.CalibrationError, match="no in-domain calibration condition"):
        _evaluate(model_path, [TestCondition("clean", data, "test")], tmp_path, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_without_calibration_images_the_training_images_give_the_grid(tmp_path):
    with DatasetWriter(
        tmp_path / "d", provenance={"source": "synthetic-texture", "intensity": {"method": "none"}}
    ) as ds:
        for i, split in enumerate(["training", "test"]):
            ds.add(
                f"c{i}", np.zeros((16, 16), np.float32), np.zeros((16, 16), np.uint8), split=split
            )
    model_path, _ = _model(tmp_path / "run" / "model.pt")
    conditions = [
        TestCondition("clean", tmp_path / "d", "test"),
        TestCondition("clean", tmp_path / "d", "calibration"),
    ]
    _evaluate(model_path, conditions, tmp_path, tmp_path / "calibration.json")
    document = json.loads((tmp_path / "calibration.json").read_text())
    assert document["preprocessing"]["size"] == [16, 16]
    assert document["dice_bound"]["n"] == 0
    assert document["applicability"]["check"] is None
    assert document["applicability"]["reason"] == "no in-domain calibration images"
    assert not cal.Calibration.read(tmp_path / "calibration.json").dice_bound(0.5, 0.9).defined


def test_read_refuses_missing_unknown_version_and_incomplete_files(evaluated, tmp_path):
    root, data, model_path, _ = evaluated
    path = root / "run" / cal.CALIBRATION_FILE
    document = json.loads(path.read_text())
    with pytest.raises(cal.CalibrationError, match=r"nowhere\.json: calibration file not found"):
        cal.Calibration.read(tmp_path / "nowhere.json")
    (tmp_path / "v9.json").write_text(json.dumps(dict(document, format_version=9)))
    with pytest.raises(cal.CalibrationError, match=r"v9\.json: calibration format_version 9"):
        cal.Calibration.read(tmp_path / "v9.json")
    (tmp_path / "v2.json").write_text(json.dumps(dict(document, format_version=2)))
    with pytest.raises(
        cal.CalibrationError, match=r"version 2 is not supported .* re-run the eval"
    ):
        cal.Calibration.read(tmp_path / "v2.json")
    (tmp_path / "short.json").write_text(
        json.dumps({"format_version": cal.FORMAT_VERSION, "run": {}})
    )
    with pytest.raises(cal.CalibrationError, match=r"short\.json: calibration file lacks model"):
        cal.Calibration.read(tmp_path / "short.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(cal.CalibrationError, match=r"bad\.json: not a readable"):
        cal.Calibration.read(tmp_path / "bad.json")


def test_a_calibration_never_applies_to_another_model_file(evaluated, tmp_path):
    root, data, model_path, _ = evaluated
    calibration = cal.Calibration.read(root / "run" / cal.CALIBRATION_FILE)
    calibration.check_model(model_path)
    other, _ = _model(tmp_path / "model.pt", seed=1)
    with pytest.raises(cal.CalibrationError, match="another model file"):
        calibration.check_model(other)


def test_3d_datasets_record_their_spacing_and_mixed_spacings_are_refused(tmp_path):
    data = _dataset(
        tmp_path / "vol", (12, 12, 12), n_test=1, n_calibration=3, spacing=(1.5, 1.5, 2.0)
    )
    grids = [preprocessing.ImageGrid.of(case) for case in load_split(data, "calibration")]
    assert preprocessing.dataset_preprocessing(data, grids, 3)["spacing"] == [1.5, 1.5, 2.0]
    grids[0] = preprocessing.ImageGrid(grids[0].shape, (1.0, 1.0, 1.0))
    with pytest.raises(cal.CalibrationError, match="differ in spacing"):
        preprocessing.dataset_preprocessing(data, grids, 3)
