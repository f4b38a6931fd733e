"""Acceptance (issue 14): the Dice lower bound ``predict`` states on unlabelled images covers
their true Dice at the promised rate, and where a shift breaks it the image is flagged.

The whole path is the real one: a texture dataset is generated, a U-Net trained on it and
evaluated on the calibration split, which writes its calibration file (``evaluate_run``); then
302 fresh images of the same generator (another seed) and 200 of them with strong added noise
(a shifted distribution) are segmented by ``predict_folder``, and the written masks are scored
against the true labels.

Acceptance interval. Conditional on the calibration set, split-conformal coverage is
Beta(k, n_cal + 1 - k) with k = ceil((n_cal + 1)(1 - alpha)), so the number of covered test
images is beta-binomial, not binomial: a binomial interval around 1 - alpha ignores the
calibration set's own randomness (sd 0.021 here, against the test sample's 0.017) and a correct
implementation would fall outside its 95% interval for about one seed in five. The test checks
the issue's criterion (the Clopper-Pearson 95% CI of the observed coverage contains 1 - alpha)
and the exact one (the covered count lies in the central 99% of the beta-binomial law).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from schema_defaults import model_kwargs, train_settings
from scipy import stats

from segrobust.analysis.conformal import clopper_pearson, conformal_rank
from segrobust.contract import Run
from segrobust.data.dataset import load_split, read_nifti, write_nifti
from segrobust.data.textures import generate_texture_dataset
from segrobust.evaluation.evaluate import TestCondition, evaluate_run
from segrobust.evaluation.metrics import dice
from segrobust.guarantees.calibration_file import CALIBRATION_FILE, Calibration
from segrobust.predict.batch import predict_folder
from segrobust.training.train import train_run

torch.set_num_threads(1)

ALPHA = 0.1
N_CALIBRATION = 200
N_FRESH = 300  # test split of the fresh dataset; its 2 training / validation images join them
N_SHIFTED = 200
SHIFT_NOISE = 0.3  # sd of the Gaussian noise added to the shifted images (images lie in [0, 1])
TEXTURE = dict(
    image_size=32, foreground="brick", background="grass", direction="background", alpha=0.3,
    irregularity=0.3, radius=0.25,
)  # fmt: skip
RUN = Run("perturbation", "textures", "unet", "full", 1)


def _labels(dataset):
    return {
        case.case_id: case.label.astype(bool)
        for split in ("training", "validation", "test")
        for case in load_split(dataset, split)
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Train and evaluate (which calibrates) one run; segment fresh and shifted images with it."""
    root = tmp_path_factory.mktemp("coverage")
    data, fresh = root / "textures", root / "fresh"
    generate_texture_dataset(data, n_train=24, n_validation=4, n_test=1,
                             n_calibration=N_CALIBRATION, seed=0, **TEXTURE)  # fmt: skip
    generate_texture_dataset(fresh, n_train=1, n_validation=1, n_test=N_FRESH, n_calibration=0,
                             seed=1, **TEXTURE)  # fmt: skip
    models = root / "models"
    train_run(
        data, run=RUN, spatial_dims=2, model_kwargs=model_kwargs("unet", channels=[8, 16, 32]),
        settings=train_settings(epochs=12, batch_size=4, lr=3e-3), device=torch.device("cpu"),
        out_model=models / "model.pt", out_log=models / "train_log.csv",
        out_patches=models / "patches.csv", checkpoint_path=root / "last.pt",
        log=lambda line: None,
    )  # fmt: skip
    evaluate_run(
        models / "model.pt", [TestCondition("clean", data, "calibration")], run=RUN,
        nsd_tolerance=1.0, nsd_unit="px", out_per_image=root / "per_image.csv",
        out_fnr=root / "fnr.csv", out_calibration=models / CALIBRATION_FILE,
        out_applicability=root / "applicability.csv",
        log=lambda line: None,
    )  # fmt: skip
    document = json.loads((models / CALIBRATION_FILE).read_text())
    rng = np.random.default_rng(5)
    shifted = root / "shifted"
    for case in load_split(fresh, "test")[:N_SHIFTED]:
        noise = SHIFT_NOISE * rng.standard_normal(case.image.shape)
        write_nifti(shifted / f"{case.case_id}.nii.gz", (case.image + noise).astype(np.float32))
    results = {}
    for name, images in (("fresh", fresh / "images"), ("shifted", shifted)):
        out = root / f"out-{name}"
        predictions = predict_folder(
            images, out, model_paths=[models], confidence=1 - ALPHA, log=lambda s: None
        )
        calibration = Calibration.read(models / CALIBRATION_FILE)
        results[name] = _scored(predictions.predictions, out, _labels(fresh), calibration)
    return document["dice_bound"]["n"], results


