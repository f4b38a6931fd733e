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
    assert (table["status"] == "controlled").all() and (table["min_calibration"] == 9).all()


def test_fnr_without_control_says_so_with_the_minimum_n():
    rows = []
    for i in range(4):  # 1 / (4 + 1) = 0.2 > 0.1: no threshold can be certified
        rows += _fnr_rows("calibration", "clean", f"c{i}", [0.0, 0.0, 0.0])
    rows += _fnr_rows("test", "clean", "t0", [0.0, 0.5, 0.9])
    for i in range(30):  # enough images, but the FNR is above the level at every threshold
        rows += [dict(r, arch="vnet") for r in _fnr_rows("calibration", "clean", f"c{i}",
                                                         [0.3, 0.5, 0.9])]  # fmt: skip
    rows += [dict(r, arch="vnet") for r in _fnr_rows("test", "clean", "t0", [0.3, 0.5, 0.9])]
    table = conformal.conformal_fnr(pd.DataFrame(rows), 0.1).set_index("arch")
    assert (table["t_hat"] == 0).all() and not table["certified"].any()
    assert table["meets_level"].isna().all()  # FNR 0 at t = 0 is no achievement
    assert table.loc["unet", "status"] == (
        "no control: t-hat = 0 (everything foreground); n_calibration = 4 < 9 needed for level 0.1"
    )
    assert "no threshold of the grid" in table.loc["vnet", "status"]
    lines = conformal.fnr_statements(table.reset_index())
    assert lines[0] == (
        "perturbation / clean: no FNR control in 2 of 2 runs (t-hat = 0: everything predicted "
        "foreground)."
    )
    assert "within" not in lines[0]
    assert lines[1].startswith("2 runs achieved no FNR control; 1 of them have fewer than 9")


def test_conformal_quantile_hand_cases():
    scores = np.arange(19, 0, -1) / 100  # 0.19 ... 0.01
    assert conformal.conformal_rank(19, 0.1) == 18  # ceil(20 * 0.9), not 19 from rounding
    assert conformal.conformal_quantile(scores, 0.1) == pytest.approx(0.18)
    assert conformal.conformal_quantile(scores[:8], 0.1) == math.inf  # k = 9 > n = 8
    assert conformal.dice_lower_bound([0.9, 0.5, 0.1], 0.2) == pytest.approx([0.7, 0.3, 0.0])
    assert conformal.dice_lower_bound([0.9], -0.5) == pytest.approx([1.0])
    assert np.isnan(conformal.dice_lower_bound([0.9], math.inf)).all()  # undefined, not 0


@pytest.mark.parametrize("alpha", [0.5, 0.2, 0.1, 0.05, 0.03, 0.01])
def test_min_calibration_is_the_first_n_with_a_finite_quantile(alpha):
    needed = conformal.min_calibration_for_bound(alpha)
    assert conformal.conformal_quantile(np.arange(needed) / 100, alpha) < math.inf
    assert conformal.conformal_quantile(np.arange(needed - 1) / 100, alpha) == math.inf
    assert needed == math.ceil((1 - alpha) / alpha - 1e-9)  # n >= (1 - alpha) / alpha
    fnr_needed = conformal.min_calibration_for_fnr(alpha)
    assert 1 / (fnr_needed + 1) <= alpha + 1e-12 < 1 / fnr_needed


def test_clopper_pearson_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for covered, n in [(0, 10), (3, 10), (10, 10), (45, 50), (1, 1)]:
        expected = proportion_confint(covered, n, alpha=0.05, method="beta")
        assert conformal.clopper_pearson(covered, n) == pytest.approx(expected)
    assert np.isnan(conformal.clopper_pearson(0, 0)).all()


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
             severity=severity, level="", image_id=f"{split}{i}",
             group=f"{split}{i}", dice=d, quality=q)
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
    assert any("clean: coverage consistent with the 0.90 target" in s for s in statements)
    clean = table.loc["clean"]
    assert clean["n_test"] == 100 and clean["status"] == "consistent with target"
    assert clean["coverage_ci_low"] < clean["coverage"] <= clean["coverage_ci_high"]
    assert table.loc["speckle-s5", "status"] == "below target"


