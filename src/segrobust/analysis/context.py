"""Context study: is Dice lower on test cases whose foreground ratio the training never saw?

**One training-FBR range.** The range of foreground-to-background ratio (FBR, here the foreground
fraction ``fg_ratio``, a fraction in [0, 1]) the training patches covered is computed here only,
per (study, dataset, patch size), pooled over every run of that patch size: the patch sampler
(patch size, positive/negative ratio, the training volumes), not the architecture or the seed,
sets which ratios training sees. It is the 5th-95th percentile of ``patches.csv`` (every sampled
patch). Percentiles rather than min-max: random patch sampling produces a few extreme patches
(empty or all-foreground crops), and min-max would stretch the range to almost [0, 1] and call
nothing out of range. ``context_fbr_range.csv`` carries it for the report's figure, and the
out-of-range classification uses the same table, so a test image is inside or outside for every
architecture alike (which paired comparisons between architectures need).

**Dice drop.** Per (arch, patch) the mean Dice of the test images inside the range minus that of
the images outside, with a percentile bootstrap 95% CI that resamples the inside and the outside
images separately (different images: unpaired). The unit is the test image, its Dice averaged
over seeds. A CI needs at least ``min_cases`` images on each side; with fewer the row says "too
few cases" and has no CI.

**FBR bins.** Dice by test FBR uses one rule: quantile bins of the test images' ``fg_ratio`` per
(study, dataset), each distinct test image counted once, edges shared by every (arch, patch).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segrobust import contract
from segrobust.analysis.stats import percentile_ci
from segrobust.analysis.units import independent_unit

RUN_KEYS = list(contract.RUN_KEYS)
RANGE_KEYS = ["study", "dataset", "patch"]
RANGE_QUANTILES = contract.FBR_RANGE_QUANTILES
FBR_RANGE_COLUMNS = [
    *RANGE_KEYS,
    "fbr_low",
    "fbr_high",
    "quantile_low",
    "quantile_high",
    "n_patches",
    "n_runs",
]
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
    "status",
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
TOO_FEW = "too few cases"


def _patch_text(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(patch=table["patch"].astype(str))


def training_fbr_range(patches: pd.DataFrame, quantiles=RANGE_QUANTILES) -> pd.DataFrame:
    """Per (study, dataset, patch): the [low, high] quantiles of the training patches' fg_ratio,
    pooled over all runs (architectures and seeds) of that patch size.

    Raises:
        ValueError: ``patches`` lacks a run column or ``fg_ratio`` (names the missing ones).
    """
    missing = [c for c in [*RUN_KEYS, "fg_ratio"] if c not in patches.columns]
    if missing:
        raise ValueError(
            f"patches table lacks columns {missing}; it needs {RUN_KEYS + ['fg_ratio']}"
        )
    patches = _patch_text(patches.dropna(subset=["fg_ratio"]))
    grouped = patches.groupby(RANGE_KEYS, dropna=False)
    table = pd.DataFrame(
        {
            "fbr_low": grouped["fg_ratio"].quantile(quantiles[0]),
            "fbr_high": grouped["fg_ratio"].quantile(quantiles[1]),
            "quantile_low": quantiles[0],
            "quantile_high": quantiles[1],
            "n_patches": grouped.size(),
            "n_runs": grouped[["arch", "seed"]].apply(lambda g: len(g.drop_duplicates())),
        }
    ).reset_index()
    return table[FBR_RANGE_COLUMNS]


def label_out_of_range(per_image: pd.DataFrame, ranges: pd.DataFrame) -> pd.DataFrame:
    """Context-study test rows with their patch size's range and ``outside`` (bool).

    Test rows of a patch size without training patches are dropped (their range is unknown).
    """
    test = per_image[(per_image["study"] == "context") & (per_image["split"] == "test")]
    rows = _patch_text(test).merge(
        _patch_text(ranges)[[*RANGE_KEYS, "fbr_low", "fbr_high"]], on=RANGE_KEYS, how="inner"
    )
    outside = (rows["fg_ratio"] < rows["fbr_low"]) | (rows["fg_ratio"] > rows["fbr_high"])
    return rows.assign(outside=outside)


def drop_with_ci(
    inside: np.ndarray, outside: np.ndarray, n_bootstrap: int, rng, min_cases: int = 1
) -> tuple:
    """(mean inside - mean outside, CI low, CI high, status).

    The drop is NaN where a side is empty; the CI is NaN (status ``too few cases``) where a side
    has fewer than ``min_cases`` units.
    """
    if len(inside) == 0 or len(outside) == 0:
        return np.nan, np.nan, np.nan, f"{TOO_FEW}: a side is empty"
    drop = float(inside.mean() - outside.mean())
    if min(len(inside), len(outside)) < min_cases:
        status = (
            f"{TOO_FEW}: {len(inside)} inside and {len(outside)} outside, "
            f"a CI needs >= {min_cases} per side"
        )
        return drop, np.nan, np.nan, status
    i = inside[rng.integers(0, len(inside), (n_bootstrap, len(inside)))].mean(axis=1)
    o = outside[rng.integers(0, len(outside), (n_bootstrap, len(outside)))].mean(axis=1)
    low, high = percentile_ci(i - o)
    return drop, float(low), float(high), "ok"


def image_level(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per (keys, independent unit): Dice averaged over seeds, ``outside`` kept."""
    rows = rows.assign(unit=independent_unit(rows))
    agg = {"dice": "mean", "outside": "first", "fbr_low": "first", "fbr_high": "first"}
    return rows.groupby([*keys, "unit"], dropna=False, sort=True).agg(agg).reset_index()


