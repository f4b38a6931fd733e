"""Figures of the context study: patch size trades global context against class balance.

`plot_metric_vs_patch_size` and `plot_metric_vs_test_fbr` take contract-4 rows of the context
study (only the `test` split is plotted); `plot_metric_vs_test_fbr` and `plot_training_patch_fbr`
also take the training-patch table, the concatenated ``patches.csv`` files of the runs (columns
epoch, batch, index, fg_ratio plus the run columns arch and patch). The foreground ratio of a
patch or case is its `fg_ratio`: foreground voxels / all voxels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from segrobust.analysis.aggregate import require_columns
from segrobust.report.plotting import (
    BOOTSTRAP_SEED,
    DPI,
    FG_RATIO_LABEL,
    PANEL_HEIGHT,
    PANEL_WIDTH,
    add_arch_legend,
    facet_rows,
    facet_values,
    mean_ci_lines,
    metric_label,
    new_figure,
    patch_label,
    patch_order,
    patch_text,
    resolve_palette,
    rows_of_test_split,
    save_figure,
)

PATCH_AXIS_LABEL = "Training and inference patch edge (voxels)"
TRAINING_RANGE_COLOUR = "0.85"
TRAINING_FG_RATIO_LABEL = "Training-patch foreground\nratio (fg / all voxels)"


def _with_patch_text(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(patch=df["patch"].map(patch_text))


def training_fbr_range(
    patches: pd.DataFrame, percentiles: tuple[float, float] = (5.0, 95.0)
) -> pd.DataFrame:
    """Range of the training patches' foreground ratio per patch size.

    Args:
        patches: training-patch rows with columns patch and fg_ratio (all runs of that patch
            size pooled: the sampler, not the architecture, sets the ratio).
        percentiles: lower and upper percentile; ``(0, 100)`` is the min-max range. The default
            5th-95th percentile ignores the rare extreme patches so the band shows where
            training patches typically lie.

    Returns:
        Columns patch (text), low, high; one row per patch size.
    """
    require_columns(patches, ["patch", "fg_ratio"], "training-patch foreground range")
    low, high = percentiles
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    grouped = _with_patch_text(patches).groupby("patch")["fg_ratio"]
    return pd.DataFrame(
        {"low": grouped.quantile(low / 100.0), "high": grouped.quantile(high / 100.0)}
    ).reset_index()


def plot_metric_vs_patch_size(
    df: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metric: str = "dice",
    palette: Mapping[str, str] | None = None,
    panel_width: float = PANEL_WIDTH,
    panel_height: float = PANEL_HEIGHT,
    dpi: int = DPI,
) -> None:
    """``metric`` vs patch size per architecture, one panel per training dataset. Points are
    means over test cases and seeds, bars their bootstrap 95% confidence interval."""
    rows = rows_of_test_split(df, ["dataset", "arch", "patch", metric], "patch-size figure")
    rows = _with_patch_text(rows)
    colours = resolve_palette(rows["arch"].unique(), palette)
    archs = sorted(rows["arch"].unique())
    order = patch_order(rows["patch"])
    datasets = facet_values(rows, "dataset")
    fig, axes = new_figure(
        1, len(datasets), panel_width=panel_width, panel_height=panel_height, dpi=dpi, sharey=True
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sns.pointplot(
            data=facet_rows(rows, "dataset", dataset),
            x="patch",
            y=metric,
            hue="arch",
            order=order,
            hue_order=archs,
            palette=colours,
            errorbar=("ci", 95),
            seed=BOOTSTRAP_SEED,
            dodge=0.3 if len(archs) > 1 else False,
            markersize=4,
            linewidth=1.5,
            legend=False,
            ax=ax,
        )
        ax.set(
            title="all datasets" if dataset is None else str(dataset),
            xlabel=PATCH_AXIS_LABEL,
            ylabel=metric_label(metric),
        )
        ax.set_xticks(range(len(order)), ["whole" if p == "full" else p for p in order])
    add_arch_legend(fig, colours, archs)
    save_figure(fig, path)


def plot_metric_vs_test_fbr(
    df: pd.DataFrame,
    path: str | os.PathLike,
    *,
    patches: pd.DataFrame,
    metric: str = "dice",
    n_bins: int = 5,
    percentiles: tuple[float, float] = (5.0, 95.0),
    palette: Mapping[str, str] | None = None,
    panel_width: float = PANEL_WIDTH,
    panel_height: float = PANEL_HEIGHT,
    dpi: int = DPI,
) -> None:
    """``metric`` vs the test case's foreground ratio, one panel per patch size, with the
    foreground-ratio range of that patch size's training patches shaded.

    Test cases are put in ``n_bins`` equal-width bins of foreground ratio (the same bins in every
    panel); a point is the mean over the cases and seeds of a bin, at the bin centre, with its
    bootstrap 95% confidence interval. The band is the ``percentiles`` range of the training
    patches (`training_fbr_range`; default 5th-95th percentile, ``(0, 100)`` for min-max).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    rows = rows_of_test_split(df, ["arch", "patch", "fg_ratio", metric], "test-FBR figure")
    rows = _with_patch_text(rows).dropna(subset=["fg_ratio", metric])
    if rows.empty:
        raise ValueError("test-FBR figure: no test rows with a fg_ratio and a value")
    ranges = training_fbr_range(patches, percentiles).set_index("patch")
    order = patch_order(rows["patch"])
    missing = [p for p in order if p not in ranges.index]
    if missing:
        raise ValueError(
            f"test-FBR figure: no training patches for patch sizes {missing}; "
            f"the patch table has {sorted(ranges.index)}"
        )
    bins = pd.cut(rows["fg_ratio"], bins=n_bins)
    rows = rows.assign(fbr_bin=np.array([interval.mid for interval in bins], dtype=float))
    colours = resolve_palette(rows["arch"].unique(), palette)
    fig, axes = new_figure(
        1, len(order), panel_width=panel_width, panel_height=panel_height, dpi=dpi, sharey=True
    )
    for ax, patch in zip(axes[0], order, strict=True):
        low, high = ranges.loc[patch, ["low", "high"]]
        ax.axvspan(low, high, color=TRAINING_RANGE_COLOUR, zorder=0)
        mean_ci_lines(ax, rows[rows["patch"] == patch], "fbr_bin", metric, colours)
        ax.set(title=patch_label(patch), xlabel=FG_RATIO_LABEL, ylabel=metric_label(metric))
    low, high = percentiles
    band = Patch(color=TRAINING_RANGE_COLOUR, label=f"training patches\n(pct {low:g}-{high:g})")
    add_arch_legend(fig, colours, rows["arch"].unique(), extra_handles=[band])
    save_figure(fig, path)


