"""The report's figures by name, with what each needs and a caption.

One registry entry per figure lets a single Snakemake rule draw any of them from a wildcard
(``FIGURES.get(name)``), and the HTML report reuse the same captions. The plotting functions
themselves live in one module per study.
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
    """One report figure.

    Attributes:
        study: the study whose tables it draws (`results/<study>/...`).
        plot: ``plot(table, path, **options)``; ``table`` is the study's per-image table, or the
            training-patch table when ``table`` is "patches".
        table: "per_image" or "patches": what the first argument is.
        needs_patches: whether ``patches=`` (the training-patch table) must also be passed.
        options: keyword options fixed for this figure (e.g. the metric).
        caption: a caption for the Snakemake report and the HTML report.
    """

    study: str
    plot: Callable[..., None]
    table: str
    caption: str
    needs_patches: bool = False
    options: dict[str, Any] = field(default_factory=dict)


FIGURES: Registry[FigureSpec] = Registry("figure")

FIGURES.register("texture_in_domain")(
    FigureSpec(
        study="texture",
        plot=plot_texture_in_domain,
        table="per_image",
        caption=(
            "In-domain Dice (models tested at the alpha they were trained at) against the blend "
            "factor alpha, per architecture and blend direction. Higher alpha makes foreground "
            "and background textures more alike, i.e. the task harder. Mean over test images "
            "and seeds with bootstrap 95% confidence intervals."
        ),
    )
)
FIGURES.register("texture_heatmap")(
    FigureSpec(
        study="texture",
        plot=plot_texture_heatmap,
        table="per_image",
        caption=(
            "Mean Dice of each model (row: training alpha) on each test alpha (column), per "
            "architecture and blend direction. The diagonal is in-domain performance; cells off "
            "it show how a model transfers to easier (lower alpha) or harder (higher alpha) "
            "textures."
        ),
    )
)
FIGURES.register("texture_complexity")(
    FigureSpec(
        study="texture",
        plot=plot_metric_vs_complexity,
        table="per_image",
        caption=(
            "Dice of each in-domain test image against its task complexity (KL divergence "
            "between the uniform-LBP histograms of foreground and background, bits; low = alike "
            "textures = hard), coloured by architecture, with a least-squares trend line per "
            "architecture."
        ),
    )
)
FIGURES.register("perturbation_dice")(
    FigureSpec(
        study="perturbation",
        plot=plot_perturbation_severity,
        table="per_image",
        options={"metric": "dice"},
        caption=(
            "Dice against perturbation severity per perturbation (columns) and training dataset "
            "(rows); severity 0 is the clean test split. Mean over test images and seeds with "
            "bootstrap 95% confidence intervals."
        ),
    )
)
FIGURES.register("perturbation_hd95")(
    FigureSpec(
        study="perturbation",
        plot=plot_perturbation_severity,
        table="per_image",
        options={"metric": "hd95"},
        caption=(
            "95th-percentile Hausdorff distance (mm) against perturbation severity per "
            "perturbation (columns) and training dataset (rows); severity 0 is the clean test "
            "split. A missed object counts as the image diagonal. Mean over test images and "
            "seeds with bootstrap 95% confidence intervals."
        ),
    )
)
FIGURES.register("perturbation_complexity_levels")(
    FigureSpec(
        study="perturbation",
        plot=plot_complexity_by_level,
        table="per_image",
        caption=(
            "LBP task complexity of the test images at each named perturbation level, from "
            "Hardest (strong speckle noise) through Unperturbed to Easiest (strong background "
            "blur), per dataset: the perturbations move complexity in the intended direction."
        ),
    )
)
FIGURES.register("context_patch_size")(
    FigureSpec(
        study="context",
        plot=plot_metric_vs_patch_size,
        table="per_image",
        caption=(
            "Dice against the patch edge used for training and sliding-window inference, per "
            "architecture. Larger patches carry more context but a smaller foreground ratio. "
            "Mean over test cases and seeds with bootstrap 95% confidence intervals."
        ),
    )
)
FIGURES.register("context_test_fbr")(
    FigureSpec(
        study="context",
        plot=plot_metric_vs_test_fbr,
        table="per_image",
        needs_patches=True,
        caption=(
            "Dice against the foreground ratio of the test case (equal-width bins, point at the "
            "bin centre), per patch size and architecture. The shaded band is the 5th-95th "
            "percentile range of the foreground ratio of the training patches of that patch "
            "size."
        ),
    )
)
FIGURES.register("context_training_fbr")(
    FigureSpec(
        study="context",
        plot=plot_training_patch_fbr,
        table="patches",
        caption=(
            "Foreground ratio of every sampled training patch per patch size and architecture "
            "(box: quartiles; whiskers: 5th-95th percentile). Smaller patches see a larger and "
            "more variable share of foreground."
        ),
    )
)


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
