"""The report's figures by name: which function draws each, with which fixed options.

One registry entry per figure (the names of ``segrobust.contract.FIGURES`` and
``ANALYSIS_FIGURES``) lets a single Snakemake rule draw any of them from a wildcard. What each
figure reads is stated once, in ``segrobust.contract.FIGURE_TABLES``; its plotting function takes
those tables as keyword arguments of the same names. Captions live in one place,
``workflow/report/<name>.rst``, shown by Snakemake's ``--report`` and the HTML report alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from segrobust.contract import FIGURE_TABLES
from segrobust.registry import Registry
from segrobust.report.analysis_figures import plot_coverage, plot_critical_difference
from segrobust.report.context_figures import (
    plot_metric_vs_patch_size,
    plot_metric_vs_test_fbr,
    plot_training_patch_fbr,
)
from segrobust.report.perturbation_figures import (
    plot_complexity_by_level,
    plot_perturbation_severity,
)
from segrobust.report.texture_figures import (
    plot_metric_vs_complexity,
    plot_texture_heatmap,
    plot_texture_in_domain,
)


@dataclass(frozen=True)
class FigureSpec:
    """How to draw one report figure: ``plot(path, **tables, **options)``."""

    plot: Callable[..., None]
    options: dict[str, Any] = field(default_factory=dict)


FIGURES: Registry[FigureSpec] = Registry("figure")

for _name, _spec in {
    "texture_in_domain": FigureSpec(plot_texture_in_domain),
    "texture_heatmap": FigureSpec(plot_texture_heatmap),
    "texture_complexity": FigureSpec(plot_metric_vs_complexity),
    "perturbation_dice": FigureSpec(plot_perturbation_severity, {"metric": "dice"}),
    "perturbation_hd95": FigureSpec(plot_perturbation_severity, {"metric": "hd95"}),
    "perturbation_complexity_levels": FigureSpec(plot_complexity_by_level),
    "context_patch_size": FigureSpec(plot_metric_vs_patch_size),
    "context_test_fbr": FigureSpec(plot_metric_vs_test_fbr),
    "context_training_fbr": FigureSpec(plot_training_patch_fbr),
    "cd_diagram": FigureSpec(plot_critical_difference),
    "coverage": FigureSpec(plot_coverage),
}.items():
    FIGURES.register(_name)(_spec)


def draw_figure(name: str, tables: Mapping[str, Any], path: Any, **options: Any) -> None:
    """Draw the registered figure ``name`` into ``path`` from ``tables`` (table name ->
    DataFrame: exactly the tables ``contract.FIGURE_TABLES`` names for it); ``options``
    override the spec's fixed options (e.g. a smaller ``layout`` in tests)."""
    spec = FIGURES.get(name)
    expected = set(FIGURE_TABLES[name])
    if set(tables) != expected:
        raise ValueError(
            f"figure {name!r} is drawn from the tables {sorted(expected)}, got {sorted(tables)}"
        )
    spec.plot(path, **tables, **{**spec.options, **options})
