"""Shared plotting conventions of the report figures: backend, fonts, arch colours and names,
a layout that fits one screen, saving with a legibility check.

Every figure is sized for the report as it shows it (`segrobust.report.display`: one figure inch
= 96 CSS px): at most `display.MAX_FIGURE_WIDTH_IN` wide (the page's text column, so it is never
scaled down and its fonts stay as set here, >= 12 px) and `display.MAX_FIGURE_HEIGHT_IN` tall (one
screen with the caption). Panels take their preferred size (`Layout`) and shrink to fit, down to
`MIN_PANEL_WIDTH` x `MIN_PANEL_HEIGHT`; `panel_grid` wraps many panels into rows so they fit. A
grid beyond what fits at that minimum (more than 4 x 4 panels with a legend) grows past one
screen rather than become unreadable; the legibility check then says so in the job log.
`save_figure` writes the PNG atomically after `legibility.warn_if_illegible` has checked every
drawn text (clipped, overlapping, too small).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, also on a headless cluster node

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from segrobust import atomic  # noqa: E402
from segrobust.analysis.aggregate import require_columns, select_split  # noqa: E402
from segrobust.report.display import DPI, MAX_FIGURE_HEIGHT_IN, MAX_FIGURE_WIDTH_IN  # noqa: E402
from segrobust.report.legibility import warn_if_illegible  # noqa: E402
from segrobust.report.names import display_name  # noqa: E402
from segrobust.spec.architectures import ARCHITECTURES  # noqa: E402

REPORT_STYLE: dict[str, Any] = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9.5,
    "figure.titlesize": 11,
}
"""Font sizes (points) of every report figure: 9 pt is 12 CSS px as the report shows figures,
above the 10 px floor of `display.MIN_FONT_PX`."""
matplotlib.rcParams.update(REPORT_STYLE)

LEGEND_WIDTH = 1.7
"""Extra figure width, inches, for the legend column on the right (the longest display name,
"Attention U-Net", with its marker)."""
MIN_PANEL_WIDTH = 2.2
MIN_PANEL_HEIGHT = 1.8
"""Smallest panel (inches) that still holds its tick labels, axis labels and title legibly."""


@dataclass(frozen=True)
class Layout:
    """Preferred size of one panel (inches, as shown: 1 in = 96 CSS px) and the PNG resolution.

    Panels shrink below the preferred size (down to `MIN_PANEL_WIDTH` x `MIN_PANEL_HEIGHT`) when
    the grid would not fit one screen otherwise; ``dpi`` changes only the PNG's sharpness.
    """

    panel_width: float = 3.0
    panel_height: float = 2.4
    dpi: int = DPI


LAYOUT = Layout()
"""The report's default layout."""

SPARE_COLOURS: tuple[str, ...] = tuple(sns.color_palette("tab10", 10).as_hex())
"""Colours for names without an architecture record (each record has its own colour)."""

METRIC_LABELS: dict[str, str] = {
    "dice": "Dice (0-1)",
    "hd": "Hausdorff distance (mm)",
    "hd95": "HD95 (mm)",
    "nsd": "Normalised surface Dice (0-1)",
    "assd": "ASSD (mm)",
    "volume_diff": "Relative volume difference",
    "quality": "Self-estimated Dice (0-1)",
}
"""Axis labels with units for the metric columns of contract 4 (short: a panel is ~2.5 in)."""

COMPLEXITY_LABEL = "LBP complexity (bits)"
FG_RATIO_LABEL = "Foreground ratio (fg / all voxels)"

BOOTSTRAP_SEED = 0
"""Seed of seaborn's bootstrap confidence intervals, so a figure is identical run to run."""


def metric_label(metric: str) -> str:
    """Axis label of a metric column (with units), or an error naming the allowed metrics."""
    try:
        return METRIC_LABELS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; allowed: {sorted(METRIC_LABELS)}") from None


def arch_palette(archs: Iterable[str]) -> dict[str, str]:
    """Colour per architecture name, the same in every figure.

    A registered architecture always has its record's colour (``segrobust.spec.architectures``)
    whatever else is plotted. Other names share the remaining colours in sorted order, so they
    are consistent between figures drawn from the same set of names: pass the config's full list
    of architectures as ``palette=arch_palette(all_archs)`` to make it hold across studies.
    """
    names = sorted(set(archs))
    palette = {a: ARCHITECTURES.get(a).colour for a in names if a in ARCHITECTURES}
    spare = [c for c in SPARE_COLOURS if c not in palette.values()]
    others = [a for a in names if a not in ARCHITECTURES]
    extra = sns.color_palette("husl", max(len(others) - len(spare), 0)).as_hex()
    palette.update(zip(others, spare + extra, strict=False))
    return palette


def rows_of_test_split(df: pd.DataFrame, columns: Sequence[str], what: str) -> pd.DataFrame:
    """The test-split rows of a contract-4 table, after checking it has ``columns``."""
    require_columns(df, ["split", *columns], what)
    return select_split(df, "test")


def facet_values(df: pd.DataFrame, column: str) -> list[Any]:
    """Sorted distinct non-missing values of ``column``; ``[None]`` (one facet) if none."""
    if column not in df.columns:
        return [None]
    values = sorted(df[column].dropna().unique())
    return values or [None]


def facet_rows(df: pd.DataFrame, column: str, value: Any) -> pd.DataFrame:
    """Rows of one facet (all rows for the single ``None`` facet of `facet_values`)."""
    return df if value is None else df[df[column] == value]


