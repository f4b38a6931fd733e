"""Shared plotting conventions of the report figures: backend, arch colours, layout, saving.

Every figure function of segrobust lays its panels out on a grid of fixed-size panels, so the
PNG's pixel size follows from the number of panels (``ncols * panel_width + legend`` by
``nrows * panel_height`` inches at ``dpi``), colours an architecture the same in every figure
(`arch_palette`) and writes its file atomically (`save_figure`).
"""

from __future__ import annotations

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
from segrobust.spec.architectures import ARCHITECTURES  # noqa: E402

LEGEND_WIDTH = 1.6
"""Extra figure width, inches, for the legend column on the right."""
DPI = 150
"""Default resolution, dots per inch (legible when the report is zoomed or printed)."""


@dataclass(frozen=True)
class Layout:
    """Size of one panel (inches) and the resolution: a figure's PNG has
    ``(ncols * panel_width + legend) x nrows * panel_height`` inches at ``dpi``."""

    panel_width: float = 3.2
    panel_height: float = 2.6
    dpi: int = DPI


LAYOUT = Layout()
"""The report's default layout."""

SPARE_COLOURS: tuple[str, ...] = tuple(sns.color_palette("tab10", 10).as_hex())
"""Colours for names without an architecture record (each record has its own colour)."""

METRIC_LABELS: dict[str, str] = {
    "dice": "Dice coefficient (0-1)",
    "hd": "Hausdorff distance (mm)",
    "hd95": "HD95 (mm)",
    "nsd": "Normalised surface Dice (0-1)",
    "assd": "ASSD (mm)",
    "volume_diff": "Relative volume difference (pred - true) / true",
    "quality": "Self-estimated Dice (0-1)",
}
"""Axis labels with units for the metric columns of contract 4."""

COMPLEXITY_LABEL = "LBP complexity\n(KL divergence, bits)"
FG_RATIO_LABEL = "Foreground ratio (foreground / all voxels)"

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


def arch_label(name: str) -> str:
    """How the report names an architecture: its record's display name ("No-skip U-Net"), or
    ``name`` itself where there is no record."""
    return ARCHITECTURES.get(name).display_name if name in ARCHITECTURES else name


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


def new_figure(
    nrows: int, ncols: int, layout: Layout, *, legend: bool = True, **subplot_kw: Any
) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows`` x ``ncols`` panels (always a 2D axes array) with room for a legend.

    The size follows ``layout``; the constrained layout fits labels inside it, so the PNG has
    exactly that many pixels.
    """
    width = ncols * layout.panel_width + (LEGEND_WIDTH if legend else 0.0)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width, nrows * layout.panel_height),
        dpi=layout.dpi,
        squeeze=False,
        layout="constrained",
        **subplot_kw,
    )
    return fig, axes


def add_arch_legend(
    fig: plt.Figure,
    palette: Mapping[str, str],
    archs: Iterable[str],
    extra_handles: Sequence[Artist] = (),
) -> None:
    """One legend for the whole figure, outside the panels on the right: an entry per arch, then
    ``extra_handles`` (e.g. a shaded range)."""
    handles = [
        Line2D([], [], color=palette[a], marker="o", linestyle="-", label=arch_label(a))
        for a in sorted(archs)
    ]
    fig.legend(
        handles=[*handles, *extra_handles],
        title="architecture",
        loc="outside right upper",
        frameon=False,
        fontsize="small",
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


def save_figure(fig: plt.Figure, path: str | os.PathLike, *, tight: bool = False) -> None:
    """Write ``fig`` as PNG to ``path`` atomically and close it.

    The PNG has the figure's size at its dpi, unless ``tight`` crops it to what was drawn (for
    figures whose text stands outside the axes). The figure is closed even when writing fails,
    so a failed plot leaks no memory in a long Snakemake job, and a failed write leaves no
    partial file behind.
    """
    try:
        with atomic.atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight" if tight else None)
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
