"""Figures of the texture study: skip connections vs task complexity.

Each function takes contract-4 rows of the texture study (only the `test` split is plotted) and
writes one PNG. Facets are the blend directions; colours are architectures (`arch_palette`),
named by their display names (`segrobust.report.names`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from segrobust.contract import in_domain
from segrobust.report.names import display_name
from segrobust.report.plotting import (
    COMPLEXITY_LABEL,
    LAYOUT,
    LEGEND_WIDTH,
    Layout,
    add_arch_legend,
    arch_order,
    facet_rows,
    facet_values,
    figure_size,
    is_bottom_panel,
    mean_ci_lines,
    metric_label,
    new_figure,
    panel_grid,
    resolve_palette,
    rows_of_test_split,
    save_figure,
    wrapped_axes,
)

ALPHA_LABEL = "Blend factor α (higher = harder)"
IN_DOMAIN_COLUMNS = ("dataset", "condition")
"""What `contract.in_domain` reads."""
BOUNDED_METRICS = ("dice", "nsd", "quality")
"""Metrics in [0, 1]: their axes and colour scales span exactly that range."""


def in_domain_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows tested at the alpha the model was trained at (`contract.in_domain`), alphas numeric."""
    rows = rows[in_domain(rows).to_numpy()]
    return rows.assign(
        train_alpha=pd.to_numeric(rows["train_alpha"]), test_alpha=pd.to_numeric(rows["test_alpha"])
    )


def _direction_title(direction: object) -> str:
    return "all directions" if direction is None else f"{direction} blend"


#: Width (inches) a heatmap cell needs for its value (8 pt, "0.87") and a tick label ("0.82").
ANNOTATION_CELL_INCHES = 0.36
TICK_LABEL_INCHES = 0.34
ANNOTATION_POINTS = 8


def _bounded_ylim(ax, metric: str) -> None:
    if metric in BOUNDED_METRICS:
        ax.set_ylim(-0.02, 1.02)


def plot_texture_in_domain(
    path: str | os.PathLike,
    *,
    per_image: pd.DataFrame,
    metric: str = "dice",
    palette: Mapping[str, str] | None = None,
    layout: Layout = LAYOUT,
) -> None:
    """In-domain ``metric`` vs alpha per architecture, one panel per blend direction.

    In-domain means tested at the training alpha. Points are means over test images and seeds,
    bars their bootstrap 95% confidence interval.
    """
    rows = rows_of_test_split(
        per_image,
        [*IN_DOMAIN_COLUMNS, "direction", "train_alpha", "test_alpha", "arch", metric],
        "texture in-domain figure",
    )
    rows = in_domain_rows(rows)
    if rows.empty:
        raise ValueError("texture in-domain figure: no test rows with train_alpha == test_alpha")
    colours = resolve_palette(rows["arch"].unique(), palette)
    directions = facet_values(rows, "direction")
    nrows, ncols = panel_grid(len(directions))
    fig, axes = new_figure(nrows, ncols, layout, sharey=True)
    for i, (ax, direction) in enumerate(
        zip(wrapped_axes(axes, len(directions)), directions, strict=True)
    ):
        mean_ci_lines(ax, facet_rows(rows, "direction", direction), "test_alpha", metric, colours)
        ax.set(
            title=_direction_title(direction),
            xlabel=ALPHA_LABEL if is_bottom_panel(i, len(directions), ncols) else "",
            ylabel=metric_label(metric) if i % ncols == 0 else "",
        )
        _bounded_ylim(ax, metric)
    add_arch_legend(fig, colours, rows["arch"].unique())
    save_figure(fig, path)


def tick_step(n_labels: int, axis_inches: float, label_inches: float = TICK_LABEL_INCHES) -> int:
    """Label every n-th tick so that ``n_labels`` labels of ``label_inches`` fit ``axis_inches``."""
    return max(1, math.ceil(n_labels * label_inches / max(axis_inches, 1e-9)))


