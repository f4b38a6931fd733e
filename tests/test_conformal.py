"""Conformal risk control of the FNR and the conformal Dice lower bound.

The guarantees are checked by simulation over 200 random calibration / test splits of
exchangeable synthetic data; the formulas by small cases computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segrobust.analysis import conformal

RUN = dict(study="perturbation", dataset="busi", arch="unet", seed=1, patch="full")


def test_crc_threshold_hand_case():
    # n = 19: 19/20 * R + 1/20 <= 0.1  <=>  R <= 0.0526 -> thresholds 0.1, 0.2, 0.3 qualify
    t_hat, certified = conformal.crc_threshold(
        [0.5, 0.1, 0.2, 0.3, 0.4], [0.2, 0.0, 0.02, 0.05, 0.1], n=19, level=0.1
    )
    assert (t_hat, certified) == (0.3, True)


def test_crc_threshold_needs_the_whole_prefix_and_falls_back_to_zero():
    assert conformal.crc_threshold([0.1, 0.2, 0.3], [0.0, 0.2, 0.01], 99, 0.1) == (0.1, True)
    # n = 5: B / (n + 1) = 1/6 > 0.1, no threshold can be certified
    assert conformal.crc_threshold([0.1, 0.2], [0.0, 0.0], 5, 0.1) == (0.0, False)


def test_crc_controls_the_test_fnr_over_200_random_splits():
    rng = np.random.default_rng(0)
    trials, n_cal, n_test, pixels, level = 200, 30, 100, 20, 0.1
    thresholds = np.linspace(0.02, 0.98, 49)
    shape = rng.uniform(0.5, 5.0, size=(trials, n_cal + n_test, 1))
    probs = rng.beta(shape, 1.5, size=(trials, n_cal + n_test, pixels))
    fnr = (probs[..., None] < thresholds).mean(axis=2)  # (trials, images, thresholds)
    realised = []
    for trial in fnr:  # images are i.i.d., so the first n_cal form a random split
        t_hat, _ = conformal.crc_threshold(thresholds, trial[:n_cal].mean(axis=0), n_cal, level)
        index = np.flatnonzero(np.isclose(thresholds, t_hat))
        realised.append(trial[n_cal:, index[0]].mean() if len(index) else 0.0)
    assert np.mean(realised) <= level + 0.02
    assert np.mean(realised) > level - 0.05  # and not vacuous


def _fnr_rows(split, condition, image, curve):
    return [
        dict(RUN, condition=condition, split=split, image_id=image, threshold=t, fnr=f)
        for t, f in zip([0.1, 0.2, 0.3], curve, strict=True)
    ]


def test_conformal_fnr_table_hand_case():
    rows = []
    for i in range(19):  # mean calibration FNR: 0, 0.02, 0.2 -> t_hat = 0.2
        rows += _fnr_rows("calibration", "clean", f"c{i}", [0.0, 0.02, 0.2])
    rows += _fnr_rows("calibration", "speckle-s5", "c0", [1.0, 1.0, 1.0])  # not in-domain
    rows += _fnr_rows("test", "clean", "t0", [0.0, 0.05, 0.3])
    rows += _fnr_rows("test", "clean", "t1", [0.0, 0.15, 0.3])
    rows += _fnr_rows("test", "speckle-s5", "t0", [0.1, 0.5, 0.9])
    rows += _fnr_rows("test", "clean", "t2", [np.nan] * 3)  # empty label: FNR undefined
    table = conformal.conformal_fnr(pd.DataFrame(rows), level=0.1).set_index("condition")
    assert table["t_hat"].tolist() == [0.2, 0.2]
    assert table.loc["clean", "n_calibration"] == 19
    assert table.loc["clean", "calibration_fnr"] == pytest.approx(0.02)
    assert table.loc["clean", "test_fnr"] == pytest.approx(0.1)
    assert table.loc["clean", "n_test"] == 2
    assert table.loc["speckle-s5", "test_fnr"] == pytest.approx(0.5)
    assert not table.loc["speckle-s5", "meets_level"]


def test_conformal_quantile_hand_cases():
    scores = np.arange(19, 0, -1) / 100  # 0.19 ... 0.01
    assert conformal.conformal_rank(19, 0.1) == 18  # ceil(20 * 0.9), not 19 from rounding
    assert conformal.conformal_quantile(scores, 0.1) == pytest.approx(0.18)
    assert conformal.conformal_quantile(scores[:8], 0.1) == math.inf  # k = 9 > n = 8
    assert conformal.dice_lower_bound([0.9, 0.5, 0.1], 0.2) == pytest.approx([0.7, 0.3, 0.0])
    assert conformal.dice_lower_bound([0.9], -0.5) == pytest.approx([1.0])
    assert conformal.dice_lower_bound([0.9], math.inf) == pytest.approx([0.0])


def test_dice_bound_coverage_over_200_random_splits():
    rng = np.random.default_rng(1)
    alpha, n_cal, n_test = 0.1, 50, 100
    coverage = []
    for _ in range(200):
        dice = rng.beta(5, 2, n_cal + n_test)
        quality = np.clip(dice + rng.normal(0.02, 0.08, n_cal + n_test), 0, 1)
        q_hat = conformal.conformal_quantile(quality[:n_cal] - dice[:n_cal], alpha)
        bound = conformal.dice_lower_bound(quality[n_cal:], q_hat)
        coverage.append(np.mean(dice[n_cal:] >= bound))
    assert np.mean(coverage) >= 1 - alpha - 0.02
    assert np.mean(coverage) < 1 - alpha + 0.05  # and not vacuous


def _per_image(split, condition, dice, quality, perturbation="none", severity=0):
    return [
        dict(RUN, condition=condition, test_dataset="busi", split=split, perturbation=perturbation,
             severity=severity, level="", image_id=f"{split}{i}", dice=d, quality=q)
        for i, (d, q) in enumerate(zip(dice, quality, strict=True))
    ]  # fmt: skip


def test_bounds_are_calibrated_on_in_domain_calibration_rows_only():
    cal_dice = np.linspace(0.5, 0.9, 9)
    rows = _per_image("calibration", "clean", cal_dice, cal_dice + np.arange(1, 10) / 100)
    rows += _per_image("calibration", "speckle-s5", [0.0], [1.0], "speckle", 5)
    rows += _per_image("test", "clean", [0.8, 0.6], [0.85, 0.75])
    table = pd.DataFrame(rows)
    with_bounds, calibration = conformal.calibrate_dice_bounds(table, alpha=0.2)
    # n = 9, k = ceil(10 * 0.8) = 8: the 8th smallest score of 0.01 .. 0.09 is 0.08
    assert calibration["n_calibration"].tolist() == [9]
    assert calibration["q_hat"].iloc[0] == pytest.approx(0.08)
    test = with_bounds[with_bounds["split"] == "test"]
    assert test["dice_lower_bound"].tolist() == pytest.approx([0.77, 0.67])
    assert len(with_bounds) == len(table)
    # test rows never move the bound
    moved = table.assign(dice=np.where(table["split"] == "test", 0.0, table["dice"]))
    assert conformal.calibrate_dice_bounds(moved, 0.2)[1]["q_hat"].iloc[0] == pytest.approx(0.08)


def test_coverage_flags_a_shifted_condition_but_not_the_clean_one():
    rng = np.random.default_rng(2)
    dice = rng.uniform(0.6, 0.9, 200)
    quality = dice + rng.uniform(0, 0.1, 200)
    rows = _per_image("calibration", "clean", dice[:100], quality[:100])
    rows += _per_image("test", "clean", dice[100:], quality[100:])
    rows += _per_image("test", "speckle-s5", dice[100:] - 0.2, quality[100:], "speckle", 5)
    with_bounds, calibration = conformal.calibrate_dice_bounds(pd.DataFrame(rows), 0.1)
    table = conformal.coverage_table(with_bounds, calibration, 0.1, 0.05).set_index("condition")
    assert table.loc["clean", "coverage"] >= 0.85 and not table.loc["clean", "below_target"]
    assert table.loc["speckle-s5", "coverage"] < 0.2 and table.loc["speckle-s5", "below_target"]
    statements = conformal.coverage_statements(table.reset_index())
    assert any("speckle-s5: coverage BREAKS" in s for s in statements)
    assert any("clean: coverage holds" in s for s in statements)


def test_coverage_tail_is_beta_binomial():
    # n_cal = 19, alpha = 0.1 -> k = 18: coverage ~ Beta(18, 2); covered of 50 ~ BetaBinom
    p_value, slack = conformal.coverage_tail(40, 50, 19, 0.1, 0.05)
    law = stats.betabinom(50, 18, 2)
    assert p_value == pytest.approx(law.cdf(40))
    assert slack == pytest.approx(0.9 - law.ppf(0.05) / 50)
    assert conformal.coverage_tail(0, 50, 5, 0.1, 0.05) == (1.0, 0.0)  # infinite quantile


def test_fnr_statements_name_the_conditions_above_the_level():
    rows = []
    for i in range(19):
        rows += _fnr_rows("calibration", "clean", f"c{i}", [0.0, 0.02, 0.2])
    rows += _fnr_rows("test", "clean", "t0", [0.0, 0.05, 0.3])
    rows += _fnr_rows("test", "speckle-s5", "t0", [0.1, 0.5, 0.9])
    small = [dict(r, arch="vnet") for r in rows if r["image_id"] in ("c0", "t0")]  # n = 1
    lines = conformal.fnr_statements(conformal.conformal_fnr(pd.DataFrame(rows + small), 0.1))
    assert any(
        line.startswith("perturbation / speckle-s5: test FNR at t-hat ABOVE") for line in lines
    )
    assert any("1 runs have too few calibration images" in line for line in lines)