def test_vacuous_bound_is_undefined_and_excluded_from_coverage():
    # 4 calibration images: k = ceil(5 * 0.9) = 5 > 4, the split-conformal quantile is infinite
    rows = _per_image("calibration", "clean", [0.8, 0.7, 0.9, 0.6], [0.85, 0.7, 0.95, 0.65])
    rows += _per_image("test", "clean", [0.8, 0.5, 0.3], [0.85, 0.75, 0.9])
    with_bounds, calibration = conformal.calibrate_dice_bounds(pd.DataFrame(rows), alpha=0.1)
    assert calibration["q_hat"].iloc[0] == math.inf and calibration["min_calibration"].iloc[0] == 9
    assert calibration["bound_status"].iloc[0].startswith("undefined: n_calibration = 4 < 9")
    assert with_bounds["dice_lower_bound"].isna().all()
    coverage = conformal.coverage_table(with_bounds, calibration, 0.1, 0.05)
    row = coverage.iloc[0]
    assert np.isnan(row["coverage"]) and np.isnan(row["coverage_ci_low"])  # not 1.0
    assert row["status"].startswith("undefined") and row["n_test"] == 3
    statements = conformal.coverage_statements(coverage)
    assert statements == [
        "perturbation / clean: Dice bound undefined in 1 of 1 runs (n_calibration < 9): no "
        "coverage claim for them."
    ]
    assert not any(word in statements[0] for word in ("holds", "consistent"))
    summary = conformal.conformal_summary(with_bounds, calibration, 0.1).iloc[0]
    assert summary["n_test"] == 0 and np.isnan(summary["coverage"])
    assert summary["status"].startswith("undefined: n_calibration = 4 < 9")


def test_conformal_summary_pools_in_domain_conditions_per_arch():
    rng = np.random.default_rng(4)
    dice = rng.uniform(0.6, 0.9, 60)
    quality = dice + rng.uniform(0, 0.1, 60)
    rows = []
    for seed in (1, 2):
        run = _per_image("calibration", "clean", dice[:20], quality[:20])
        run += _per_image("test", "clean", dice[20:], quality[20:])
        run += _per_image("test", "speckle-s5", dice[20:] - 0.5, quality[20:], "speckle", 5)
        rows += [dict(r, seed=seed) for r in run]
    with_bounds, calibration = conformal.calibrate_dice_bounds(pd.DataFrame(rows), alpha=0.1)
    summary = conformal.conformal_summary(with_bounds, calibration, 0.1)
    assert list(summary.columns) == conformal.SUMMARY_COLUMNS and len(summary) == 1
    row = summary.iloc[0]
    test = with_bounds[(with_bounds["split"] == "test") & (with_bounds["condition"] == "clean")]
    # only the in-domain (clean) condition; the two seeds share the 40 test images
    assert row["n_test"] == 40 and row["n_runs"] == 2 and row["n_calibration"] == 20
    assert row["coverage"] == pytest.approx((test["dice"] >= test["dice_lower_bound"]).mean())
    assert row["median_dice_lower_bound"] == pytest.approx(test["dice_lower_bound"].median())
    low, high = conformal.clopper_pearson(row["coverage"] * 40, 40)
    assert (row["coverage_ci_low"], row["coverage_ci_high"]) == pytest.approx((low, high))
    assert row["status"] == "defined"


def test_coverage_tail_is_beta_binomial():
    # n_cal = 19, alpha = 0.1 -> k = 18: coverage ~ Beta(18, 2); covered of 50 ~ BetaBinom
    p_value, slack = conformal.coverage_tail(40, 50, 19, 0.1, 0.05)
    law = stats.betabinom(50, 18, 2)
    assert p_value == pytest.approx(law.cdf(40))
    assert slack == pytest.approx(0.9 - law.ppf(0.05) / 50)
    assert np.isnan(conformal.coverage_tail(0, 50, 5, 0.1, 0.05)).all()  # infinite quantile


def test_fnr_statements_name_the_conditions_above_the_level():
    rows = []
    for i in range(19):
        rows += _fnr_rows("calibration", "clean", f"c{i}", [0.0, 0.02, 0.2])
    rows += _fnr_rows("test", "clean", "t0", [0.0, 0.05, 0.3])
    rows += _fnr_rows("test", "speckle-s5", "t0", [0.1, 0.5, 0.9])
    small = [dict(r, arch="vnet") for r in rows if r["image_id"] in ("c0", "t0")]  # n = 1
    lines = conformal.fnr_statements(conformal.conformal_fnr(pd.DataFrame(rows + small), 0.1))
    speckle = next(line for line in lines if line.startswith("perturbation / speckle-s5"))
    assert "no FNR control in 1 of 2 runs" in speckle
    assert "test FNR at t-hat ABOVE the level in 1 of 1 controlled runs" in speckle
    assert any("1 runs achieved no FNR control; 1 of them have fewer than 9" in line
               for line in lines)  # fmt: skip
