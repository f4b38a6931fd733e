"""Recipe decisions on constructed data: direction, unit, attainable p, regimes, sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segrobust.analysis import recipe
from segrobust.analysis.context import training_fbr_range
from segrobust.analysis.stats import holm


def _decide(matrix: pd.DataFrame, significance: float = 0.05):
    return recipe.compare(matrix, significance, 500, np.random.default_rng(0))


def _direction_case(seed: int = 0) -> pd.DataFrame:
    """A has the higher mean Dice (0.80) but B beats A on 34 of 40 images."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.75, 0.85, 40)
    gap = np.concatenate([-rng.uniform(0.01, 0.03, 34), rng.uniform(0.35, 0.45, 6)])
    shift = 0.80 - (b + gap).mean()  # the same shift for both keeps every paired difference
    return pd.DataFrame({"A": b + gap + shift, "B": b + shift})


def test_direction_case_recommends_the_arch_that_wins_per_image_not_the_higher_mean():
    dice = _direction_case()
    assert dice["A"].mean() == pytest.approx(0.80) and dice["A"].mean() > dice["B"].mean()
    assert ((dice["B"] - dice["A"]) > 0).sum() == 34
    decision, comparisons = _decide(dice)
    p = stats.wilcoxon(dice["B"], dice["A"]).pvalue
    assert p < 0.05  # the two-sided test is significant: the old recipe declared A "best"
    assert decision["decision"] == recipe.RECOMMENDED and decision["recommended"] == "B"
    assert decision["effect"] == pytest.approx((dice["B"] - dice["A"]).median())
    assert decision["effect"] > 0 and decision["p_value"] == pytest.approx(p)
    assert decision["ci_low"] <= decision["effect"] <= decision["ci_high"]
    assert comparisons[0]["arch"] == "B" and comparisons[0]["beats_rival"]


def test_direction_case_with_a_third_arch_uses_holm_over_the_rivals():
    dice = _direction_case().assign(C=lambda d: d["B"] - 0.1)
    decision, comparisons = _decide(dice)
    raw = [stats.wilcoxon(dice["B"], dice[r]).pvalue for r in ("A", "C")]
    assert decision["recommended"] == "B" and decision["runner_up"] == "A"
    assert decision["p_value"] == pytest.approx(max(holm(raw)))
    assert decision["min_attainable_p"] == pytest.approx(2 * 2 / 2**40)
    assert [c["rival"] for c in comparisons] == ["A", "C"]


def test_a_higher_mean_without_significance_is_no_recommendation():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.6, 0.9, 30)
    dice = pd.DataFrame({"a": base + rng.normal(0.005, 0.05, 30), "b": base})
    decision, _ = _decide(dice)
    assert decision["decision"] == recipe.NO_RECOMMENDATION and decision["recommended"] == ""
    assert decision["p_value"] >= 0.05 and decision["min_attainable_p"] < 0.05
    assert "no architecture has a positive median difference" in decision["reason"]
    text = recipe.sentence("speckle severity 2 (Harder)", decision, 0.05)
    assert text.startswith("For speckle severity 2 (Harder), no recommendation: no architecture")
    assert "use " not in text and "n = 30 images" in text


def test_unattainable_p_says_no_recommendation_and_the_smallest_p():
    dice = pd.DataFrame({"unet": [0.9, 0.8, 0.85, 0.7], "noskip_unet": [0.1, 0.2, 0.15, 0.05]})
    decision, _ = _decide(dice)
    # four images, every difference positive: the exact two-sided p is 2 / 2^4 = 0.125
    assert stats.wilcoxon(dice["unet"], dice["noskip_unet"]).pvalue == pytest.approx(0.125)
    assert decision["decision"] == recipe.NO_RECOMMENDATION
    assert decision["min_attainable_p"] == pytest.approx(0.125)
    assert decision["leader"] == "unet" and decision["p_value"] == pytest.approx(0.125)
    assert "too few images" in decision["reason"]
    assert np.isnan(decision["ci_low"])  # 4 < analysis.min_cases (10): no bootstrap CI
    assert "(no 95% CI: too few images), n = 4 images" in recipe.sentence("x", decision, 0.05)
    assert recipe.sentence("complexity 0.10-0.35 bits", decision, 0.05).startswith(
        "For complexity 0.10-0.35 bits, no recommendation: with n = 4 images the smallest "
        "attainable p is 0.125 (>= 0.05); closest comparison: median Dice +0.675 for unet over "
        "noskip_unet"
    )
    three = dice.assign(vnet=dice["noskip_unet"] - 0.01)
    assert _decide(three)[0]["min_attainable_p"] == pytest.approx(0.25)  # Holm: 2 x 0.125