def _scored(predictions: pd.DataFrame, out, labels, calibration) -> pd.DataFrame:
    """The rows with the true Dice of the written mask and whether the conformal bound covered
    it. The bound is the calibration's for every image: predict states it only inside the
    calibration range (outside it the row has none), and coverage is measured on both sides."""
    true_dice = [
        dice(read_nifti(out / mask)[0].astype(bool), labels[image])
        for mask, image in zip(predictions["mask"], predictions["image"], strict=True)
    ]
    bound = [calibration.dice_bound(q, 1 - ALPHA).bound for q in predictions["quality"]]
    inside = predictions["applicable"].astype(bool)
    stated = predictions["dice_lower_bound"]
    assert np.allclose(stated[inside], np.asarray(bound)[inside]) and stated[~inside].isna().all()
    scored = predictions.assign(true_dice=true_dice, bound=bound)
    return scored.assign(covered=scored["true_dice"] >= scored["bound"])


def _acceptance(covered: int, n: int, n_calibration: int) -> tuple[float, float]:
    """Central 99% range of the covered count under exchangeability (beta-binomial)."""
    k = conformal_rank(n_calibration, ALPHA)
    law = stats.betabinom(n, k, n_calibration + 1 - k)
    return law.ppf(0.005), law.ppf(0.995)


def _rate(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else float("nan")


def _report(record_property, name, rows, n_calibration):
    """Record and print the coverage, its CI, the in-range rate and coverage on each side."""
    inside = rows["applicable"].astype(bool)
    low, high = clopper_pearson(int(rows["covered"].sum()), len(rows))
    line = (
        f"{name}: n {len(rows)}, coverage {_rate(rows['covered']):.3f} (95% CI {low:.3f}-"
        f"{high:.3f}, target {1 - ALPHA:.2f}, n_calibration {n_calibration}); in calibration "
        f"rated {_rate(inside):.3f}; coverage rated {_rate(rows.loc[inside, 'covered']):.3f}, "
        f"flagged {_rate(rows.loc[~inside, 'covered']):.3f}"
    )
    record_property(name, line)
    print(line)


def test_bound_covers_fresh_images_at_the_promised_rate(study, record_property):
    n_calibration, results = study
    rows = results["fresh"]
    assert n_calibration == N_CALIBRATION and len(rows) >= 300
    _report(record_property, "fresh", rows, n_calibration)
    covered, n = int(rows["covered"].sum()), len(rows)
    ci_low, ci_high = clopper_pearson(covered, n)
    assert ci_low <= 1 - ALPHA <= ci_high
    low, high = _acceptance(covered, n, n_calibration)
    assert low <= covered <= high
    assert rows["guarantee"].str.startswith("Dice >= ").mean() > 0.9  # mostly in range
    assert rows["bound"].median() > 0.5  # informative bounds, not clipped at 0


def test_a_shift_that_breaks_coverage_is_flagged(study, record_property):
    """Either coverage holds on the shifted images, or the images inside the calibration range
    (where the guarantee is still claimed) are covered at the promised rate."""
    n_calibration, results = study
    rows = results["shifted"]
    _report(record_property, "shifted", rows, n_calibration)
    inside = rows["applicable"].astype(bool)
    overall_holds = (
        rows["covered"].sum() >= _acceptance(rows["covered"].sum(), len(rows), n_calibration)[0]
    )
    claimed = rows[inside]
    claimed_hold = (
        claimed.empty
        or claimed["covered"].sum()
        >= _acceptance(claimed["covered"].sum(), len(claimed), n_calibration)[0]
    )
    assert overall_holds or claimed_hold
    # this shift does break the bound, so the flag is what is being tested
    assert not overall_holds
    broken = rows[~rows["covered"]]
    assert (~broken["applicable"].astype(bool)).mean() >= 0.9
    flagged = rows[~inside]
    assert (flagged["guarantee"] == "no guarantee: " + flagged["applicability_reason"]).all()
    assert flagged["applicability_reason"].str.len().gt(0).all()
