"""ROOD-MRI, ImageNet-C and texture-trend metrics against hand-computed toy tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segrobust.analysis import robustness


def _rows(arch, perturbation, dice_by_severity, clean, study="perturbation"):
    """Two seeds x two images per severity whose seed-and-image mean is the given Dice."""
    rows = []
    for severity, dice in [(0, clean), *dice_by_severity.items()]:
        for seed, image, offset in [
            (1, "a", 0.02),
            (1, "b", -0.02),
            (2, "a", 0.01),
            (2, "b", -0.01),
        ]:
            rows.append(
                dict(
                    study=study,
                    dataset="busi",
                    patch="full",
                    arch=arch,
                    split="test",
                    perturbation="none" if severity == 0 else perturbation,
                    severity=severity,
                    condition="clean" if severity == 0 else f"{perturbation}-s{severity}",
                    seed=seed,
                    image_id=image,
                    group=image,
                    dice=dice + offset,
                )
            )
    return rows


def test_rood_overall_and_degradation_match_hand_values():
    table = pd.DataFrame(_rows("unet", "speckle", {1: 0.8, 2: 0.7, 3: 0.6}, clean=0.9))
    row = robustness.perturbation_robustness(table).iloc[0]
    a = 2 / 3
    overall = (0.9 + a * 0.8 + a**2 * 0.7 + a**3 * 0.6) / (1 + a + a**2 + a**3)
    degradation = (a * 0.1 + a**2 * 0.2 + a**3 * 0.3) / (a + a**2 + a**3)
    assert row["rood_overall"] == pytest.approx(overall)  # 0.79846
    assert row["rood_overall"] == pytest.approx(0.798462, abs=1e-6)
    assert row["rood_degradation"] == pytest.approx(degradation)  # 0.17368
    assert row["rood_degradation"] == pytest.approx(0.173684, abs=1e-6)
    assert row["clean_dice"] == pytest.approx(0.9)
    assert row["dice_drop"] == pytest.approx(0.2)
    assert row["cv_dice"] == pytest.approx(np.std([0.8, 0.7, 0.6]) / 0.7)
    assert row["n_severities"] == 3


def test_calibration_rows_other_test_sets_and_missing_clean_reference_are_ignored():
    rows = _rows("unet", "speckle", {1: 0.8}, clean=0.9)
    rows.append({**rows[-1], "split": "calibration", "dice": 0.0})
    rows.append({**rows[0], "condition": "other-dataset", "dice": 0.0})  # not the clean reference
    no_clean = [{**r, "arch": "vnet"} for r in rows if r["severity"] > 0]
    table = pd.DataFrame(rows + no_clean)
    result = robustness.perturbation_robustness(table)
    assert list(result["arch"]) == ["unet"]
    assert result["dice_drop"].iloc[0] == pytest.approx(0.1)


def _ce_table():
    return pd.DataFrame(
        _rows("unet", "speckle", {1: 0.8, 2: 0.6}, clean=0.9)
        + _rows("unet", "blur", {1: 0.85}, clean=0.9)
        + _rows("vnet", "speckle", {1: 0.7, 2: 0.7}, clean=0.8)
        + _rows("vnet", "blur", {1: 0.5}, clean=0.8)
    )


def test_corruption_error_and_relative_ce_match_hand_values():
    ce = robustness.corruption_errors(_ce_table(), "unet").set_index(["arch", "perturbation"])
    # speckle: unet errors 0.2 + 0.4 = 0.6, increases 0.1 + 0.3 = 0.4; vnet 0.3 + 0.3, 0.1 + 0.1
    assert ce.loc[("vnet", "speckle"), "ce"] == pytest.approx(0.6 / 0.6)
    assert ce.loc[("vnet", "speckle"), "relative_ce"] == pytest.approx(0.2 / 0.4)
    # blur: unet error 0.15, increase 0.05; vnet error 0.5, increase 0.3
    assert ce.loc[("vnet", "blur"), "ce"] == pytest.approx(0.5 / 0.15)
    assert ce.loc[("vnet", "blur"), "relative_ce"] == pytest.approx(0.3 / 0.05)
    assert ce.loc[("vnet", "all"), "ce"] == pytest.approx((1 + 0.5 / 0.15) / 2)
    assert ce.loc[("vnet", "all"), "relative_ce"] == pytest.approx((0.5 + 6) / 2)
    assert ce.loc[("unet", "all"), ["ce", "relative_ce"]].tolist() == pytest.approx([1, 1])
    assert (ce["baseline_arch"] == "unet").all()
    assert ce.loc[
        ("vnet", "all"), ["n_perturbations_ce", "n_perturbations_relative_ce"]
    ].tolist() == [2, 2]


def test_relative_ce_is_undefined_where_the_baseline_does_not_degrade():
    # background blur makes the task easier for the baseline: its summed degradation is < 0
    table = pd.DataFrame(
        _rows("unet", "speckle", {1: 0.8, 2: 0.6}, clean=0.9)
        + _rows("unet", "background_blur", {1: 0.92, 2: 0.93}, clean=0.9)
        + _rows("unet", "gamma", {1: 0.898, 2: 0.899}, clean=0.9)  # summed 0.003 <= 0.01
        + _rows("vnet", "speckle", {1: 0.7, 2: 0.7}, clean=0.8)
        + _rows("vnet", "background_blur", {1: 0.7, 2: 0.6}, clean=0.8)
        + _rows("vnet", "gamma", {1: 0.7, 2: 0.7}, clean=0.8)
    )
    ce = robustness.corruption_errors(table, "unet", 0.01).set_index(["arch", "perturbation"])
    for perturbation in ("background_blur", "gamma"):
        row = ce.loc[("vnet", perturbation)]
        assert np.isnan(row["relative_ce"])  # never +-inf and never sign-flipped
        assert row["note"].startswith("relative CE undefined: the baseline's summed degradation")
    assert ce.loc[("vnet", "background_blur"), "baseline_degradation"] == pytest.approx(-0.05)
    assert np.isfinite(ce["ce"]).all()  # CE itself stays defined
    mean = ce.loc[("vnet", "all")]
    assert mean["relative_ce"] == pytest.approx(0.2 / 0.4)  # speckle only
    assert (mean["n_perturbations_ce"], mean["n_perturbations_relative_ce"]) == (3, 1)
    assert mean["note"] == "mCE over 3 of 3 perturbations, relative mCE over 1 (where defined)"
    robust = robustness.perturbation_robustness(table).set_index(["arch", "perturbation"])
    assert robust.loc[("unet", "background_blur"), "easier"]
    assert not robust.loc[("vnet", "background_blur"), "easier"]
    lines = robustness.easier_statements(robust.reset_index())
    assert lines == [
        "background_blur makes the task easier (mean Dice over severities above clean) for 1 of "
        "2 models: busi/unet."
    ]


def test_missing_baseline_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="baseline_arch 'attention_unet'.*present: unet, vnet"):
        robustness.corruption_errors(_ce_table(), "attention_unet")


def test_no_perturbation_rows_give_empty_tables_with_columns():
    clean_only = pd.DataFrame([r for r in _ce_table().to_dict("records") if r["severity"] == 0])
    assert list(robustness.corruption_errors(clean_only, "unet").columns) == (
        robustness.CORRUPTION_COLUMNS
    )
    assert robustness.perturbation_robustness(clean_only).empty


def test_alpha_auc_is_the_normalised_trapezoid():
    # trapezoids: 0.4 * (0.9 + 0.7) / 2 + 0.4 * (0.7 + 0.3) / 2 = 0.52; span 0.8
    assert robustness.alpha_auc(np.array([0.9, 0.1, 0.5]), np.array([0.3, 0.9, 0.7])) == (
        pytest.approx(0.65)
    )


def _cluster_robust_slope(x, y, groups, level=0.95):
    """OLS slope with the CR1 cluster-robust standard error, by hand (numpy)."""
    X = np.column_stack([np.ones_like(x), x])
    bread = np.linalg.inv(X.T @ X)
    beta = bread @ X.T @ y
    residuals = y - X @ beta
    meat = sum(
        np.outer(
            X[groups == g].T @ residuals[groups == g], X[groups == g].T @ residuals[groups == g]
        )
        for g in np.unique(groups)
    )
    n, k, g = len(y), 2, len(np.unique(groups))
    cov = bread @ meat @ bread * (g / (g - 1)) * ((n - 1) / (n - k))
    half = stats.t.ppf(0.5 + level / 2, g - 1) * np.sqrt(cov[1, 1])
    return beta[1], beta[1] - half, beta[1] + half


def test_texture_trends_slope_uses_in_domain_images_clustered_by_image_index():
    rng = np.random.default_rng(0)
    rows = []
    effect = rng.normal(0, 0.05, 10)  # an image index is easy or hard at every alpha
    for train in (0.1, 0.5, 0.9):
        for alpha in (0.1, 0.5, 0.9):
            for i in range(10):
                complexity = 3 - 2 * alpha + rng.normal(0, 0.1)
                for seed in (1, 2):
                    rows.append(
                        dict(
                            study="texture",
                            direction="fg",
                            patch="full",
                            arch="unet",
                            split="test",
                            dataset=f"texture-fg-{train:g}",
                            condition=f"texture-fg-{alpha:g}",
                            test_dataset=f"texture-fg-{alpha:g}",
                            image_id=f"tex_{i:04d}",
                            group=f"tex_{i:04d}",
                            train_alpha=train,
                            test_alpha=alpha,
                            seed=seed,
                            complexity=complexity,
                            # shifted models score 0: they must not enter the slope
                            dice=(0.3 + 0.2 * complexity + effect[i] + rng.normal(0, 0.02))
                            if train == alpha
                            else 0.0,
                        )
                    )
    table = pd.DataFrame(rows)
    row = robustness.texture_trends(table).iloc[0]
    own = table[table["train_alpha"] == table["test_alpha"]]
    images = own.groupby(["test_dataset", "image_id"])[["complexity", "dice"]].mean()
    groups = images.index.get_level_values("image_id").to_numpy()
    slope, low, high = _cluster_robust_slope(
        images["complexity"].to_numpy(), images["dice"].to_numpy(), groups
    )
    assert row["n_images"] == 10  # image indices, not 30 (test set, image) points
    assert row["complexity_slope"] == pytest.approx(stats.linregress(*images.to_numpy().T).slope)
    assert row["complexity_slope"] == pytest.approx(slope)
    assert (row["slope_ci_low"], row["slope_ci_high"]) == pytest.approx((low, high))
    assert row["slope_ci_low"] < 0.2 < row["slope_ci_high"]
    few = robustness.texture_trends(table[table["image_id"] < "tex_0005"]).iloc[0]
    assert few["n_images"] == 5 and np.isfinite(few["complexity_slope"])
    assert np.isnan([few["slope_ci_low"], few["slope_ci_high"], few["slope_p_value"]]).all()
    curve = own.groupby("test_alpha")["dice"].mean()
    expected = np.trapezoid(curve.to_numpy(), curve.index.to_numpy()) / 0.8
    assert row["alpha_auc"] == pytest.approx(expected)