def test_only_one_architecture():
    decision, comparisons = _decide(pd.DataFrame({"unet": [0.9, 0.8]}))
    assert decision["decision"] == recipe.ONLY_ONE and comparisons == []
    assert "only unet was evaluated" in recipe.sentence("x", decision, 0.05)


def test_recommended_sentence_format():
    decision = dict(decision=recipe.RECOMMENDED, leader="unet", runner_up="noskip_unet",
                    effect=0.0412, ci_low=0.021, ci_high=0.064, n_units=100, p_value=0.00312,
                    min_attainable_p=1e-30, mean_dice=0.9)  # fmt: skip
    assert recipe.sentence("speckle severity 4 (Hardest)", decision, 0.05) == (
        "For speckle severity 4 (Hardest), use unet: median Dice +0.041 over noskip_unet "
        "(95% CI 0.021 to 0.064), n = 100 images, Holm-adjusted Wilcoxon p = 0.00312."
    )


def _texture_rows(archs, alphas=(0.1, 0.5, 0.9), directions=("background", "foreground"),
                  n_images=5, seeds=(1, 2), dice=None, complexity=None):  # fmt: skip
    """The texture grid: every arch trained at every alpha, tested at every alpha."""
    rows = []
    for direction in directions:
        for train in alphas:
            for test in alphas:
                for arch in archs:
                    for seed in seeds:
                        for i in range(n_images):
                            rows.append(dict(
                                study="texture", dataset=f"texture-{direction}-{train:g}",
                                condition=f"texture-{direction}-{test:g}",
                                test_dataset=f"texture-{direction}-{test:g}", split="test",
                                perturbation="none", severity=0, level="Unperturbed",
                                direction=direction, train_alpha=train, test_alpha=test,
                                arch=arch, seed=seed, patch="full", image_id=f"tex_{i:04d}",
                                group=f"tex_{i:04d}",
                                dice=dice(arch, train, test, i, seed),
                                complexity=complexity(test, i, direction),
                            ))  # fmt: skip
    return pd.DataFrame(rows)


def test_pseudo_replication_n_counts_image_indices_not_rows():
    # 5 image indices x 3 alphas x 2 directions x 2 seeds = 60 in-domain rows per arch
    table = _texture_rows(
        ["unet", "noskip_unet"],
        dice=lambda arch, train, test, i, seed: 0.7 + 0.01 * i + (0.1 if arch == "unet" else 0),
        complexity=lambda test, i, direction: 1.0,
    )
    result = recipe.recipe(table, n_bins=1, significance=0.05, n_bootstrap=200)
    row = result[result["regime_kind"] == "complexity"].iloc[0]
    in_domain = table[(table["train_alpha"] == table["test_alpha"]) & (table["arch"] == "unet")]
    assert len(in_domain) == 60
    assert row["n_units"] == 5  # distinct image indices
    # unet wins on all 5 independent images: p = 2 / 32 = 0.0625 cannot reach 0.05
    assert row["p_value"] == pytest.approx(0.0625)
    assert row["decision"] == recipe.NO_RECOMMENDATION
    assert row["min_attainable_p"] == pytest.approx(0.0625)


def test_complexity_bins_use_in_domain_rows_only_and_shift_regimes_cover_the_rest():
    # cross-alpha rows get an absurd complexity: it must not move the bins
    table = _texture_rows(
        ["unet", "noskip_unet"],
        n_images=12,
        dice=lambda arch, train, test, i, seed: 0.5 + 0.02 * i + 0.01 * (arch == "unet") * i**0.5,
        complexity=lambda test, i, direction: 1.0 + i / 10,
    )
    table.loc[table["train_alpha"] != table["test_alpha"], "complexity"] = 99.0
    result = recipe.recipe(table, n_bins=2, n_bootstrap=100)
    complexity = result[result["regime_kind"] == "complexity"]
    assert complexity["regime"].tolist() == [
        "complexity 1.00-1.55 bits",
        "complexity 1.55-2.10 bits",
    ]
    assert complexity["n_units"].tolist() == [6, 6]
    shift = result[result["regime_kind"] == "shift"]
    assert len(shift) == 2 * 3 * 2  # directions x (train, test != train) pairs
    assert "background blend, trained at alpha 0.1, tested at alpha 0.5 (harder)" in set(
        shift["regime"]
    )
    assert (shift["n_units"] == 12).all()


