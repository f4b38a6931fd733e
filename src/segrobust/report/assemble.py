"""Which figures, tables and explanations the pipeline's report shows, in which order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from segrobust.analysis.aggregate import level_table
from segrobust.contract import ANALYSIS_FIGURES, FIGURES, read_table
from segrobust.report.html import Section

STUDY_TEXT = {
    "texture": (
        "Skip connections vs task complexity. Synthetic images blend a foreground and a background "
        "texture with factor alpha (high alpha = textures alike = hard). Every architecture is "
        "trained at each alpha and tested at every alpha of the same blend direction. Complexity "
        "is the KL divergence (bits) of foreground vs background uniform-LBP histograms "
        "(P=24, R=3)."
    ),
    "perturbation": (
        "Models trained on clean images, tested on perturbed copies of their test images at five "
        "severities. The papers' levels: Hardest / Harder = speckle noise, Easier / Easiest = "
        "background-only blur."
    ),
    "context": (
        "3D patch training with sliding-window inference: the patch size trades global context "
        "against the foreground-to-background ratio (FBR) of the training patches."
    ),
}

ANALYSIS_TABLES = [
    ("recipe.csv", "Recommended architecture per regime (complexity bin or perturbation level)"),
    (
        "robustness.csv",
        "Robustness per architecture and perturbation: mean Dice drop vs clean, "
        "ROOD-MRI Overall and Degradation (weights (2/3)^s), coefficient of variation",
    ),
    (
        "corruption_errors.csv",
        "Corruption error (CE) and relative CE, normalised to the "
        "baseline architecture; mCE over perturbations",
    ),
    (
        "texture_trends.csv",
        "Texture study: slope of Dice vs LBP complexity and area under the "
        "in-domain Dice-alpha curve per architecture",
    ),
    (
        "pairwise_wilcoxon.csv",
        "Paired Wilcoxon signed-rank tests between architectures on the "
        "same test images (seed-averaged per-image Dice), Holm-corrected per condition",
    ),
    (
        "friedman.csv",
        "Friedman test across architectures, average ranks and the Nemenyi "
        "critical difference (CD)",
    ),
    ("rankings.csv", "Ranking per condition with its bootstrap stability"),
    ("bootstrap_ci.csv", "Bootstrap 95% confidence intervals of mean Dice"),
    (
        "conformal_fnr.csv",
        "Conformal risk control of the false-negative rate: threshold "
        "calibrated on the held-out calibration split, realised FNR per test condition",
    ),
    (
        "coverage.csv",
        "Empirical coverage of the conformal per-image Dice lower bounds, per "
        "condition; flagged rows are where coverage breaks under shift",
    ),
    (
        "context_out_of_range.csv",
        "Dice drop on test cases whose FBR lies outside the training "
        "patches' FBR range, with bootstrap 95% CIs",
    ),
]


def caption(captions_dir: Path, name: str) -> str:
    """The caption of figure ``name``: its ``<name>.rst`` (the one home of captions, which
    Snakemake's ``--report`` shows too) as one paragraph."""
    return " ".join((captions_dir / f"{name}.rst").read_text().split())


def pipeline_sections(
    studies: Sequence[str],
    figures_dir: str | Path,
    results_dir: str | Path,
    analysis_dir: str | Path,
    captions_dir: str | Path,
) -> list[Section]:
    """The report's sections for the enabled ``studies``."""
    figures_dir, results_dir, analysis_dir, captions_dir = map(
        Path, (figures_dir, results_dir, analysis_dir, captions_dir)
    )
    sections = []
    for study in studies:
        figures = [
            (figures_dir / f"{name}.png", caption(captions_dir, name)) for name in FIGURES[study]
        ]
        sections.append(Section(
            title=f"{study.capitalize()} study",
            text=[STUDY_TEXT[study]],
            figures=figures,
            tables=_study_tables(study, results_dir),
        ))  # fmt: skip
    recipe = (analysis_dir / "recipe.md").read_text()
    notes = (analysis_dir / "notes.md").read_text()
    sections.append(Section(
        title="Analysis: statistics, conformal confidence and the recipe",
        text=[
            "Differences between architectures are tested with paired Wilcoxon signed-rank tests "
            "(Holm correction), a Friedman test with the Nemenyi critical difference diagram, and "
            "bootstrap confidence intervals. Conformal risk control bounds the false-negative "
            "rate; split conformal prediction gives each test image a Dice lower bound, whose "
            "empirical coverage is reported per condition.",
            recipe,
            notes,
        ],
        figures=[
            (analysis_dir / f"{name}.png", caption(captions_dir, name))
            for name in ANALYSIS_FIGURES
        ],
        tables=[(analysis_dir / name, caption) for name, caption in ANALYSIS_TABLES],
    ))  # fmt: skip
    return sections


def _study_tables(study: str, results_dir: Path) -> list:
    tables = [(results_dir / study / "summary.csv",
               "Summary: mean, sd and n of each metric over images and seeds")]  # fmt: skip
    if study == "perturbation":
        levels = level_table(read_table(results_dir / study / "per_image.csv"))
        tables.insert(
            0,
            (
                levels,
                "Mean Dice per dataset, architecture and the papers' levels "
                "(Hardest, Harder: speckle; Easier, Easiest: background blur)",
            ),
        )
    return tables
