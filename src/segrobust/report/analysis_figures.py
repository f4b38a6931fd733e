"""Figures of the analysis tables: critical-difference diagrams and conformal coverage.

The analysis stage computes (``friedman.csv``, ``coverage.csv``); these functions only draw, with
the report's conventions (`segrobust.report.plotting`: one colour per architecture in every
figure, display names, a size that fits one screen, atomic PNG writes after the legibility
check). A critical-difference diagram is drawn only for a study where the Friedman test ran
(`friedman_ran`); every other study gets one line saying why it is not drawn.
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from segrobust.report.display import DPI, MAX_FIGURE_WIDTH_IN
from segrobust.report.names import display_name, perturbation_display_name
from segrobust.report.plotting import (
    LEGEND_WIDTH,
    Layout,
    add_arch_legend,
    arch_order,
    new_figure,
    resolve_palette,
    save_figure,
)

#: Height (inches) of a study's line saying why its diagram is not drawn, and of one rank level.
NOTE_ROW_INCHES = 0.45
CD_LEVEL_INCHES = 0.3
#: Space (px) kept between a name of the diagram and the edge of its panel.
NAME_MARGIN_PX = 6
#: Height (inches) per test condition of the coverage figure: one 12 px label and a gap. The
#: figure grows with the conditions rather than squeeze their names together (the paper grid's
#: 51 perturbation conditions make it taller than one screen).
COVERAGE_ROW_INCHES = 0.17


def insignificant_groups(avg_ranks: pd.Series, cd: float) -> list[tuple[int, int]]:
    """Maximal runs (start, end) of rank-sorted entries whose rank spread is below ``cd``.

    These are the cliques joined by a bar in Demsar's diagram; runs of one are omitted, as are
    runs contained in a longer one.
    """
    ranks = avg_ranks.sort_values().to_numpy()
    groups = []
    for start in range(len(ranks)):
        end = start
        while end + 1 < len(ranks) and ranks[end + 1] - ranks[start] < cd:
            end += 1
        if end > start and not any(s <= start and end <= e for s, e in groups):
            groups.append((start, end))
    return groups


def friedman_ran(rows: pd.DataFrame) -> tuple[bool, str]:
    """Whether a study's Friedman test ran (so its critical-difference diagram means something),
    and if not why, from its rows of ``friedman.csv``.

    ``cd_applicable`` says whether it ran; ``status`` says why not ("not applicable: the blocks
    share trained models", "not computable: ..."). This is the one place that reads them.
    """
    first = rows.iloc[0]
    if bool(first["cd_applicable"]):
        return True, ""
    status = str(first["status"])
    return False, status.removeprefix("not computable: ").removeprefix("not applicable: ")


def _fit_names_inside(ax, names: list, low: float, high: float) -> None:
    """Widen the rank axis's x limits so the names beside it fall inside the axes (Demsar's
    layout puts them left and right of the rank scale; their width is known only once drawn).

    A right-aligned name ends at ``low - 0.4``, a left-aligned one starts at ``high + 0.4``; with
    the widest of each (``left``, ``right`` px, plus a margin) the data span must satisfy
    ``span = core + (left + right) * span / axes_px``, so ``span = core / (1 - share)``.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes_px = max(ax.get_window_extent(renderer).width, 1.0)

    def widest(alignment: str) -> float:
        widths = [t.get_window_extent(renderer).width for t in names if t.get_ha() == alignment]
        return max(widths, default=0.0) + NAME_MARGIN_PX

    left, right = widest("right"), widest("left")
    core = (high + 0.4) - (low - 0.4)
    span = core / max(1.0 - (left + right) / axes_px, 0.1)
    ax.set_xlim(low - 0.4 - span * left / axes_px, high + 0.4 + span * right / axes_px)


