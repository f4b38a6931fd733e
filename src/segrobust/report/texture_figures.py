"""Figures of the texture study: skip connections vs task complexity.

Each function takes contract-4 rows of the texture study (only the `test` split is plotted) and
writes one PNG. Facets are the blend directions; colours are architectures (`arch_palette`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from segrobust.contract import in_domain
from segrobust.report.plotting import (
    COMPLEXITY_LABEL,
    LAYOUT,
    Layout,
    add_arch_legend,
    facet_rows,
    facet_values,
    mean_ci_lines,
    metric_label,
    new_figure,
    resolve_palette,
    rows_of_test_split,
    save_figure,
)

ALPHA_LABEL = "Blend factor alpha (higher = harder)"
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
    return "all directions" if direction is None else f"direction: {direction}"


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
    fig, panels = _direction_panels(rows, layout)
    for ax, direction, panel in panels:
        mean_ci_lines(ax, panel, "test_alpha", metric, colours)
        ax.set(title=_direction_title(direction), xlabel=ALPHA_LABEL, ylabel=metric_label(metric))
        _bounded_ylim(ax, metric)
    add_arch_legend(fig, colours, rows["arch"].unique())
    save_figure(fig, path)


def _direction_panels(rows: pd.DataFrame, layout: Layout):
    """A figure with one panel per blend direction (shared y axis), and each panel's axes,
    direction and rows."""
    directions = facet_values(rows, "direction")
    fig, axes = new_figure(1, len(directions), layout, sharey=True)
    panels = [
        (ax, direction, facet_rows(rows, "direction", direction))
        for ax, direction in zip(axes[0], directions, strict=True)
    ]
    return fig, panels


def plot_texture_heatmap(
    path: str | os.PathLike,
    *,
    per_image: pd.DataFrame,
    metric: str = "dice",
    cmap: str = "viridis",
    layout: Layout | None = None,
) -> None:
    """Mean ``metric`` per (training alpha, test alpha): a row of panels per architecture (named
    on the left), a column per blend direction (named on top), each cell annotated with its
    value, one shared colour bar.

    Without a ``layout`` the panels grow with the number of alphas so annotations stay readable.
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
    if layout is None:
        n_alpha = max(rows["train_alpha"].nunique(), rows["test_alpha"].nunique())
        layout = Layout(
            panel_width=max(LAYOUT.panel_width, 0.42 * n_alpha + 1.4),
            panel_height=max(LAYOUT.panel_height, 0.36 * n_alpha + 1.0),
        )
    archs = sorted(rows["arch"].unique())
    directions = facet_values(rows, "direction")
    means = rows.groupby(["arch", "direction", "train_alpha", "test_alpha"], dropna=False)[
        metric
    ].mean()
    if metric in BOUNDED_METRICS:
        norm = Normalize(0.0, 1.0)
    else:
        norm = Normalize(float(means.min()), float(means.max()))
    fig, axes = new_figure(len(archs), len(directions), layout, legend=False)
    for i, arch in enumerate(archs):
        for j, direction in enumerate(directions):
            cells = facet_rows(rows[rows["arch"] == arch], "direction", direction)
            grid = cells.pivot_table(
                index="train_alpha", columns="test_alpha", values=metric, aggfunc="mean"
            )
            ax = axes[i, j]
            if i == 0:
                ax.set_title(_direction_title(direction))
            if grid.empty:  # this arch was not trained in this direction
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{arch}: no runs", ha="center", transform=ax.transAxes)
                continue
            sns.heatmap(
                grid,
                ax=ax,
                cmap=cmap,
                norm=norm,
                annot=True,
                fmt=".2f",
                annot_kws={"fontsize": 7},
                cbar=False,
            )
            ax.set(
                xlabel="Test alpha" if i == len(archs) - 1 else "",
                ylabel=f"{arch}\nTraining alpha" if j == 0 else "",
            )
            ax.set_xticklabels([f"{a:g}" for a in grid.columns], rotation=0)
            ax.set_yticklabels([f"{a:g}" for a in grid.index], rotation=0)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=metric_label(metric))
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
    fig, panels = _direction_panels(rows, layout)
    for ax, direction, panel in panels:
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
            title=_direction_title(direction), xlabel=COMPLEXITY_LABEL, ylabel=metric_label(metric)
        )
        _bounded_ylim(ax, metric)
    add_arch_legend(fig, colours, rows["arch"].unique())
    save_figure(fig, path)
