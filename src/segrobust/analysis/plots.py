"""Figures of the analysis stage: critical-difference diagrams and conformal coverage.

Both are written atomically (``segrobust.atomic``: a temporary file, then renamed) so a failed
plot leaves no half-written PNG behind.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the pipeline runs on clusters without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from segrobust.atomic import atomic_file  # noqa: E402


def save_figure(fig, path) -> Path:
    """Save ``fig`` as PNG at ``path`` via a temporary file in the same folder, then close it."""
    path = Path(path)
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


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
    """Demsar's layout on ``ax``: rank axis (1 left), names on elbows, CD bar, clique bars."""
    ranks = avg_ranks.sort_values()
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
            f"{name} ({rank:.2f})",
            ha="right" if left else "left",
            va="center",
            fontsize=9,
        )
    positions = ranks.to_numpy()
    for j, (start, end) in enumerate(insignificant_groups(ranks, cd) if np.isfinite(cd) else []):
        y = -0.35 - 0.25 * j
        ax.hlines(y, positions[start] - 0.05, positions[end] + 0.05, color="tab:red", lw=3)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)


def critical_difference_diagram(avg_ranks: pd.Series, cd: float, path, title=None) -> Path:
    """One CD diagram (average ranks, Nemenyi CD) saved as PNG at ``path``."""
    return critical_difference_diagrams({title or "": (avg_ranks, cd)}, path)


def critical_difference_diagrams(panels: dict, path) -> Path:
    """Stacked CD diagrams, one per ``title -> (avg_ranks, cd)``; a note when there are none."""
    if not panels:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.text(
            0.5,
            0.5,
            "No study had >= 2 architectures on common conditions.",
            ha="center",
            va="center",
        )
        ax.axis("off")
        return save_figure(fig, path)
    heights = [1.2 + 0.4 * ((len(r) + 1) // 2) for r, _ in panels.values()]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(7, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, (title, (ranks, cd)) in zip(axes[:, 0], panels.items(), strict=True):
        draw_cd(ax, ranks, cd, title)
    return save_figure(fig, path)


def coverage_plot(coverage_table: pd.DataFrame, alpha: float, path) -> Path:
    """Coverage per condition (mean over runs, one colour per arch) with the 1 - alpha line.

    Runs whose bound is undefined (too few calibration images) have no coverage and are not
    drawn; when no run has a bound the figure says so instead of showing a flat line at 1.
    """
    if not coverage_table.empty:
        coverage_table = coverage_table.dropna(subset=["coverage"])
    if coverage_table.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.text(
            0.5,
            0.5,
            "No defined conformal Dice bound (too few calibration images\n"
            "or no test rows): coverage not assessed.",
            ha="center",
            va="center",
        )
        ax.axis("off")
        return save_figure(fig, path)
    data = coverage_table.assign(
        label=coverage_table["study"] + " / " + coverage_table["condition"]
    )
    order = list(dict.fromkeys(data.sort_values(["study", "severity", "condition"])["label"]))
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(order) + 2), 4))
    sns.pointplot(
        data=data,
        x="label",
        y="coverage",
        hue="arch",
        order=order,
        dodge=0.4,
        linestyle="none",
        errorbar=None,
        ax=ax,
    )
    ax.axhline(1 - alpha, color="black", ls="--", lw=1, label=f"target 1 - alpha = {1 - alpha:.2f}")
    ax.set_ylim(min(0.0, data["coverage"].min()) - 0.02, 1.02)
    ax.set_xlabel("test condition")
    ax.set_ylabel("P(Dice >= conformal lower bound)")
    ax.tick_params(axis="x", rotation=60)
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)
