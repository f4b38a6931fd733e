"""Recipe decisions on constructed data: runs and units, the minimum effect, regimes, sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segrobust.analysis import recipe
from segrobust.analysis import replicates as rep
from segrobust.analysis.context import training_fbr_range

SETTINGS = recipe.RecipeSettings(significance=0.05, min_effect=0.01, min_cases=10, n_bootstrap=200)


def _runs(values) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return pd.DataFrame(values, index=range(1, len(values) + 1),
                        columns=[f"u{i}" for i in range(values.shape[1])])  # fmt: skip


def _decide(arms: dict, settings=SETTINGS):
    return recipe.decide(arms, settings, np.random.default_rng(0))


def _arms(shifts: dict, run_offsets: dict | None = None, n=60, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.6, 0.85, n)
    run_offsets = run_offsets or {}
    return {
        arch: _runs(base + shift + np.asarray(run_offsets.get(arch, [0, 0.001, -0.001]))[:, None]
                    + rng.normal(0, noise, (len(run_offsets.get(arch, [0, 0, 0])), n)))
        for arch, shift in shifts.items()
    }  # fmt: skip


def test_a_clear_winner_across_runs_is_recommended_with_its_evidence():
    decision, comparisons, rankings = _decide(_arms({"unet": 0.06, "vnet": 0.0, "unetpp": 0.02}))
    assert decision["decision"] == recipe.RECOMMENDED and decision["recommended"] == "unet"
    assert decision["runner_up"] == "unetpp"  # the closest rival: lowest interval
    assert decision["ci_low"] > 0.01 and decision["effect"] == pytest.approx(0.04, abs=0.01)
    assert (decision["runs_ahead"], decision["run_pairs"]) == (9, 9)
    assert decision["share_units_ahead"] > 0.9 and decision["p_first"] == 1.0
    assert decision["n_runs"] == 3 and decision["n_units"] == 60
    assert decision["clearly_worse"] == "unetpp, vnet"
    assert [c["rival"] for c in comparisons] == ["unetpp", "vnet"]
    assert all(c["comparison"] == rep.AHEAD for c in comparisons)
    assert {r["arch"] for r in rankings} == {"unet", "unetpp", "vnet"}
    text = recipe.sentence("speckle severity 4 (Hardest)", decision, 0.95, "test images")
    assert text.startswith("For speckle severity 4 (Hardest), use unet: mean Dice +0.0")
    assert "over unetpp (95% CI +0.0" in text and "unet ahead in 9 of 9 run pairs" in text
    assert "above the minimum effect +0.01 against every rival" in text
    assert "(3 training runs (seeds) per architecture x 60 test images)" in text


def test_seeds_that_disagree_block_a_recommendation_the_per_image_test_would_make():
    """Seed 3 of A is below every seed of B; seed-averaged, A wins on almost every image."""
    arms = _arms({"A": 0.03, "B": 0.0}, {"A": [0.03, 0.035, -0.04], "B": [0.0, 0.005, -0.005]},
                 noise=0.002)  # fmt: skip
    seed_averaged = {a: v.mean(axis=0) for a, v in arms.items()}
    assert stats.wilcoxon(seed_averaged["A"], seed_averaged["B"]).pvalue < 1e-6
    assert arms["A"].mean(axis=1).loc[3] < arms["B"].mean(axis=1).min()
    decision, _, _ = _decide(arms)
    assert decision["decision"] == recipe.INCONCLUSIVE and decision["recommended"] == ""
    assert decision["reason"] == "the runs disagree: seed 3 of A is below every seed of B"
    text = recipe.sentence("x", decision, 0.95)
    assert text.startswith("For x, inconclusive: the runs disagree: seed 3 of A is below every")
    assert "A ahead in 6 of 9 run pairs" in text


def test_the_architecture_with_the_lower_mean_is_never_recommended():
    """B beats A on 34 of 40 images but A has the higher mean (a few large wins)."""
    rng = np.random.default_rng(0)
    b = rng.uniform(0.75, 0.85, 40)
    gap = np.concatenate([-rng.uniform(0.01, 0.03, 34), rng.uniform(0.35, 0.45, 6)])
    runs = rng.normal(0, 0.002, (3, 1))
    arms = {"A": _runs(b + gap + runs), "B": _runs(b + runs[::-1])}
    assert arms["A"].to_numpy().mean() > arms["B"].to_numpy().mean()
    decision, _, _ = _decide(arms)
    assert decision["leader"] == "A" and decision["recommended"] in ("", "A")
    for seed in range(30):  # and over random regimes: only ever the highest mean
        arms = _arms({"a": 0.02, "b": 0.015, "c": 0.0}, seed=seed, noise=0.05)
        decision, _, _ = _decide(arms)
        means = {a: v.to_numpy().mean() for a, v in arms.items()}
        assert decision["recommended"] in ("", max(means, key=means.get))


def test_equivalent_architectures_are_listed_with_the_clearly_worse_ones():
    arms = _arms({"unet": 0.05, "unetpp": 0.048, "vnet": 0.0}, n=100, noise=0.003)
    decision, comparisons, _ = _decide(arms)
    assert decision["decision"] == recipe.EQUIVALENT and decision["recommended"] == ""
    assert decision["equivalent"] == "unet, unetpp" and decision["clearly_worse"] == "vnet"
    assert decision["runner_up"] == "unetpp"
    text = recipe.sentence("x", decision, 0.95)
    assert text.startswith(
        "For x, use any of unet, unetpp (equivalent within +-0.01 Dice); vnet clearly worse "
        "than unet: closest comparison mean Dice +0.00"
    )


def test_an_interval_crossing_the_minimum_effect_is_inconclusive_and_says_so():
    arms = _arms({"a": 0.01, "b": 0.0}, n=200, noise=0.05, seed=3)
    decision, _, _ = _decide(arms)
    assert decision["decision"] == recipe.INCONCLUSIVE
    assert decision["reason"].startswith("the 95% CI of a - b (")
    assert "neither lies above the minimum effect +0.01 nor inside +-0.01" in decision["reason"]


def test_one_run_per_architecture_is_inconclusive_whatever_the_images_say():
    arms = _arms({"unet": 0.2, "noskip_unet": 0.0}, {"unet": [0.0], "noskip_unet": [0.0]})
    decision, _, _ = _decide(arms)
    assert decision["decision"] == recipe.INCONCLUSIVE and decision["reason"] == rep.ONE_RUN
    assert np.isnan(decision["ci_low"]) and decision["leader"] == "unet"
    text = recipe.sentence("complexity 0.10-0.35 bits", decision, 0.95, "image indices")
    assert text == (
        "For complexity 0.10-0.35 bits, inconclusive: one training run per architecture cannot "
        "support an architecture claim; run >= 2 seeds (3 recommended); highest mean Dice unet "
        f"{decision['mean_dice']:.3f}, next noskip_unet {decision['runner_up_mean_dice']:.3f} "
        "(1 training run (seed) per architecture x 60 image indices)."
    )


def test_too_few_units_is_inconclusive():
    decision, _, _ = _decide(_arms({"a": 0.3, "b": 0.0}, n=4))
    assert decision["decision"] == recipe.INCONCLUSIVE
    assert decision["reason"] == "too few units: n = 4 < analysis.min_cases = 10"


def test_only_one_architecture():
    decision, comparisons, rankings = _decide({"unet": _runs([[0.9, 0.8], [0.85, 0.8]])})
    assert decision["decision"] == recipe.ONLY_ONE and comparisons == [] == rankings
    assert "only unet was evaluated" in recipe.sentence("x", decision, 0.95)


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


def test_pseudo_replication_n_counts_image_indices_and_seeds_not_rows():
    # 5 image indices x 3 alphas x 2 directions x 2 seeds = 60 in-domain rows per arch
    table = _texture_rows(
        ["unet", "noskip_unet"],
        dice=lambda arch, train, test, i, seed: 0.7 + 0.01 * i + (0.1 if arch == "unet" else 0),
        complexity=lambda test, i, direction: 1.0,
    )
    result = recipe.recipe(table, n_bins=1)
    row = result[result["regime_kind"] == "complexity"].iloc[0]
    in_domain = table[(table["train_alpha"] == table["test_alpha"]) & (table["arch"] == "unet")]
    assert len(in_domain) == 60
    assert row["n_units"] == 5 and row["n_runs"] == 2  # image indices; seeds
    assert row["decision"] == recipe.INCONCLUSIVE  # 5 < analysis.min_cases
    assert row["reason"] == "too few units: n = 5 < analysis.min_cases = 10"
    assert row["unit"] == "training runs (seeds) x image indices"


def test_complexity_bins_use_in_domain_rows_only_and_shift_regimes_cover_the_rest():
    # cross-alpha rows get an absurd complexity: it must not move the bins
    table = _texture_rows(
        ["unet", "noskip_unet"],
        n_images=12,
        dice=lambda arch, train, test, i, seed: 0.5 + 0.02 * i + 0.01 * (arch == "unet") * i**0.5,
        complexity=lambda test, i, direction: 1.0 + i / 10,
    )
    table.loc[table["train_alpha"] != table["test_alpha"], "complexity"] = 99.0
    result = recipe.recipe(table, n_bins=2)
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
             group=f"i{i}", dice=v + 0.001 * s * (-1) ** s,
             perturbation=perturbation, severity=severity, level=level, complexity=np.nan,
             train_alpha=np.nan, test_alpha=np.nan, direction="")
        for s in (1, 2, 3) for i, v in enumerate(dice)
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
    result = recipe.recipe(pd.DataFrame(rows)).set_index("regime")
    assert list(result.index) == ["clean test images (Unperturbed)", "speckle severity 4 (Hardest)"]
    assert (result["n_units"] == 30).all()  # 2 datasets x 15 images
    assert (result["n_runs"] == 3).all()
    assert result.loc["clean test images (Unperturbed)", "recommended"] == "unet"
    hardest = result.loc["speckle severity 4 (Hardest)"]
    assert hardest["recommended"] == "noskip_unet" and hardest["effect"] > 0.02


def test_context_regimes_classify_each_image_once_for_every_arch():
    rows, patches = [], []
    fg = np.linspace(0.01, 0.5, 24)
    for arch, skill in (("unet", 0.9), ("unetr", 0.7)):
        for i, ratio in enumerate(fg):
            rows += [dict(study="context", dataset="spheres", patch="32", arch=arch, seed=s,
                          split="test", condition="clean", test_dataset="spheres",
                          image_id=f"c{i}", group=f"c{i}",
                          dice=skill - 0.1 * ratio + 0.002 * s * (-1) ** s, fg_ratio=ratio,
                          perturbation="none", severity=0, level="", complexity=np.nan,
                          train_alpha=np.nan, test_alpha=np.nan, direction="")
                     for s in (1, 2, 3)]  # fmt: skip
        # the two archs sampled different patches: one pooled range per patch size
        spread = (0.05, 0.2) if arch == "unet" else (0.1, 0.3)
        patches += [dict(study="context", dataset="spheres", patch="32", arch=arch, seed=1,
                         fg_ratio=v) for v in np.linspace(*spread, 50)]  # fmt: skip
    ranges = training_fbr_range(pd.DataFrame(patches))
    result = recipe.recipe(pd.DataFrame(rows), ranges)
    assert result["regime_kind"].tolist() == ["context", "context"]
    assert result["regime"].str.contains("inside").tolist() == [True, False]
    low, high = ranges.loc[0, ["fbr_low", "fbr_high"]]
    inside = int(((fg >= low) & (fg <= high)).sum())
    assert result["n_units"].tolist() == [inside, 24 - inside]
    assert result["leader"].eq("unet").all() and result["n_runs"].eq(3).all()


def test_recipe_rejects_zero_bins():
    with pytest.raises(ValueError, match="analysis.complexity_bins"):
        recipe.recipe(pd.DataFrame(_perturbation_rows("a", "clean", [0.5])), n_bins=0)


def test_recipe_tables_give_one_comparison_per_rival_and_markdown_lists_every_sentence():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.5, 0.8, 20)
    rows = []
    for arch, shift in (("unet", 0.0), ("vnet", 0.1), ("unetpp", -0.1)):
        rows += _perturbation_rows(arch, "clean", base + shift + rng.normal(0, 0.01, 20))
    table, comparisons, rankings = recipe.recipe_tables(pd.DataFrame(rows))
    assert list(table.columns) == recipe.RECIPE_COLUMNS
    assert list(comparisons.columns) == recipe.COMPARISON_COLUMNS
    assert list(rankings.columns) == recipe.RANKING_COLUMNS
    assert rankings.set_index("arch").loc["vnet", "p_first"] == 1.0
    assert table.loc[0, "p_first"] == 1.0
    assert comparisons["arch"].eq("vnet").all()
    assert sorted(comparisons["rival"]) == ["unet", "unetpp"]
    assert table.loc[0, "recommended"] == "vnet" and table.loc[0, "n_archs"] == 3
    markdown = recipe.recipe_markdown(table)
    assert markdown.count("\n- For ") == len(table) and "## perturbation" in markdown