def _perturbation_rows(arch, condition, dice, perturbation="none", severity=0, level="", ds="d"):
    return [
        dict(study="perturbation", dataset=ds, patch="full", arch=arch, seed=s, split="test",
             condition=condition, test_dataset=ds, image_id=f"i{i}",
             group=f"i{i}", dice=v + 0.001 * s,
             perturbation=perturbation, severity=severity, level=level, complexity=np.nan,
             train_alpha=np.nan, test_alpha=np.nan, direction="")
        for s in (1, 2) for i, v in enumerate(dice)
    ]  # fmt: skip


def test_perturbation_regimes_pool_datasets_with_test_images_as_units():
    rng = np.random.default_rng(1)
    rows = []
    for ds in ("busi", "glas"):
        base = rng.uniform(0.5, 0.8, 15)
        rows += _perturbation_rows("unet", "clean", base + 0.05, level="Unperturbed", ds=ds)
        rows += _perturbation_rows("noskip_unet", "clean", base, level="Unperturbed", ds=ds)
        rows += _perturbation_rows("unet", "speckle-s4", base, "speckle", 4, "Hardest", ds)
        better = base + 0.03 + rng.normal(0, 0.005, 15)
        rows += _perturbation_rows("noskip_unet", "speckle-s4", better, "speckle", 4, "Hardest", ds)
    result = recipe.recipe(pd.DataFrame(rows), n_bootstrap=200).set_index("regime")
    assert list(result.index) == ["clean test images (Unperturbed)", "speckle severity 4 (Hardest)"]
    assert (result["n_units"] == 30).all()  # 2 datasets x 15 images; seeds averaged
    assert result.loc["clean test images (Unperturbed)", "recommended"] == "unet"
    hardest = result.loc["speckle severity 4 (Hardest)"]
    assert hardest["recommended"] == "noskip_unet" and hardest["effect"] > 0.02


def test_context_regimes_classify_each_image_once_for_every_arch():
    rows, patches = [], []
    fg = np.linspace(0.01, 0.5, 24)
    for arch, skill in (("unet", 0.9), ("unetr", 0.7)):
        for i, ratio in enumerate(fg):
            rows.append(dict(study="context", dataset="spheres", patch="32", arch=arch, seed=1,
                             split="test", condition="clean", test_dataset="spheres",
                             image_id=f"c{i}",
                             group=f"c{i}", dice=skill - 0.1 * ratio, fg_ratio=ratio,
                             perturbation="none", severity=0, level="", complexity=np.nan,
                             train_alpha=np.nan, test_alpha=np.nan, direction=""))  # fmt: skip
        # the two archs sampled different patches: one pooled range per patch size
        spread = (0.05, 0.2) if arch == "unet" else (0.1, 0.3)
        patches += [dict(study="context", dataset="spheres", patch="32", arch=arch, seed=1,
                         fg_ratio=v) for v in np.linspace(*spread, 50)]  # fmt: skip
    ranges = training_fbr_range(pd.DataFrame(patches))
    result = recipe.recipe(pd.DataFrame(rows), ranges, n_bootstrap=100)
    assert result["regime_kind"].tolist() == ["context", "context"]
    assert result["regime"].str.contains("inside").tolist() == [True, False]
    low, high = ranges.loc[0, ["fbr_low", "fbr_high"]]
    inside = int(((fg >= low) & (fg <= high)).sum())
    assert result["n_units"].tolist() == [inside, 24 - inside]
    assert (result["recommended"] == "unet").all()


def test_recipe_rejects_zero_bins():
    with pytest.raises(ValueError, match="analysis.complexity_bins"):
        recipe.recipe(pd.DataFrame(_perturbation_rows("a", "clean", [0.5])), n_bins=0)


def test_recipe_tables_give_one_comparison_per_rival_and_markdown_lists_every_sentence():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.5, 0.8, 20)
    rows = []
    for arch, shift in (("unet", 0.0), ("vnet", 0.1), ("unetpp", -0.1)):
        rows += _perturbation_rows(arch, "clean", base + shift + rng.normal(0, 0.01, 20))
    table, comparisons = recipe.recipe_tables(pd.DataFrame(rows), n_bootstrap=100)
    assert list(table.columns) == recipe.RECIPE_COLUMNS
    assert list(comparisons.columns) == recipe.COMPARISON_COLUMNS
    assert comparisons["arch"].eq("vnet").all()
    assert sorted(comparisons["rival"]) == ["unet", "unetpp"]
    assert table.loc[0, "recommended"] == "vnet" and table.loc[0, "n_archs"] == 3
    markdown = recipe.recipe_markdown(table)
    assert markdown.count("\n- For ") == len(table) and "## perturbation" in markdown
