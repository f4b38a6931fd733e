"""Figures of the perturbation study: robustness to graded test-time perturbations.

Each function takes contract-4 rows of the perturbation study (only the `test` split is plotted)
and writes one PNG. Rows are training datasets; colours are architectures (`arch_palette`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd
import seaborn as sns

from segrobust.analysis.aggregate import with_named_levels
from segrobust.contract import LEVEL_ORDER

# The same helpers as texture_figures imports (`duplicates` pairs the two lists): one set of
# figure conventions, named where they are used.
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

LEVEL_COLOURS: dict[str, str] = dict(
    zip(LEVEL_ORDER, ["#b2182b", "#ef8a62", "#bababa", "#67a9cf", "#2166ac"], strict=True)
)
"""Red for harder, grey for the clean baseline, blue for easier levels."""


def perturbation_label(name: str) -> str:
    """How the report names a perturbation: its record's display name ("Gaussian noise"), or
    ``name`` itself where there is no record."""
    # imported here: the perturbations import torch and MONAI, which only the figures that
    # name a perturbation should pay for (every plot_figure job imports this module)
    from segrobust.perturb import PERTURBATIONS

    return PERTURBATIONS.get(name).display_name if name in PERTURBATIONS else name


def _clean_rows(rows: pd.DataFrame) -> pd.Series:
    return (rows["severity"] == 0) | (rows["perturbation"] == "none")


def severity_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows per perturbation with the clean rows copied into each as severity 0, so every
    perturbation's curve starts from the same unperturbed baseline."""
    clean = _clean_rows(rows)
    perturbations = sorted(rows.loc[~clean, "perturbation"].dropna().unique())
    if not perturbations:
        raise ValueError("perturbation severity figure: no perturbed test rows (severity > 0)")
    parts = []
    for perturbation in perturbations:
        parts.append(rows[~clean & (rows["perturbation"] == perturbation)])
        parts.append(rows[clean].assign(perturbation=perturbation, severity=0))
    return pd.concat(parts, ignore_index=True)


def plot_perturbation_severity(
    path: str | os.PathLike,
    *,
    per_image: pd.DataFrame,
    metric: str = "dice",
    palette: Mapping[str, str] | None = None,
    layout: Layout = LAYOUT,
) -> None:
    """``metric`` vs perturbation severity per architecture: a row of panels per training
    dataset, a column per perturbation; severity 0 is the clean test split. Points are means over
    test images and seeds, bars their bootstrap 95% confidence interval.

    Call once with ``metric="dice"`` and once with ``metric="hd95"`` for the papers' two views.
    """
    rows = rows_of_test_split(
        per_image, ["dataset", "perturbation", "severity", "arch", metric], "perturbation figure"
    )
    rows = rows.assign(severity=pd.to_numeric(rows["severity"], errors="raise"))
    curves = severity_curves(rows)
    colours = resolve_palette(curves["arch"].unique(), palette)
    datasets = facet_values(curves, "dataset")
    perturbations = sorted(curves["perturbation"].unique())
    severities = sorted(curves["severity"].unique())
    fig, axes = new_figure(len(datasets), len(perturbations), layout, sharex=True, sharey="row")
    for i, dataset in enumerate(datasets):
        for j, perturbation in enumerate(perturbations):
            ax = axes[i, j]
            panel = facet_rows(curves, "dataset", dataset)
            panel = panel[panel["perturbation"] == perturbation]
            if not panel.empty:
                mean_ci_lines(ax, panel, "severity", metric, colours)
            label = perturbation_label(perturbation)
            title = label if dataset is None else f"{dataset}: {label}"
            ax.set(title=title, xlabel="Severity (0 = clean)", ylabel=metric_label(metric))
            ax.set_xticks(severities)
    add_arch_legend(fig, colours, curves["arch"].unique())
    save_figure(fig, path)


def plot_complexity_by_level(
    path: str | os.PathLike,
    *,
    per_image: pd.DataFrame,
    max_columns: int = 4,
    layout: Layout = LAYOUT,
) -> None:
    """Distribution (box plot) of test-image LBP complexity per named level, Hardest to
    Easiest, one panel per training dataset (wrapped after ``max_columns``).

    Each test image counts once per condition: the rows of the several models that evaluated
    the same image are collapsed first. Perturbations without a named level are left out; the
    clean split is 'Unperturbed'.
    """
    keys = ["dataset", "test_dataset", "condition", "image_id"]
    rows = rows_of_test_split(
        per_image, [*keys, "level", "complexity"], "complexity-by-level figure"
    )
    rows = with_named_levels(rows)
    rows = rows[rows["level"].isin(LEVEL_ORDER)].dropna(subset=["complexity"])
    if rows.empty:
        raise ValueError(
            f"complexity-by-level figure: no test rows with a level in {list(LEVEL_ORDER)}"
        )
    images = rows.drop_duplicates(subset=[*keys, "level"])
    levels = [level for level in LEVEL_ORDER if level in set(images["level"])]
    datasets = facet_values(images, "dataset")
    ncols = min(len(datasets), max_columns)
    nrows = -(-len(datasets) // ncols)
    fig, axes = new_figure(nrows, ncols, layout, legend=False)
    for ax in axes.flat[len(datasets) :]:
        ax.set_axis_off()
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        sns.boxplot(
            data=facet_rows(images, "dataset", dataset),
            x="level",
            y="complexity",
            hue="level",
            order=levels,
            hue_order=levels,
            palette=LEVEL_COLOURS,
            fliersize=2,
            legend=False,
            ax=ax,
        )
        ax.set(
            title="all datasets" if dataset is None else str(dataset),
            xlabel="Perturbation level",
            ylabel=COMPLEXITY_LABEL,
        )
        ax.tick_params(axis="x", labelrotation=30)
    save_figure(fig, path)
