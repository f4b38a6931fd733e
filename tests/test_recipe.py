"""Recipe decisions on constructed data: a clear winner, a tie broken by degradation, bins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segrobust.analysis import recipe
from segrobust.analysis.stats import holm


def test_recommend_clear_best_is_significant():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.8, 20)
    dice = pd.DataFrame({"a": base + 0.1, "b": base + rng.normal(0, 0.01, 20), "c": base - 0.05})
    decision = recipe.recommend(dice, pd.Series({"a": 0.2, "b": 0.0, "c": 0.0}), 0.05)
    assert decision["recommended"] == "a" and decision["reason"] == "significantly best"
    raw = [stats.wilcoxon(dice["a"], dice[other]).pvalue for other in ("b", "c")]
    assert decision["p_value"] == pytest.approx(max(holm(raw)))  # "p <= the largest"
    assert decision["p_value"] < 1e-4
    assert decision["runner_up"] == "b"


def test_recommend_tie_picks_smallest_degradation_among_not_worse():
    # five images: the smallest exact two-sided Wilcoxon p is 2 / 32 = 0.0625 > 0.05
    dice = pd.DataFrame({"a": [0.9, 0.8, 0.85, 0.7, 0.75], "b": [0.88, 0.79, 0.83, 0.69, 0.7],
                         "c": [0.5, 0.4, 0.45, 0.3, 0.35]})  # fmt: skip
    degradation = pd.Series({"a": 0.15, "b": 0.05, "c": 0.01})
    decision = recipe.recommend(dice, degradation, 0.05)
    # with n = 5 nothing can be significant, so every arch is a candidate: c degrades least
    assert decision["recommended"] == "c" and decision["runner_up"] == "a"
    assert decision["p_value"] == pytest.approx(min(1.0, 2 * 0.0625))
    # with more images c becomes significantly worse and drops out of the candidates
    big = pd.concat([dice] * 4, ignore_index=True) + np.linspace(0, 0.01, 20)[:, None]
    big["b"] = big["a"] - [0.01, -0.01] * 10  # b ties a exactly on average
    decision = recipe.recommend(big, degradation, 0.05)
    assert decision["recommended"] == "b"
    assert decision["reason"] == "not significantly worse than best, smallest degradation"
    assert decision["degradation"] == pytest.approx(0.05)


def test_recommend_without_clean_reference_keeps_the_best_mean():
    dice = pd.DataFrame({"a": [0.9, 0.8, 0.7], "b": [0.85, 0.8, 0.72]})
    decision = recipe.recommend(dice, pd.Series({"a": np.nan, "b": 0.1}), 0.05)
    assert decision["recommended"] == "a" and "no clean reference" in decision["reason"]


def test_sentence_formats():
    decision = dict(recommended="unet", mean_dice=0.912, runner_up="vnet", runner_up_dice=0.85,
                    p_value=0.0031, reason="significantly best", degradation=0.02)  # fmt: skip
    assert recipe.sentence("complexity 0.80-1.20 bits", decision) == (
        "For complexity 0.80-1.20 bits, use unet: best mean Dice 0.91, significantly ahead of "
        "all others (Holm-adjusted Wilcoxon p <= 0.0031)."
    )
    tie = dict(decision, recommended="vnet", mean_dice=0.90, runner_up="unet",
               runner_up_dice=0.91, p_value=0.21, reason="tie", degradation=0.04)  # fmt: skip
    text = recipe.sentence("speckle severity 3 (Harder)", tie)
    assert text.startswith("For speckle severity 3 (Harder), use vnet: mean Dice 0.90, not sign")
    assert "(unet, 0.91; Holm-adjusted Wilcoxon p = 0.21)" in text and "(0.040)" in text


def _rows(study, arch, condition, dice, complexity=None, perturbation="none", severity=0):
    return [
        dict(study=study, dataset="d", patch="full", arch=arch, seed=1, split="test",
             condition=condition, test_dataset="d", image_id=f"i{i}", dice=v,
             perturbation=perturbation, severity=severity, level="Harder" if severity else "",
             complexity=np.nan if complexity is None else complexity[i])
        for i, v in enumerate(dice)
    ]  # fmt: skip


def test_recipe_perturbation_regime_prefers_the_robust_arch_in_a_tie():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.6, 0.8, 30)
    noise = rng.normal(0, 0.02, 30)
    rows = _rows("perturbation", "a", "clean", base + 0.2)  # a: high clean, big drop
    rows += _rows("perturbation", "b", "clean", base + 0.05)  # b: robust
    rows += _rows("perturbation", "a", "speckle-s3", base + noise, None, "speckle", 3)
    rows += _rows("perturbation", "b", "speckle-s3", base - noise, None, "speckle", 3)
    table = recipe.recipe(pd.DataFrame(rows), n_bins=2, significance=0.05)
    row = table.set_index("regime").loc["speckle severity 3 (Harder)"]
    assert row["recommended"] == "b"
    assert row["degradation"] == pytest.approx(0.05, abs=0.01)
    assert "loses the least Dice vs clean" in row["sentence"] or "lead over" in row["sentence"]


def test_recipe_complexity_bins_give_one_recommendation_each():
    complexity = np.linspace(0.5, 3.0, 40)
    base = np.full(40, 0.7)
    hard = complexity < 1.75
    rows = _rows("texture", "a", "d", base + np.where(hard, 0.1, 0.0) + complexity / 1000,
                 complexity)  # fmt: skip
    rows += _rows("texture", "b", "d", base + np.where(hard, 0.0, 0.1), complexity)
    table = recipe.recipe(pd.DataFrame(rows), n_bins=2, significance=0.05)
    assert table["regime_kind"].tolist() == ["complexity", "complexity"]
    assert table["recommended"].tolist() == ["a", "b"]  # ordered by the bin's lower edge
    assert table["regime"].iloc[0].startswith("complexity 0.") and "bits" in table["regime"][0]
    assert (table["reason"] == "significantly best").all()
    markdown = recipe.recipe_markdown(table)
    assert markdown.count("\n- For complexity") == 2


def test_recipe_rejects_zero_bins():
    with pytest.raises(ValueError, match="analysis.complexity_bins"):
        recipe.recipe(pd.DataFrame(_rows("texture", "a", "d", [0.5])), n_bins=0)