def draw_cd(ax, avg_ranks: pd.Series, cd: float, title: str | None = None) -> None:
    """Demsar's layout on ``ax``: rank axis (1 left), names on elbows (in the architecture's
    colour, by display name), CD bar, clique bars; the names are kept inside the axes."""
    ranks = avg_ranks.sort_values()
    colours = resolve_palette(ranks.index, None)
    k = len(ranks)
    low, high = 1, max(k, 2)
    half = (k + 1) // 2
    ax.set_ylim(-(half + 0.8), 2.3)
    ax.hlines(0, low, high, color="black", lw=1)
    for tick in range(low, high + 1):
        ax.vlines(tick, 0, 0.15, color="black", lw=1)
        ax.text(tick, 0.3, str(tick), ha="center", va="bottom")
    if np.isfinite(cd):
        ax.hlines(1.3, low, low + cd, color="black", lw=1.5)
        ax.vlines([low, low + cd], 1.2, 1.4, color="black", lw=1.5)
        ax.text(low + cd / 2, 1.5, f"CD = {cd:.2f}", ha="center", va="bottom")
    names = []
    for i, (name, rank) in enumerate(ranks.items()):
        left = i < half
        level = -(i + 1) if left else -(k - i)
        x_text = low - 0.4 if left else high + 0.4
        ax.plot([rank, rank, x_text], [0, level, level], color="black", lw=0.8)
        names.append(
            ax.text(
                x_text,
                level,
                f"{display_name(name)} ({rank:.2f})",
                ha="right" if left else "left",
                va="center",
                color=colours[name],
            )
        )
    positions = ranks.to_numpy()
    for j, (start, end) in enumerate(insignificant_groups(ranks, cd) if np.isfinite(cd) else []):
        y = -0.35 - 0.25 * j
        ax.hlines(y, positions[start] - 0.05, positions[end] + 0.05, color="tab:red", lw=3)
    ax.axis("off")
    if title:
        ax.set_title(title)
    _fit_names_inside(ax, names, low, high)


def _cd_rows(friedman: pd.DataFrame) -> list[tuple[str, pd.Series | None, float, str]]:
    """Per study with ranked architectures: (title, average ranks or None when the diagram is
    not drawn, critical difference, why not drawn)."""
    out = []
    for study, rows in friedman.groupby("study", sort=True):
        first = rows.iloc[0]
        ran, why = friedman_ran(rows)
        if not ran or len(rows) < 2:
            out.append((study, None, np.nan, why or "fewer than two architectures ranked"))
            continue
        title = f"{study}: Friedman p = {first['p_value']:.3g}, N = {first['n_blocks']} blocks"
        out.append(
            (title, rows.set_index("arch")["average_rank"], first["critical_difference"], "")
        )
    return out


def _message_figure(path: str | os.PathLike, message: str, dpi: int) -> None:
    """A one-panel figure holding only ``message``, wrapped to its width."""
    lines = textwrap.wrap(message, 90)
    fig, axes = new_figure(1, 1, Layout(dpi=dpi), legend=False)
    fig.set_size_inches(8.0, 0.3 + 0.22 * len(lines))
    axes[0, 0].text(0.5, 0.5, "\n".join(lines), ha="center", va="center")
    axes[0, 0].set_axis_off()
    save_figure(fig, path)