def patch_order(patches: Iterable[str]) -> list[str]:
    """Distinct patch sizes (text, as in the tables), numeric ones ascending, then others
    (``full``)."""

    def key(p: str) -> tuple[int, float, str]:
        try:
            return (0, float(p), p)
        except ValueError:
            return (1, 0.0, p)

    return sorted(set(map(str, patches)), key=key)


def patch_label(patch: str) -> str:
    """Readable patch size: ``64`` -> ``64³ voxels``, ``full`` -> ``whole image``."""
    return "whole image" if patch == "full" else f"patch {patch}³ voxels"


def panel_grid(n_panels: int, *, legend: bool = True, max_columns: int | None = None):
    """(rows, columns) that wrap ``n_panels`` panels into the fewest rows whose panels stay at
    least `MIN_PANEL_WIDTH` wide within the page's text column (and at most ``max_columns``
    per row), the rows filled as evenly as that allows."""
    room = MAX_FIGURE_WIDTH_IN - (LEGEND_WIDTH if legend else 0.0)
    fitting = max(1, math.floor(room / MIN_PANEL_WIDTH + 1e-9))
    widest = max(1, min(n_panels, fitting, max_columns or n_panels))
    nrows = -(-n_panels // widest)
    return nrows, -(-n_panels // nrows)  # rows as even as the fewest rows allow: 5 -> 3 + 2


def figure_size(nrows: int, ncols: int, layout: Layout, *, legend: bool = True):
    """(width, height) in inches of a ``nrows`` x ``ncols`` grid: preferred panels, shrunk to fit
    one screen, never below the minimum panel (see the module docstring)."""
    legend_width = LEGEND_WIDTH if legend else 0.0
    fit_width = (MAX_FIGURE_WIDTH_IN - legend_width) / ncols
    fit_height = MAX_FIGURE_HEIGHT_IN / nrows
    panel_width = max(min(layout.panel_width, fit_width), MIN_PANEL_WIDTH)
    panel_height = max(min(layout.panel_height, fit_height), MIN_PANEL_HEIGHT)
    return ncols * panel_width + legend_width, nrows * panel_height


def new_figure(
    nrows: int, ncols: int, layout: Layout = LAYOUT, *, legend: bool = True, **subplot_kw: Any
) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows`` x ``ncols`` panels (always a 2D axes array) with room for a legend,
    sized by `figure_size`; the constrained layout fits labels inside it."""
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=figure_size(nrows, ncols, layout, legend=legend),
        dpi=layout.dpi,
        squeeze=False,
        layout="constrained",
        **subplot_kw,
    )
    return fig, axes


def wrapped_axes(axes: np.ndarray, n_panels: int) -> list[plt.Axes]:
    """The first ``n_panels`` axes of a wrapped grid, row by row; the spare ones are hidden."""
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_axis_off()
    return flat[:n_panels]


def is_bottom_panel(index: int, n_panels: int, ncols: int) -> bool:
    """Whether panel ``index`` of a wrapped grid has no panel below it (it shows the x label)."""
    return index + ncols >= n_panels


def arch_order(archs: Iterable[str]) -> list[str]:
    """Registered architectures in their records' order (the papers'), then other names sorted:
    the legend's order."""
    names, known = set(archs), ARCHITECTURES.in_order()
    return [a for a in known if a in names] + sorted(names - set(known))


def add_arch_legend(
    fig: plt.Figure,
    palette: Mapping[str, str],
    archs: Iterable[str],
    extra_handles: Sequence[Artist] = (),
) -> None:
    """One legend for the whole figure, outside the panels on the right: an entry per arch (its
    display name), then ``extra_handles`` (e.g. a shaded range)."""
    handles = [
        Line2D([], [], color=palette[a], marker="o", linestyle="-", label=display_name(a))
        for a in arch_order(archs)
    ]
    fig.legend(
        handles=[*handles, *extra_handles],
        title="architecture",
        loc="outside right upper",
        frameon=False,
    )


def resolve_palette(archs: Iterable[str], palette: Mapping[str, str] | None) -> dict[str, str]:
    """``palette`` if given (checked to cover every arch), else `arch_palette` of ``archs``."""
    archs = set(archs)
    if palette is None:
        return arch_palette(archs)
    missing = sorted(archs - set(palette))
    if missing:
        raise ValueError(f"palette has no colour for architectures {missing}")
    return dict(palette)


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Check ``fig``'s text (`legibility.warn_if_illegible`: a warning per problem, naming the
    file), then write it as PNG to ``path`` atomically and close it.

    The figure is closed even when writing fails, so a failed plot leaks no memory in a long
    Snakemake job, and a failed write leaves no partial file behind.
    """
    try:
        warn_if_illegible(fig, os.fspath(path))
        with atomic.atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=fig.dpi)
    finally:
        plt.close(fig)


def mean_ci_lines(
    ax: plt.Axes, rows: pd.DataFrame, x: str, metric: str, colours: Mapping[str, str]
) -> None:
    """One line per architecture: mean ``metric`` per ``x`` with 95% bootstrap CI bars (fixed
    seed, so figures are identical run to run); the legend is drawn once per figure elsewhere."""
    sns.lineplot(
        data=rows,
        x=x,
        y=metric,
        hue="arch",
        palette=colours,
        errorbar=("ci", 95),
        err_style="bars",
        seed=BOOTSTRAP_SEED,
        marker="o",
        legend=False,
        ax=ax,
    )
