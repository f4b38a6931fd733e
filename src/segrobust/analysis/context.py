"""Context study: is Dice lower on test cases whose foreground ratio the training never saw?

For each model run the range of foreground-to-background ratio (FBR, here the foreground
fraction ``fg_ratio``) of its training patches is the 5th-95th percentile of ``patches.csv``
(every sampled patch). Percentiles rather than min-max: random patch sampling produces a few
extreme patches (empty or all-foreground crops), and min-max would stretch the range to almost
[0, 1] and call nothing out of range. A test case is *outside* when its own ``fg_ratio`` falls
outside its run's range. The Dice drop is mean Dice inside minus mean Dice outside, per
(arch, patch) and per arch over all patch sizes, with a percentile bootstrap 95% CI that
resamples the inside and the outside cases separately.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segrobust.analysis.stats import percentile_ci

RUN_KEYS = ["study", "dataset", "arch", "seed", "patch"]
RANGE_QUANTILES = (0.05, 0.95)
OUT_OF_RANGE_COLUMNS = [
    "study",
    "dataset",
    "arch",
    "patch",
    "fbr_low",
    "fbr_high",
    "n_inside",
    "n_outside",
    "dice_inside",
    "dice_outside",
    "dice_drop",
    "ci_low",
    "ci_high",
    "n_bootstrap",
]
FBR_BIN_COLUMNS = [
    "study",
    "dataset",
    "arch",
    "patch",
    "fbr_bin",
    "fbr_low",
    "fbr_high",
    "n_images",
    "mean_dice",
    "sd_dice",
]


def training_fbr_range(patches: pd.DataFrame, quantiles=RANGE_QUANTILES) -> pd.DataFrame:
    """Per run: the [low, high] quantiles of the training patches' fg_ratio.

    Raises:
        ValueError: ``patches`` lacks a run column or ``fg_ratio`` (names the missing ones).
    """
    missing = [c for c in [*RUN_KEYS, "fg_ratio"] if c not in patches.columns]
    if missing:
        raise ValueError(
            f"patches table lacks columns {missing}; it needs {RUN_KEYS + ['fg_ratio']}"
        )
    grouped = patches.groupby(RUN_KEYS, dropna=False)["fg_ratio"]
    low, high = grouped.quantile(quantiles[0]), grouped.quantile(quantiles[1])
    return pd.DataFrame({"fbr_low": low, "fbr_high": high}).reset_index()


def label_out_of_range(per_image: pd.DataFrame, ranges: pd.DataFrame) -> pd.DataFrame:
    """Context-study test rows with their run's range and ``outside`` (bool).

    Test rows of a run without training patches are dropped (their range is unknown).
    """
    test = per_image[(per_image["study"] == "context") & (per_image["split"] == "test")]
    rows = test.merge(ranges, on=RUN_KEYS, how="inner")
    outside = (rows["fg_ratio"] < rows["fbr_low"]) | (rows["fg_ratio"] > rows["fbr_high"])
    return rows.assign(outside=outside)


def drop_with_ci(inside: np.ndarray, outside: np.ndarray, n_bootstrap: int, rng) -> tuple:
    """(mean inside - mean outside, CI low, CI high); NaN where a side is empty."""
    if len(inside) == 0 or len(outside) == 0:
        return np.nan, np.nan, np.nan
    i = inside[rng.integers(0, len(inside), (n_bootstrap, len(inside)))].mean(axis=1)
    o = outside[rng.integers(0, len(outside), (n_bootstrap, len(outside)))].mean(axis=1)
    low, high = percentile_ci(i - o)
    return float(inside.mean() - outside.mean()), float(low), float(high)


def out_of_range_table(
    per_image: pd.DataFrame, patches: pd.DataFrame, n_bootstrap: int, seed: int
) -> pd.DataFrame:
    """Dice drop inside vs outside the training FBR range per (arch, patch) and per arch.

    Rows pooled over patch sizes have patch ``all``; seeds are pooled (each row is classified
    against its own run's range).
    """
    rows = label_out_of_range(per_image, training_fbr_range(patches))
    rng = np.random.default_rng(seed)
    rows = rows.assign(patch=rows["patch"].astype(str))
    pooled = rows.assign(patch="all")
    out = []
    for frame in (rows, pooled):
        for key, group in frame.groupby(["study", "dataset", "arch", "patch"], sort=True):
            inside = group.loc[~group["outside"], "dice"].to_numpy(float)
            outside = group.loc[group["outside"], "dice"].to_numpy(float)
            drop, low, high = drop_with_ci(inside, outside, n_bootstrap, rng)
            out.append(
                dict(
                    zip(["study", "dataset", "arch", "patch"], key, strict=True),
                    fbr_low=group["fbr_low"].mean(),
                    fbr_high=group["fbr_high"].mean(),
                    n_inside=len(inside),
                    n_outside=len(outside),
                    dice_inside=inside.mean() if len(inside) else np.nan,
                    dice_outside=outside.mean() if len(outside) else np.nan,
                    dice_drop=drop,
                    ci_low=low,
                    ci_high=high,
                    n_bootstrap=n_bootstrap,
                )
            )
    return pd.DataFrame(out, columns=OUT_OF_RANGE_COLUMNS)


def dice_by_fbr_bin(per_image: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Mean Dice per (arch, patch) in quantile bins of the test cases' fg_ratio.

    The bin edges are shared by all (arch, patch) so the curves are comparable.
    """
    test = per_image[(per_image["study"] == "context") & (per_image["split"] == "test")]
    test = test.dropna(subset=["fg_ratio"])
    if test.empty:
        return pd.DataFrame(columns=FBR_BIN_COLUMNS)
    if test["fg_ratio"].nunique() > 1:
        codes, edges = pd.qcut(
            test["fg_ratio"], q=n_bins, labels=False, retbins=True, duplicates="drop"
        )
        codes = codes.to_numpy(dtype=int)
    else:  # one distinct ratio (e.g. a single test case): one degenerate bin
        value = float(test["fg_ratio"].iloc[0])
        codes, edges = np.zeros(len(test), dtype=int), np.array([value, value])
    test = test.assign(
        fbr_bin=codes,
        fbr_low=edges[codes],
        fbr_high=edges[codes + 1],
        patch=test["patch"].astype(str),
    )
    keys = ["study", "dataset", "arch", "patch", "fbr_bin", "fbr_low", "fbr_high"]
    table = test.groupby(keys, sort=True)["dice"].agg(
        n_images="size", mean_dice="mean", sd_dice="std"
    )
    return table.reset_index()[FBR_BIN_COLUMNS]