def plot_training_patch_fbr(
    patches: pd.DataFrame,
    path: str | os.PathLike,
    *,
    palette: Mapping[str, str] | None = None,
    panel_width: float = PANEL_WIDTH,
    panel_height: float = PANEL_HEIGHT,
    dpi: int = DPI,
) -> None:
    """Distribution of the training patches' foreground ratio per patch size and architecture
    (box plots: box = quartiles, whiskers = 5th-95th percentile, the default shaded range of
    `plot_metric_vs_test_fbr`; the many outlying patches are not drawn)."""
    require_columns(patches, ["arch", "patch", "fg_ratio"], "training-patch FBR figure")
    patches = _with_patch_text(patches).dropna(subset=["fg_ratio"])
    if patches.empty:
        raise ValueError("training-patch FBR figure: the patch table has no fg_ratio values")
    colours = resolve_palette(patches["arch"].unique(), palette)
    archs = sorted(patches["arch"].unique())
    order = patch_order(patches["patch"])
    fig, axes = new_figure(1, 1, panel_width=panel_width, panel_height=panel_height, dpi=dpi)
    ax = axes[0, 0]
    sns.boxplot(
        data=patches,
        x="patch",
        y="fg_ratio",
        hue="arch",
        order=order,
        hue_order=archs,
        palette=colours,
        whis=(5, 95),
        showfliers=False,
        legend=False,
        ax=ax,
    )
    ax.set(xlabel=PATCH_AXIS_LABEL, ylabel=TRAINING_FG_RATIO_LABEL)
    add_arch_legend(fig, colours, archs)
    save_figure(fig, path)