def plot_critical_difference(
    path: str | os.PathLike, *, friedman: pd.DataFrame, dpi: int = DPI
) -> None:
    """Demsar's critical-difference diagram per study from ``friedman.csv`` (average ranks and
    the Nemenyi critical difference over the study's test-set blocks), only where the Friedman
    test ran; a study where it did not gets one line "not drawn: <why>" instead of a diagram
    whose bars would mean nothing."""
    rows = _cd_rows(friedman)
    if not any(ranks is not None for _, ranks, _, _ in rows):
        reasons = "; ".join(f"{study}: {why}" for study, _, _, why in rows)
        _message_figure(
            path,
            "Critical-difference diagram not drawn: "
            + (reasons or "no study ranked two or more architectures on common test sets")
            + ".",
            dpi,
        )
        return
    heights = [
        NOTE_ROW_INCHES if ranks is None else 1.0 + CD_LEVEL_INCHES * ((len(ranks) + 1) // 2)
        for _, ranks, _, _ in rows
    ]
    fig, axes = new_figure(
        len(rows), 1, Layout(MAX_FIGURE_WIDTH_IN, 1.0, dpi), legend=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    fig.set_size_inches(MAX_FIGURE_WIDTH_IN, sum(heights))
    for ax, (title, ranks, cd, why) in zip(axes[:, 0], rows, strict=True):
        if ranks is None:
            ax.set_axis_off()
            ax.text(0.0, 0.5, f"{title}: no critical-difference diagram: the Friedman test did "
                    f"not run ({why})", ha="left", va="center", transform=ax.transAxes)  # fmt: skip
        else:
            draw_cd(ax, ranks, cd, title)
    save_figure(fig, path)


def condition_label(condition: str, perturbation: object, severity: object) -> str:
    """A test condition as a reader names it: ``background α 0.5`` (texture test set),
    ``speckle noise 3`` (perturbation at a severity), ``clean``."""
    if str(condition).startswith("texture-"):
        _, direction, alpha = str(condition).split("-", 2)
        return f"{direction} α {alpha}"
    if isinstance(perturbation, str) and perturbation not in ("", "none"):
        return f"{perturbation_display_name(perturbation)} {int(float(severity))}"
    return str(condition)


def plot_coverage(path: str | os.PathLike, *, coverage: pd.DataFrame, dpi: int = DPI) -> None:
    """Empirical coverage of the conformal Dice bound per test condition: a panel per study, a
    row per condition (names read horizontally), one point per model run (colour:
    architecture) with its Clopper-Pearson 95% interval over that run's independent test images,
    and the 1 - alpha target as a dashed line named in the legend (not written over the data).

    Runs whose bound is undefined (too few calibration images) have no coverage and are not
    drawn; when no run has a bound the figure says so instead of showing a flat line at 1.
    """
    rows = coverage.dropna(subset=["coverage"]) if not coverage.empty else coverage
    if rows.empty:
        _message_figure(
            path,
            "No defined conformal Dice bound (too few calibration images or no test rows): "
            "coverage not assessed.",
            dpi,
        )
        return
    rows = rows.assign(
        label=[
            condition_label(c, p, s)
            for c, p, s in zip(
                rows["condition"], rows["perturbation"], rows["severity"], strict=True
            )
        ]  # fmt: skip
    )
    studies = sorted(rows["study"].unique())
    archs = arch_order(rows["arch"])
    colours = resolve_palette(archs, None)
    orders = {
        study: list(dict.fromkeys(part.sort_values(["severity", "condition"])["label"]))
        for study, part in rows.groupby("study")
    }
    tallest = max(len(order) for order in orders.values())
    width = (MAX_FIGURE_WIDTH_IN - LEGEND_WIDTH) / len(studies)
    fig, axes = new_figure(1, len(studies), Layout(min(width, 3.6), 1.0, dpi))
    fig.set_size_inches(fig.get_size_inches()[0], 1.0 + COVERAGE_ROW_INCHES * tallest)
    spread = np.linspace(-0.25, 0.25, len(archs)) if len(archs) > 1 else [0.0]
    offsets = dict(zip(archs, spread, strict=True))
    low = min(0.0, float(rows["coverage_ci_low"].min())) - 0.02
    target = float(rows["target"].iloc[0])
    for i, (ax, study) in enumerate(zip(axes[0], studies, strict=True)):
        order = orders[study]
        for arch, part in rows[rows["study"] == study].groupby("arch", sort=True):
            y = part["label"].map(order.index).to_numpy() + offsets[arch]
            ax.errorbar(
                part["coverage"], y,
                xerr=[part["coverage"] - part["coverage_ci_low"],
                      part["coverage_ci_high"] - part["coverage"]],
                fmt="o", color=colours[arch], ms=3.5, capsize=2, lw=1,
            )  # fmt: skip
        ax.axvline(target, color="black", ls="--", lw=1)
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(len(order) - 0.5, -0.5)  # first condition on top
        ax.set(title=f"{study} study", xlim=(low, 1.02), xlabel="P(Dice >= bound)")
        ax.set_ylabel("Test condition" if i == 0 else "")
    target_line = Line2D([], [], color="black", ls="--", lw=1, label=f"target {target:.2f}")
    add_arch_legend(fig, colours, archs, extra_handles=[target_line])
    save_figure(fig, path)
