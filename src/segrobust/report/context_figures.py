"""Figures of the context study: patch size trades global context against class balance.

`plot_metric_vs_patch_size` draws the context study's per-image rows (test split);
`plot_metric_vs_test_fbr` and `plot_training_patch_fbr` draw what the analysis computed once: the
training patches' foreground-ratio range per patch size (``context_fbr_range.csv``) and the mean
Dice per quantile bin of the test cases' foreground ratio (``context_fbr_bins.csv``). The
foreground ratio of a patch or case is its `fg_ratio`: foreground voxels / all voxels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from segrobust.analysis.aggregate import require_columns
from segrobust.report.plotting import (
    BOOTSTRAP_SEED,
    FG_RATIO_LABEL,
    LAYOUT,
    Layout,
    add_arch_legend,
    arch_order,
    facet_rows,
    facet_values,
    is_bottom_panel,
    metric_label,
    new_figure,
    panel_grid,
    patch_label,
    patch_order,
    resolve_palette,
    rows_of_test_split,
    save_figure,
    wrapped_axes,
)

PATCH_AXIS_LABEL = "Patch edge (voxels)"
TRAINING_RANGE_COLOUR = "0.85"
TRAINING_FG_RATIO_LABEL = "Training-patch foreground\nratio (fg / all voxels)"


def _range_label(ranges: pd.DataFrame) -> str:
    """The legend text of the training range: which quantiles it spans."""
    low, high = ranges[["quantile_low", "quantile_high"]].iloc[0]
    return f"training patches\n({100 * low:g}th-{100 * high:g}th pct)"


# Every figure function takes the same keywords (the output path, its tables by name, palette,
# layout): report.figures calls them alike, so their signatures repeat here and in the texture
# and perturbation figures (`duplicates` pairs them).
def plot_metric_vs_patch_size(
    path: str | os.PathLike,
    *,
    per_image: pd.DataFrame,
    metric: str = "dice",
    palette: Mapping[str, str] | None = None,
    layout: Layout = LAYOUT,
) -> None:
    """``metric`` vs patch size per architecture, one panel per training dataset. Points are
    means over test cases and seeds, bars their bootstrap 95% confidence interval."""
    rows = rows_of_test_split(per_image, ["dataset", "arch", "patch", metric], "patch-size figure")
    colours = resolve_palette(rows["arch"].unique(), palette)
    archs = arch_order(rows["arch"])
    order = patch_order(rows["patch"])
    datasets = facet_values(rows, "dataset")
    nrows, ncols = panel_grid(len(datasets))
    fig, axes = new_figure(nrows, ncols, layout, sharey=True)
    placed = zip(wrapped_axes(axes, len(datasets)), datasets, strict=True)
    for i, (ax, dataset) in enumerate(placed):
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
            xlabel=PATCH_AXIS_LABEL if is_bottom_panel(i, len(datasets), ncols) else "",
            ylabel=metric_label(metric) if i % ncols == 0 else "",
        )
        ax.set_xticks(range(len(order)), ["whole" if p == "full" else p for p in order])
    add_arch_legend(fig, colours, archs)
    save_figure(fig, path)


def log_ticks(ax, low: float, high: float) -> None:
    """Labelled ticks on a logarithmic x axis from ``low`` to ``high`` that never collide: powers
    of ten when the data span two decades or more, else 1-2-5 steps, as plain numbers (0.002),
    and no labels on the minor ticks (matplotlib labels them when few decades are shown, which
    is where its labels run into each other)."""
    decades = np.log10(high / low) if low > 0 and high > low else 0.0
    ax.xaxis.set_major_locator(
        LogLocator(base=10, subs=(1.0,) if decades >= 2 else (1.0, 2.0, 5.0))
    )
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_metric_vs_test_fbr(
    path: str | os.PathLike,
    *,
    context_fbr_range: pd.DataFrame,
    context_fbr_bins: pd.DataFrame,
    palette: Mapping[str, str] | None = None,
    layout: Layout = LAYOUT,
) -> None:
    """Mean Dice vs the test case's foreground ratio, one panel per patch size, with the
    training patches' foreground-ratio range of that patch size shaded.

    A point is the mean Dice of a quantile bin of test cases (placed at the bin's centre, the
    same bins as ``context_fbr_bins.csv``) with its normal 95% interval (1.96 sd / sqrt(n));
    the band is the range of ``context_fbr_range.csv``. The foreground-ratio axis is
    logarithmic: test cases span decades (a sphere's volume grows with the radius cubed).
    """
    require_columns(
        context_fbr_bins,
        ["dataset", "arch", "patch", "fbr_low", "fbr_high", "n_images", "mean_dice", "sd_dice"],
        "test-FBR figure",
    )
    require_columns(
        context_fbr_range, ["dataset", "patch", "fbr_low", "fbr_high"], "test-FBR figure"
    )
    bins = context_fbr_bins.dropna(subset=["mean_dice"])
    if bins.empty:
        raise ValueError("test-FBR figure: no binned test cases (context_fbr_bins.csv is empty)")
    order = patch_order(bins["patch"])
    ranges = context_fbr_range.groupby("patch")[["fbr_low", "fbr_high"]].mean()
    missing = [p for p in order if p not in ranges.index]
    if missing:
        raise ValueError(
            f"test-FBR figure: no training range for patch sizes {missing}; "
            f"context_fbr_range.csv has {sorted(ranges.index)}"
        )
    colours = resolve_palette(bins["arch"].unique(), palette)
    nrows, ncols = panel_grid(len(order))
    fig, axes = new_figure(nrows, ncols, layout, sharey=True)
    span = np.concatenate([bins["fbr_low"], bins["fbr_high"], ranges.to_numpy().ravel()])
    span = span[np.isfinite(span) & (span > 0)]
    for i, (ax, patch) in enumerate(zip(wrapped_axes(axes, len(order)), order, strict=True)):
        ax.axvspan(*ranges.loc[patch, ["fbr_low", "fbr_high"]], color=TRAINING_RANGE_COLOUR)
        for arch, part in bins[bins["patch"] == patch].groupby("arch", sort=True):
            part = part.sort_values("fbr_low")
            centre = (part["fbr_low"] + part["fbr_high"]) / 2
            half = 1.96 * part["sd_dice"].fillna(0) / np.sqrt(part["n_images"])
            ax.errorbar(
                centre, part["mean_dice"], yerr=half, color=colours[arch], marker="o", ms=4,
                capsize=2, lw=1.2,
            )  # fmt: skip
        ax.set_xscale("log")  # small test spheres sit decades below the training range
        if span.size:
            log_ticks(ax, float(span.min()), float(span.max()))
        ax.set(
            title=patch_label(patch),
            xlabel=FG_RATIO_LABEL if is_bottom_panel(i, len(order), ncols) else "",
            ylabel=metric_label("dice") if i % ncols == 0 else "",
        )
    band = Patch(color=TRAINING_RANGE_COLOUR, label=_range_label(context_fbr_range))
    add_arch_legend(fig, colours, bins["arch"].unique(), extra_handles=[band])
    save_figure(fig, path)


def plot_training_patch_fbr(
    path: str | os.PathLike,
    *,
    patches: pd.DataFrame,
    context_fbr_range: pd.DataFrame,
    palette: Mapping[str, str] | None = None,
    layout: Layout = LAYOUT,
) -> None:
    """Distribution of the training patches' foreground ratio per patch size and architecture
    (box: quartiles; whiskers: the quantiles of the training range in ``context_fbr_range.csv``,
    the band of `plot_metric_vs_test_fbr`; the many outlying patches are not drawn)."""
    require_columns(patches, ["arch", "patch", "fg_ratio"], "training-patch FBR figure")
    patches = patches.dropna(subset=["fg_ratio"])
    if patches.empty:
        raise ValueError("training-patch FBR figure: the patch table has no fg_ratio values")
    low, high = context_fbr_range[["quantile_low", "quantile_high"]].iloc[0]
    colours = resolve_palette(patches["arch"].unique(), palette)
    archs = arch_order(patches["arch"])
    fig, axes = new_figure(1, 1, layout)
    ax = axes[0, 0]
    sns.boxplot(
        data=patches,
        x="patch",
        y="fg_ratio",
        hue="arch",
        order=patch_order(patches["patch"]),
        hue_order=archs,
        palette=colours,
        whis=(100 * low, 100 * high),
        showfliers=False,
        legend=False,
        ax=ax,
    )
    ax.set(xlabel=PATCH_AXIS_LABEL, ylabel=TRAINING_FG_RATIO_LABEL)
    add_arch_legend(fig, colours, archs)
    save_figure(fig, path)
