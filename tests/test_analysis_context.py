"""Context study: training FBR range, out-of-range Dice drop and Dice by FBR bin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis import context

RUN = dict(study="context", dataset="spheres", seed=1)


def _patches(arch, patch, values):
    return [dict(RUN, arch=arch, patch=patch, epoch=0, batch=i, index=0, fg_ratio=v)
            for i, v in enumerate(values)]  # fmt: skip


def _cases(arch, patch, fg_dice, split="test", seed=1):
    return [dict(RUN, arch=arch, patch=patch, split=split, condition="clean", image_id=f"c{i}",
                 group=f"c{i}",
                 test_dataset="spheres", fg_ratio=fg, dice=d, seed=seed)
            for i, (fg, d) in enumerate(fg_dice)]  # fmt: skip


def test_training_range_is_the_5th_to_95th_percentile():
    ranges = context.training_fbr_range(pd.DataFrame(_patches("unet", "32", np.arange(101) / 100)))
    assert ranges[["fbr_low", "fbr_high"]].iloc[0].tolist() == pytest.approx([0.05, 0.95])
    assert list(ranges.columns) == context.FBR_RANGE_COLUMNS
    assert ranges[["n_patches", "n_runs"]].iloc[0].tolist() == [101, 1]


def test_one_range_per_patch_size_pooled_over_architectures_and_seeds():
    patches = pd.DataFrame(
        _patches("unet", "32", np.linspace(0.0, 0.2, 51))
        + _patches("unetr", "32", np.linspace(0.2, 0.4, 50))
        + [dict(p, seed=2) for p in _patches("unet", 32, [0.5])]  # patch read back as a number
    )
    ranges = context.training_fbr_range(patches)
    assert len(ranges) == 1 and ranges.loc[0, "patch"] == "32"
    pooled = np.concatenate([np.linspace(0.0, 0.2, 51), np.linspace(0.2, 0.4, 50), [0.5]])
    assert ranges.loc[0, "fbr_low"] == pytest.approx(np.quantile(pooled, 0.05))
    assert ranges.loc[0, "fbr_high"] == pytest.approx(np.quantile(pooled, 0.95))
    assert ranges.loc[0, "n_runs"] == 3
    # every architecture sees the same inside / outside split of the test images
    per_image = pd.DataFrame(
        _cases("unet", "32", [(0.001, 0.5), (0.2, 0.9)])
        + _cases("unetr", "32", [(0.001, 0.4), (0.2, 0.8)])
    )
    labelled = context.label_out_of_range(per_image, ranges)
    assert labelled.groupby("image_id")["outside"].nunique().eq(1).all()
    assert labelled.set_index(["arch", "image_id"])["outside"].to_dict() == {
        ("unet", "c0"): True,
        ("unet", "c1"): False,
        ("unetr", "c0"): True,
        ("unetr", "c1"): False,
    }


def test_out_of_range_drop_on_constructed_cases():
    # training patches spread over [0.1, 0.3]: its 5-95 percentile range is [0.11, 0.29]
    patches = pd.DataFrame(_patches("unet", "32", np.linspace(0.1, 0.3, 101)))
    cases = [(0.05, 0.6), (0.2, 0.9), (0.15, 0.9), (0.5, 0.6), (0.25, 0.9)]
    per_image = pd.DataFrame(
        _cases("unet", "32", cases) + _cases("unet", "32", [(0.9, 0.0)], split="calibration")
    )
    ranges = context.training_fbr_range(patches)
    labelled = context.label_out_of_range(per_image, ranges)
    assert labelled["outside"].tolist() == [True, False, False, True, False]
    table = context.out_of_range_table(per_image, ranges, n_bootstrap=50, seed=0, min_cases=2)
    row = table.iloc[0]
    assert (row["n_inside"], row["n_outside"]) == (3, 2)
    assert row["dice_drop"] == pytest.approx(0.3)
    assert [row["ci_low"], row["ci_high"]] == pytest.approx([0.3, 0.3])  # constant Dice per side
    assert row["fbr_low"] == pytest.approx(0.11) and row["fbr_high"] == pytest.approx(0.29)
    assert row["status"] == "ok"


def test_too_few_out_of_range_cases_give_no_ci():
    patches = pd.DataFrame(_patches("unet", "32", np.linspace(0.1, 0.3, 101)))
    cases = [(0.2 + i / 1000, 0.9 - i / 100) for i in range(12)] + [(0.9, 0.1)]  # 1 outside
    per_image = pd.DataFrame(_cases("unet", "32", cases))
    ranges = context.training_fbr_range(patches)
    row = context.out_of_range_table(per_image, ranges, 100, 0, min_cases=10).iloc[0]
    assert (row["n_inside"], row["n_outside"]) == (12, 1)
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    assert row["status"].startswith("too few cases: 12 inside and 1 outside")
    assert row["dice_drop"] == pytest.approx(np.mean([0.9 - i / 100 for i in range(12)]) - 0.1)


def test_seeds_are_averaged_per_image_and_patch_sizes_use_their_own_range():
    patches = pd.DataFrame(
        _patches("unet", "32", np.linspace(0.0, 0.1, 101))
        + _patches("unet", "64", np.linspace(0.2, 0.4, 101))
    )
    # fg 0.3 is outside the p32 range but inside the p64 range; two seeds of the same images
    per_image = pd.DataFrame(
        _cases("unet", "32", [(0.3, 0.5), (0.05, 0.9)])
        + _cases("unet", "32", [(0.3, 0.7), (0.05, 0.7)], seed=2)
        + _cases("unet", "64", [(0.3, 0.8)])
    )
    ranges = context.training_fbr_range(patches)
    table = context.out_of_range_table(per_image, ranges, 20, 0, min_cases=1).set_index("patch")
    assert table.loc["32", ["n_inside", "n_outside"]].tolist() == [1, 1]  # images, not rows
    assert table.loc["32", "dice_drop"] == pytest.approx(0.8 - 0.6)
    assert table.loc["64", ["n_inside", "n_outside"]].tolist() == [1, 0]
    assert np.isnan(table.loc["64", "dice_drop"])  # nothing outside: no drop
    assert "all" not in table.index  # no pooling of one image's rows across patch sizes


def test_patches_without_run_columns_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"patches table lacks columns \['study', 'dataset', 'arch'"
    ):
        context.training_fbr_range(pd.DataFrame({"fg_ratio": [0.1]}))


def test_dice_by_fbr_bin_shares_edges_across_runs():
    fg = np.linspace(0.01, 0.4, 20)
    per_image = pd.DataFrame(
        _cases("unet", "32", zip(fg, 1 - fg, strict=True))
        + _cases("unet", "32", zip(fg, 1 - fg, strict=True), seed=2)
        + _cases("unetr", "32", zip(fg, 0.5 + 0 * fg, strict=True))
    )
    table = context.dice_by_fbr_bin(per_image, n_bins=2)
    assert list(table.columns) == context.FBR_BIN_COLUMNS
    assert table["n_images"].tolist() == [10, 10, 10, 10]  # seeds averaged per image
    unet = table[table["arch"] == "unet"]
    assert unet["mean_dice"].iloc[0] > unet["mean_dice"].iloc[1]  # Dice falls with FBR here
    assert table.groupby("fbr_bin")["fbr_low"].nunique().eq(1).all()


def test_fbr_bins_with_a_single_distinct_ratio_form_one_bin():
    import pandas as pd

    from segrobust.analysis.context import dice_by_fbr_bin

    rows = pd.DataFrame(
        {
            "study": "context",
            "split": "test",
            "dataset": "s",
            "test_dataset": "s",
            "image_id": ["a", "b"],
            "group": ["a", "b"],
            "arch": "unet",
            "patch": 16,
            "fg_ratio": [0.2, 0.2],
            "dice": [0.5, 0.7],
        }
    )
    table = dice_by_fbr_bin(rows, 3)
    assert len(table) == 1
    assert table.loc[0, "fbr_low"] == table.loc[0, "fbr_high"] == 0.2
    assert table.loc[0, "mean_dice"] == 0.6
