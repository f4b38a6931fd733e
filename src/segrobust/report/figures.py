"""The report's figures by name, with what each needs.

One registry entry per figure (the names of ``segrobust.contract.FIGURES``) lets a single
Snakemake rule draw any of them from a wildcard (``FIGURES.get(name)``). Captions live in one
place, ``workflow/report/<name>.rst``, shown by Snakemake's ``--report`` and the HTML report
alike. The plotting functions themselves live in one module per study.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from segrobust.registry import Registry
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
    """How to draw one report figure.

    Attributes:
        plot: ``plot(table, path, **options)``; ``table`` is the study's per-image table, or the
            training-patch table when ``table`` is "patches".
        table: "per_image" or "patches": what the first argument is.
        needs_patches: whether ``patches=`` (the training-patch table) must also be passed.
        options: keyword options fixed for this figure (e.g. the metric).
    """

    plot: Callable[..., None]
    table: str = "per_image"
    needs_patches: bool = False
    options: dict[str, Any] = field(default_factory=dict)


FIGURES: Registry[FigureSpec] = Registry("figure")

for _name, _spec in {
    "texture_in_domain": FigureSpec(plot_texture_in_domain),
    "texture_heatmap": FigureSpec(plot_texture_heatmap),
    "texture_complexity": FigureSpec(plot_metric_vs_complexity),
    "perturbation_dice": FigureSpec(plot_perturbation_severity, options={"metric": "dice"}),
    "perturbation_hd95": FigureSpec(plot_perturbation_severity, options={"metric": "hd95"}),
    "perturbation_complexity_levels": FigureSpec(plot_complexity_by_level),
    "context_patch_size": FigureSpec(plot_metric_vs_patch_size),
    "context_test_fbr": FigureSpec(plot_metric_vs_test_fbr, needs_patches=True),
    "context_training_fbr": FigureSpec(plot_training_patch_fbr, table="patches"),
}.items():
    FIGURES.register(_name)(_spec)


def draw_figure(name: str, table: Any, path: Any, *, patches: Any = None, **options: Any) -> None:
    """Draw the registered figure ``name`` from ``table`` into ``path``.

    ``patches`` (the training-patch table) is required exactly by figures with
    ``needs_patches``; ``options`` override the spec's fixed options.
    """
    spec = FIGURES.get(name)
    if spec.needs_patches:
        if patches is None:
            raise ValueError(f"figure {name!r} needs the training-patch table (patches=)")
        options = {"patches": patches, **options}
    elif patches is not None:
        raise ValueError(f"figure {name!r} does not use a training-patch table")
    spec.plot(table, path, **{**spec.options, **options})