def out_of_range_table(
    per_image: pd.DataFrame,
    ranges: pd.DataFrame,
    n_bootstrap: int,
    seed: int,
    min_cases: int = 10,
) -> pd.DataFrame:
    """Dice drop inside vs outside the training FBR range per (study, dataset, arch, patch).

    Args:
        per_image: per-image rows; only context-study test rows are used.
        ranges: ``training_fbr_range`` (the one range per patch size).
        n_bootstrap, seed: bootstrap resamples and their seed.
        min_cases: fewest images per side for a CI (``analysis.min_cases``).
    """
    keys = ["study", "dataset", "arch", "patch"]
    rows = label_out_of_range(per_image, ranges).dropna(subset=["dice"])
    if rows.empty:
        return pd.DataFrame(columns=OUT_OF_RANGE_COLUMNS)
    images = image_level(rows, keys)
    rng = np.random.default_rng(seed)
    out = []
    for key, group in images.groupby(keys, sort=True):
        inside = group.loc[~group["outside"].astype(bool), "dice"].to_numpy(float)
        outside = group.loc[group["outside"].astype(bool), "dice"].to_numpy(float)
        drop, low, high, status = drop_with_ci(inside, outside, n_bootstrap, rng, min_cases)
        out.append(
            dict(
                zip(keys, key, strict=True),
                fbr_low=group["fbr_low"].iloc[0],
                fbr_high=group["fbr_high"].iloc[0],
                n_inside=len(inside),
                n_outside=len(outside),
                dice_inside=inside.mean() if len(inside) else np.nan,
                dice_outside=outside.mean() if len(outside) else np.nan,
                dice_drop=drop,
                ci_low=low,
                ci_high=high,
                n_bootstrap=n_bootstrap,
                status=status,
            )
        )
    return pd.DataFrame(out, columns=OUT_OF_RANGE_COLUMNS)


def _bin_codes(values: pd.Series, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile-bin codes and edges of ``values``; one degenerate bin for a single value."""
    if values.nunique() > 1:
        codes, edges = pd.qcut(values, q=n_bins, labels=False, retbins=True, duplicates="drop")
        return codes.to_numpy(dtype=int), np.asarray(edges, dtype=float)
    value = float(values.iloc[0])
    return np.zeros(len(values), dtype=int), np.array([value, value])


def dice_by_fbr_bin(per_image: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Mean Dice per (arch, patch) in quantile bins of the test images' fg_ratio.

    Bin edges are quantiles of the distinct test images' ratios per (study, dataset), shared by
    every (arch, patch) so the curves are comparable; ``n_images`` counts seed-averaged images.
    """
    test = per_image[(per_image["study"] == "context") & (per_image["split"] == "test")]
    test = test.dropna(subset=["fg_ratio", "dice"])
    if test.empty:
        return pd.DataFrame(columns=FBR_BIN_COLUMNS)
    test = _patch_text(test).assign(unit=independent_unit(test))
    frames = []
    for _, rows in test.groupby(["study", "dataset"], sort=True):
        ratios = rows.groupby("unit")["fg_ratio"].mean()
        codes, edges = _bin_codes(ratios, n_bins)
        code_of = pd.Series(codes, index=ratios.index)
        images = rows.groupby(["study", "dataset", "arch", "patch", "unit"], sort=True)
        images = images["dice"].mean().reset_index()
        bins = code_of.reindex(images["unit"]).to_numpy()
        frames.append(images.assign(fbr_bin=bins, fbr_low=edges[bins], fbr_high=edges[bins + 1]))
    images = pd.concat(frames, ignore_index=True)
    keys = ["study", "dataset", "arch", "patch", "fbr_bin", "fbr_low", "fbr_high"]
    table = images.groupby(keys, sort=True)["dice"].agg(
        n_images="size", mean_dice="mean", sd_dice="std"
    )
    return table.reset_index()[FBR_BIN_COLUMNS]
