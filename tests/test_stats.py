"""Holm, Nemenyi CD, Wilcoxon, Friedman blocks and their independence, bootstrap, ranking
stability."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from segrobust.analysis import stats
from segrobust.report.analysis_figures import insignificant_groups


def test_holm_matches_hand_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_ignores_nan():
    adjusted = stats.holm([0.01, np.nan, 0.02, 0.6])
    assert np.isnan(adjusted[1])
    assert adjusted[[0, 2, 3]] == pytest.approx([0.03, 0.04, 0.6])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert np.isnan(stats.holm([np.nan])).all()


def test_demsar_critical_difference_example():
    # Demsar (2006), section 3.2.2: k = 4 classifiers, N = 14 data sets: CD = 1.25 / 1.12
    assert stats.critical_difference(4, 14, 0.05) == pytest.approx(1.25, abs=0.005)
    assert stats.critical_difference(4, 14, 0.10) == pytest.approx(1.12, abs=0.005)


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_nemenyi_table_agrees_with_studentized_range(alpha):
    for k in range(2, 11):
        exact = sps.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
        assert stats.nemenyi_q(k, alpha) == pytest.approx(exact, abs=0.002)
    assert stats.nemenyi_q(12, 0.05) > stats.nemenyi_q(10, 0.05)  # beyond the table
    with pytest.raises(ValueError, match="k >= 2"):
        stats.nemenyi_q(1)


def test_average_ranks_with_ties():
    scores = pd.DataFrame({"a": [0.9, 0.8, 0.7], "b": [0.8, 0.8, 0.9], "c": [0.1, 0.2, 0.8]})
    # ranks per row (1 = best): [1,2,3], [1.5,1.5,3], [3,1,2]
    assert stats.average_ranks(scores).tolist() == pytest.approx([5.5 / 3, 4.5 / 3, 8 / 3])


def test_insignificant_groups_of_the_cd_diagram():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.6, "d": 3.0})
    assert insignificant_groups(ranks, 1.2) == [(0, 1), (1, 2), (2, 3)]
    assert insignificant_groups(ranks, 2.5) == [(0, 3)]


def _paired_table(means: dict, n: int = 15, seed: int = 0, conditions=("clean",), own_models=False):
    """Two seeds per arch; with ``own_models`` each condition is its own dataset (own models)."""
    rng = np.random.default_rng(seed)
    rows = []
    for condition in conditions:
        dataset = f"busi-{condition}" if own_models else "busi"
        base = rng.uniform(0.5, 0.9, n)
        for arch, shift in means.items():
            for s in (1, 2):
                dice = base + shift + rng.normal(0, 0.02, n)
                for i in range(n):
                    rows.append(
                        dict(
                            study="perturbation",
                            dataset=dataset,
                            patch="full",
                            condition=condition,
                            test_dataset=dataset,
                            split="test",
                            arch=arch,
                            seed=s,
                            image_id=f"i{i}",
                            group=f"i{i}",
                            dice=dice[i],
                        )
                    )
    return pd.DataFrame(rows)


def test_pairwise_wilcoxon_matches_scipy_on_seed_averaged_dice():
    table = _paired_table({"a": 0.0, "b": 0.05, "c": 0.051})
    result = stats.pairwise_wilcoxon(table, 0.05)
    wide = table.groupby(["image_id", "arch"])["dice"].mean().unstack()
    raw = [sps.wilcoxon(wide[x], wide[y]).pvalue for x, y in itertools.combinations("abc", 2)]
    assert result["p_value"].tolist() == pytest.approx(raw)
    assert result["p_holm"].tolist() == pytest.approx(stats.holm(raw).tolist())
    assert result.set_index(["arch_a", "arch_b"]).loc[("a", "b"), "significant"]
    assert result["n_images"].eq(15).all()
    ab = result.set_index(["arch_a", "arch_b"]).loc[("a", "b")]
    assert ab["median_diff"] == pytest.approx((wide["a"] - wide["b"]).median())


def test_identical_architectures_get_p_one():
    table = _paired_table({"a": 0.0})
    table = pd.concat([table, table.assign(arch="b")])
    assert stats.pairwise_wilcoxon(table)["p_value"].tolist() == [1.0]


def test_friedman_matches_scipy_on_blocks_with_their_own_models():
    table = _paired_table({"a": 0.0, "b": 0.03, "c": 0.06}, conditions=("c1", "c2", "c3", "c4"),
                          own_models=True)  # fmt: skip
    result = stats.friedman(table, 0.05).set_index("arch")
    blocks = table.groupby(["condition", "arch"])["dice"].mean().unstack()
    expected = sps.friedmanchisquare(blocks["a"], blocks["b"], blocks["c"])
    assert result["statistic"].iloc[0] == pytest.approx(expected.statistic)
    assert result["p_value"].iloc[0] == pytest.approx(expected.pvalue)
    assert result["average_rank"].to_dict() == pytest.approx({"a": 3.0, "b": 2.0, "c": 1.0})
    assert result["n_blocks"].iloc[0] == 4
    assert result["critical_difference"].iloc[0] == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 4)))
    assert (result["status"] == "computed").all() and result["cd_applicable"].all()
    assert "one block per (test dataset, test condition)" in result["friedman_note"].iloc[0]


def test_friedman_is_not_applicable_when_the_blocks_share_trained_models():
    """The clean and perturbed test sets of one dataset are scored by the same networks."""
    table = _paired_table({"a": 0.0, "b": 0.03, "c": 0.06}, conditions=("c1", "c2", "c3", "c4"))
    assert stats.blocks_share_models(table, "perturbation")
    result = stats.friedman(table, 0.05)
    assert result["statistic"].isna().all() and result["critical_difference"].isna().all()
    assert (result["status"] == "not applicable: the blocks share trained models").all()
    assert not result["cd_applicable"].any() and result["average_rank"].notna().all()
    assert "Friedman not applicable" in result["friedman_note"].iloc[0]


def _texture_grid(alphas=(0.1, 0.5, 0.9), archs=("unet", "noskip_unet", "vnet"), n=6):
    """Every arch trained at each alpha of two directions and tested at every alpha."""
    rng = np.random.default_rng(0)
    rows = []
    for direction in ("background", "foreground"):
        for train in alphas:
            for test in alphas:
                for k, arch in enumerate(archs):
                    for i in range(n):
                        rows.append(dict(
                            study="texture", dataset=f"texture-{direction}-{train:g}",
                            condition=f"texture-{direction}-{test:g}",
                            test_dataset=f"texture-{direction}-{test:g}", split="test",
                            perturbation="none", train_alpha=train, test_alpha=test,
                            arch=arch, seed=1, patch="full", image_id=f"tex_{i:04d}",
                            group=f"tex_{i:04d}",
                            # the in-domain ranking is unet > noskip_unet > vnet; shifted
                            # models rank the other way round
                            dice=(0.9 - 0.1 * k if train == test else 0.5 + 0.1 * k)
                            + rng.normal(0, 0.01),
                        ))  # fmt: skip
    return pd.DataFrame(rows)


def test_texture_blocks_are_test_sets_scored_in_domain():
    grid = _texture_grid()
    blocks = stats.friedman_blocks(grid, "texture")
    # 2 directions x 3 alphas = 6 test sets; the old blocks were 2 x 3 x 3 = 18 model x test
    assert len(blocks) == 6
    assert blocks.index.get_level_values("test_dataset").is_unique
    result = stats.friedman(grid).set_index("arch")
    assert result["n_blocks"].eq(6).all()
    # only in-domain models score: the shifted models' reversed ranking must not enter
    assert result["average_rank"].to_dict() == pytest.approx(
        {"unet": 1.0, "noskip_unet": 2.0, "vnet": 3.0}
    )
    assert result.loc["unet", "critical_difference"] == pytest.approx(
        stats.critical_difference(3, 6)
    )
    assert not stats.blocks_share_models(grid, "texture") and result["cd_applicable"].all()


def test_context_blocks_average_patch_sizes_sharing_one_test_set():
    rows = []
    for patch, shift in (("16", 0.0), ("32", 0.2)):
        for k, arch in enumerate(("unet", "attention_unet", "unetr")):
            for i in range(5):
                rows.append(dict(study="context", dataset="spheres", condition="clean",
                                 test_dataset="spheres", split="test", arch=arch, seed=1,
                                 patch=patch, image_id=f"c{i}",
                                 group=f"c{i}", dice=0.5 + shift - 0.1 * k,
                                 perturbation="none"))  # fmt: skip
    table = pd.DataFrame(rows)
    blocks = stats.friedman_blocks(table, "context")
    assert blocks.shape == (1, 3)
    assert blocks.iloc[0].to_dict() == pytest.approx({"unet": 0.6, "attention_unet": 0.5,
                                                      "unetr": 0.4})  # fmt: skip
    result = stats.friedman(table)
    assert result["n_blocks"].eq(1).all() and result["p_value"].isna().all()
    assert result["critical_difference"].isna().all()
    assert result["status"].iloc[0] == "not computable: needs N >= 2 independent blocks, got 1"
    assert "Not computed: needs N >= 2" in result["friedman_note"].iloc[0]


def test_friedman_with_two_architectures_reports_ranks_only():
    result = stats.friedman(
        _paired_table({"a": 0.0, "b": 0.1}, conditions=("x", "y"), own_models=True)
    )
    assert result["statistic"].isna().all() and result["average_rank"].notna().all()
    assert result["status"].iloc[0] == "not computable: needs k >= 3 architectures, got 2"


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    table = _paired_table({"a": 0.0, "b": 0.05})
    first = stats.bootstrap_ci(table, 200, seed=1)
    assert first.equals(stats.bootstrap_ci(table, 200, seed=1))
    assert not first.equals(stats.bootstrap_ci(table, 200, seed=2))
    assert (first["ci_low"] <= first["estimate"]).all()
    assert (first["estimate"] <= first["ci_high"]).all()
    diff = first[first["quantity"] == "mean_difference"].iloc[0]
    assert diff["ci_high"] < 0  # a - b is about -0.05 with sd 0.02 / sqrt(2)


def test_bootstrap_ci_of_a_constant_difference_collapses():
    table = _paired_table({"a": 0.0}, n=8)
    table = pd.concat([table, table.assign(arch="b", dice=table["dice"] + 0.1)])
    diff = stats.bootstrap_ci(table, 50, seed=0).query("quantity == 'mean_difference'").iloc[0]
    assert [diff["ci_low"], diff["estimate"], diff["ci_high"]] == pytest.approx([-0.1] * 3)


def test_ranking_stability_resamples_runs_and_units():
    clear = stats.rankings(_paired_table({"a": 0.0, "b": 0.2}), 100, seed=0).set_index("arch")
    assert clear.loc["b", "rank"] == 1 and clear.loc["b", "p_first"] == 1.0
    assert clear["n_runs"].eq(2).all() and clear["n_images"].eq(15).all()
    assert clear["rank_stability"].tolist() == [1.0, 1.0]
    close = stats.rankings(_paired_table({"a": 0.0, "b": 0.001}, seed=3), 200, seed=0)
    assert 0.0 < close["p_first"].iloc[0] < 1.0  # a near tie flips in some resamples
    assert close.equals(stats.rankings(_paired_table({"a": 0.0, "b": 0.001}, seed=3), 200, 0))
    assert close["p_first"].sum() == pytest.approx(1.0)