def plot_texture_heatmap(
    path: str | os.PathLike,
    *,
    per_image: pd.DataFrame,
    metric: str = "dice",
    cmap: str = "viridis",
    layout: Layout = LAYOUT,
) -> None:
    """Mean ``metric`` per (training alpha, test alpha): a panel per (architecture, blend
    direction), wrapped into rows that fit one screen, one shared colour bar.

    Cells are annotated with their value where a cell is wide enough to hold it legibly (the
    default study's 3 x 3 alphas; the paper grid's 15 x 15 are colour only), and tick labels are
    thinned to every n-th alpha where all of them would collide.
    """
    rows = rows_of_test_split(
        per_image, ["direction", "train_alpha", "test_alpha", "arch", metric], "texture heatmap"
    )
    rows = rows.assign(
        train_alpha=pd.to_numeric(rows["train_alpha"], errors="coerce"),
        test_alpha=pd.to_numeric(rows["test_alpha"], errors="coerce"),
    ).dropna(subset=["train_alpha", "test_alpha", metric])
    if rows.empty:
        raise ValueError("texture heatmap: no test rows with both a train_alpha and a test_alpha")
    panels = [(a, d) for a in arch_order(rows["arch"]) for d in facet_values(rows, "direction")]
    means = rows.groupby(["arch", "direction", "train_alpha", "test_alpha"], dropna=False)[
        metric
    ].mean()
    if metric in BOUNDED_METRICS:
        norm = Normalize(0.0, 1.0)
    else:
        norm = Normalize(float(means.min()), float(means.max()))
    nrows, ncols = panel_grid(len(panels), legend=True)  # the colour bar takes the legend's room
    fig, axes = new_figure(nrows, ncols, layout, legend=True)
    panel_inches = (figure_size(nrows, ncols, layout)[0] - LEGEND_WIDTH) / ncols
    n_alpha = max(rows["train_alpha"].nunique(), rows["test_alpha"].nunique())
    cell_inches = 0.75 * panel_inches / n_alpha  # the axes take ~3/4 of a panel
    step = tick_step(n_alpha, 0.75 * panel_inches)
    for i, (ax, (arch, direction)) in enumerate(
        zip(wrapped_axes(axes, len(panels)), panels, strict=True)
    ):
        cells = facet_rows(rows[rows["arch"] == arch], "direction", direction)
        grid = cells.pivot_table(
            index="train_alpha", columns="test_alpha", values=metric, aggfunc="mean"
        )
        title = display_name(arch) if direction is None else f"{display_name(arch)}\n{direction}"
        ax.set_title(title)
        if grid.empty:  # this arch was not trained in this direction
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no runs", ha="center", transform=ax.transAxes)
            continue
        sns.heatmap(
            grid,
            ax=ax,
            cmap=cmap,
            norm=norm,
            annot=cell_inches >= ANNOTATION_CELL_INCHES,
            fmt=".2f",
            annot_kws={"fontsize": ANNOTATION_POINTS},
            cbar=False,
            xticklabels=step,
            yticklabels=step,
        )
        ax.set(
            xlabel="Test α" if is_bottom_panel(i, len(panels), ncols) else "",
            ylabel="Training α" if i % ncols == 0 else "",
        )
        ax.set_xticklabels([f"{a:g}" for a in grid.columns[::step]], rotation=0)
        ax.set_yticklabels([f"{a:g}" for a in grid.index[::step]], rotation=0)
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=metric_label(metric), shrink=0.9
    )
    save_figure(fig, path)


def complexity_bins(complexity: pd.Series, n_bins: int) -> pd.Series:
    """The centre (median) of each value's quantile bin of ``complexity``: equal-count bins, so
    every point of a binned curve rests on the same number of images."""
    codes = pd.qcut(complexity, q=n_bins, labels=False, duplicates="drop")
    return complexity.groupby(codes).transform("median")


def plot_metric_vs_complexity(
    path: str | os.PathLike,
    *,
    per_image: pd.DataFrame,
    metric: str = "dice",
    in_domain_only: bool = True,
    n_bins: int = 5,
    palette: Mapping[str, str] | None = None,
    layout: Layout = LAYOUT,
) -> None:
    """``metric`` of each test image vs its LBP complexity, coloured by architecture, with the
    mean (and bootstrap 95% CI) per quantile bin of complexity; one panel per blend direction.

    Binned means rather than a straight-line fit: a line extrapolates above a Dice of 1 and hides
    a curve; the slope with its CI is in the analysis table ``texture_trends.csv``.
    ``in_domain_only`` keeps images tested at the model's training alpha (the papers' view);
    False plots every test condition.
    """
    needed = ["arch", "complexity", metric]
    if in_domain_only:
        needed += [*IN_DOMAIN_COLUMNS, "train_alpha", "test_alpha"]
    rows = rows_of_test_split(per_image, needed, "metric vs complexity figure")
    if in_domain_only:
        rows = in_domain_rows(rows)
    rows = rows.dropna(subset=["complexity", metric])
    if rows.empty:
        raise ValueError("metric vs complexity figure: no test rows with a complexity and a value")
    colours = resolve_palette(rows["arch"].unique(), palette)
    directions = facet_values(rows, "direction")
    nrows, ncols = panel_grid(len(directions))
    fig, axes = new_figure(nrows, ncols, layout, sharey=True)
    for i, (ax, direction) in enumerate(
        zip(wrapped_axes(axes, len(directions)), directions, strict=True)
    ):
        panel = facet_rows(rows, "direction", direction)
        sns.scatterplot(
            data=panel,
            x="complexity",
            y=metric,
            hue="arch",
            palette=colours,
            s=8,
            alpha=0.35,
            linewidth=0,
            legend=False,
            ax=ax,
        )
        binned = panel.assign(complexity=complexity_bins(panel["complexity"], n_bins))
        mean_ci_lines(ax, binned, "complexity", metric, colours)
        ax.set(
            title=_direction_title(direction),
            xlabel=COMPLEXITY_LABEL if is_bottom_panel(i, len(directions), ncols) else "",
            ylabel=metric_label(metric) if i % ncols == 0 else "",
        )
        _bounded_ylim(ax, metric)
    add_arch_legend(fig, colours, rows["arch"].unique())
    save_figure(fig, path)
