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


def _cases(arch, patch, fg_dice, split="test"):
    return [dict(RUN, arch=arch, patch=patch, split=split, condition="clean", image_id=f"c{i}",
                 fg_ratio=fg, dice=d) for i, (fg, d) in enumerate(fg_dice)]  # fmt: skip


def test_training_range_is_the_5th_to_95th_percentile():
    ranges = context.training_fbr_range(pd.DataFrame(_patches("unet", "32", np.arange(101) / 100)))
    assert ranges[["fbr_low", "fbr_high"]].iloc[0].tolist() == pytest.approx([0.05, 0.95])


def test_out_of_range_drop_on_constructed_cases():
    # training patches spread over [0.1, 0.3]: its 5-95 percentile range is [0.11, 0.29]
    patches = pd.DataFrame(_patches("unet", "32", np.linspace(0.1, 0.3, 101)))
    cases = [(0.05, 0.6), (0.2, 0.9), (0.15, 0.9), (0.5, 0.6), (0.25, 0.9)]
    per_image = pd.DataFrame(
        _cases("unet", "32", cases) + _cases("unet", "32", [(0.9, 0.0)], split="calibration")
    )
    labelled = context.label_out_of_range(per_image, context.training_fbr_range(patches))
    assert labelled["outside"].tolist() == [True, False, False, True, False]
    table = context.out_of_range_table(per_image, patches, n_bootstrap=50, seed=0)
    row = table[table["patch"] == "32"].iloc[0]
    assert (row["n_inside"], row["n_outside"]) == (3, 2)
    assert row["dice_drop"] == pytest.approx(0.3)
    assert [row["ci_low"], row["ci_high"]] == pytest.approx([0.3, 0.3])  # constant Dice per side
    assert row["fbr_low"] == pytest.approx(0.11) and row["fbr_high"] == pytest.approx(0.29)


def test_per_arch_pooling_and_each_run_uses_its_own_range():
    patches = pd.DataFrame(
        _patches("unet", "32", np.linspace(0.0, 0.1, 101))
        + _patches("unet", "64", np.linspace(0.2, 0.4, 101))
    )
    # fg 0.3 is outside the p32 range but inside the p64 range
    per_image = pd.DataFrame(
        _cases("unet", "32", [(0.3, 0.5), (0.05, 0.9)]) + _cases("unet", "64", [(0.3, 0.8)])
    )
    table = context.out_of_range_table(per_image, patches, 20, 0).set_index("patch")
    assert table.loc["32", ["n_inside", "n_outside"]].tolist() == [1, 1]
    assert table.loc["64", ["n_inside", "n_outside"]].tolist() == [1, 0]
    assert np.isnan(table.loc["64", "dice_drop"])  # nothing outside: no drop
    assert table.loc["all", ["n_inside", "n_outside"]].tolist() == [2, 1]
    assert table.loc["all", "dice_drop"] == pytest.approx((0.9 + 0.8) / 2 - 0.5)


def test_patches_without_run_columns_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"patches table lacks columns \['study', 'dataset', 'arch'"
    ):
        context.training_fbr_range(pd.DataFrame({"fg_ratio": [0.1]}))


def test_dice_by_fbr_bin_shares_edges_across_runs():
    fg = np.linspace(0.01, 0.4, 20)
    per_image = pd.DataFrame(
        _cases("unet", "32", zip(fg, 1 - fg, strict=True))
        + _cases("unetr", "32", zip(fg, 0.5 + 0 * fg, strict=True))
    )
    table = context.dice_by_fbr_bin(per_image, n_bins=2)
    assert list(table.columns) == context.FBR_BIN_COLUMNS
    assert table["n_images"].tolist() == [10, 10, 10, 10]
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
