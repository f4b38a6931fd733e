"""Figures of the analysis tables: critical-difference diagrams and conformal coverage.

The analysis stage computes (``friedman.csv``, ``coverage.csv``); these functions only draw, with
the report's conventions (`segrobust.report.plotting`: one colour per architecture in every
figure, atomic PNG writes).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from segrobust.report.plotting import (
    DPI,
    Layout,
    add_arch_legend,
    arch_label,
    new_figure,
    resolve_palette,
    save_figure,
)


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


def draw_cd(ax, avg_ranks: pd.Series, cd: float, title: str | None = None) -> None:
    """Demsar's layout on ``ax``: rank axis (1 left), names on elbows (in the architecture's
    colour), CD bar, clique bars."""
    ranks = avg_ranks.sort_values()
    colours = resolve_palette(ranks.index, None)
    k = len(ranks)
    low, high = 1, max(k, 2)
    ax.set_xlim(low - 0.5, high + 0.5)
    half = (k + 1) // 2
    ax.set_ylim(-(half + 1.5), 2.2)
    ax.hlines(0, low, high, color="black", lw=1)
    for tick in range(low, high + 1):
        ax.vlines(tick, 0, 0.15, color="black", lw=1)
        ax.text(tick, 0.3, str(tick), ha="center", va="bottom", fontsize=9)
    if np.isfinite(cd):
        ax.hlines(1.3, low, low + cd, color="black", lw=1.5)
        ax.vlines([low, low + cd], 1.2, 1.4, color="black", lw=1.5)
        ax.text(low + cd / 2, 1.5, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, (name, rank) in enumerate(ranks.items()):
        left = i < half
        level = -(i + 1) if left else -(k - i)
        x_text = low - 0.4 if left else high + 0.4
        ax.plot([rank, rank, x_text], [0, level, level], color="black", lw=0.8)
        ax.text(
            x_text,
            level,
            f"{arch_label(name)} ({rank:.2f})",
            ha="right" if left else "left",
            va="center",
            fontsize=9,
            color=colours[name],
        )
    positions = ranks.to_numpy()
    for j, (start, end) in enumerate(insignificant_groups(ranks, cd) if np.isfinite(cd) else []):
        y = -0.35 - 0.25 * j
        ax.hlines(y, positions[start] - 0.05, positions[end] + 0.05, color="tab:red", lw=3)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)


def _cd_panels(friedman: pd.DataFrame) -> list[tuple[str, pd.Series, float]]:
    """(title, average ranks, critical difference) per study with >= 2 ranked architectures."""
    panels = []
    for study, rows in friedman.groupby("study", sort=True):
        if len(rows) < 2:
            continue
        first = rows.iloc[0]
        if first["status"] == "computed":
            test = f"Friedman p = {first['p_value']:.3g}"
        else:
            test = f"Friedman {first['status']}"
        title = f"{study}: {test}, N = {first['n_blocks']} test-set blocks"
        panels.append((title, rows.set_index("arch")["average_rank"], first["critical_difference"]))
    return panels


def _message_figure(path: str | os.PathLike, message: str, dpi: int) -> None:
    fig, axes = new_figure(1, 1, Layout(6.0, 1.2, dpi), legend=False)
    axes[0, 0].text(0.5, 0.5, message, ha="center", va="center")
    axes[0, 0].set_axis_off()
    save_figure(fig, path)


def plot_critical_difference(
    path: str | os.PathLike, *, friedman: pd.DataFrame, dpi: int = DPI
) -> None:
    """Demsar's critical-difference diagram per study from ``friedman.csv`` (average ranks and
    the Nemenyi critical difference over the study's test-set blocks)."""
    panels = _cd_panels(friedman)
    if not panels:
        _message_figure(path, "No study ranked two or more architectures on common test sets.", dpi)
        return
    heights = [1.2 + 0.4 * ((len(ranks) + 1) // 2) for _, ranks, _ in panels]
    fig, axes = new_figure(
        len(panels), 1, Layout(7.0, 1.0, dpi), legend=False, gridspec_kw={"height_ratios": heights}
    )
    fig.set_figheight(sum(heights))
    for ax, (title, ranks, cd) in zip(axes[:, 0], panels, strict=True):
        draw_cd(ax, ranks, cd, title)
    save_figure(fig, path, tight=True)  # the names stand outside the rank axis


def plot_coverage(path: str | os.PathLike, *, coverage: pd.DataFrame, dpi: int = DPI) -> None:
    """Empirical coverage of the conformal Dice bound per test condition: one point per model
    run (colour: architecture) with its Clopper-Pearson 95% interval over that run's independent
    test images, against the 1 - alpha target.

    Runs whose bound is undefined (too few calibration images) have no coverage and are not
    drawn; when no run has a bound the figure says so instead of showing a flat line at 1.
    """
    rows = coverage.dropna(subset=["coverage"]) if not coverage.empty else coverage
    if rows.empty:
        _message_figure(
            path,
            "No defined conformal Dice bound (too few calibration images or no test rows):\n"
            "coverage not assessed.",
            dpi,
        )
        return
    rows = rows.assign(label=rows["study"] + " / " + rows["condition"])
    order = list(dict.fromkeys(rows.sort_values(["study", "severity", "condition"])["label"]))
    archs = sorted(rows["arch"].unique())
    colours = resolve_palette(archs, None)
    fig, axes = new_figure(1, 1, Layout(max(5.0, 0.45 * len(order) + 2.0), 3.6, dpi))
    ax = axes[0, 0]
    spread = np.linspace(-0.3, 0.3, len(archs)) if len(archs) > 1 else [0.0]
    offsets = dict(zip(archs, spread, strict=True))
    for arch, part in rows.groupby("arch", sort=True):
        x = part["label"].map(order.index).to_numpy() + offsets[arch]
        ax.errorbar(
            x, part["coverage"],
            yerr=[part["coverage"] - part["coverage_ci_low"],
                  part["coverage_ci_high"] - part["coverage"]],
            fmt="o", color=colours[arch], ms=4, capsize=2, lw=1,
        )  # fmt: skip
    target = float(rows["target"].iloc[0])
    ax.axhline(target, color="black", ls="--", lw=1)
    ax.text(len(order) - 0.5, target, f"target {target:.2f}", va="bottom", ha="right", fontsize=8)
    ax.set_xticks(range(len(order)), order, rotation=60, ha="right")
    ax.set(
        xlabel="Test condition",
        ylabel="Coverage: P(Dice >= bound)",
        ylim=(min(0.0, float(rows["coverage_ci_low"].min())) - 0.02, 1.02),
    )
    add_arch_legend(fig, colours, archs)
    save_figure(fig, path)
