"""What the pipeline's report shows, in which order: the answer first, then the figures, the
statistics, and the raw tables last (folded, each also written as CSV beside the report)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segrobust import atomic
from segrobust.analysis.aggregate import level_table
from segrobust.contract import ANALYSIS_FIGURES, ANALYSIS_TABLES, FIGURES, read_table
from segrobust.report.answer import answer_blocks
from segrobust.report.html import Section, collapsed_table, figure, notes, paragraph

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

#: Caption of every analysis table (``contract.ANALYSIS_TABLES``; a test keeps them equal).
TABLE_CAPTIONS = {
    "recipe": "Recommendation per regime: decision, effect (median paired Dice difference) with "
    "its 95% CI, independent images, Holm-adjusted p, smallest attainable p, reason",
    "recipe_comparisons": "Every comparison behind the recipe: the leading architecture against "
    "each rival per regime",
    "conformal_summary": "Conformal Dice bound per study and architecture over in-domain test "
    "conditions: median bound, pooled coverage with its Clopper-Pearson CI, status",
    "findings": "The papers' findings: expected direction, measured effect, CI, n, p, reproduced",
    "robustness": "Robustness per architecture and perturbation: mean Dice drop vs clean, "
    "ROOD-MRI Overall and Degradation (weights (2/3)^s), coefficient of variation",
    "corruption_errors": "Corruption error (CE) and relative CE, normalised to the baseline "
    "architecture (undefined where the baseline does not degrade); mCE over perturbations",
    "texture_trends": "Texture study: slope of Dice vs LBP complexity (in-domain, standard errors "
    "clustered by image) and area under the in-domain Dice-alpha curve",
    "pairwise_wilcoxon": "Paired Wilcoxon signed-rank tests between architectures on the same test "
    "images, Holm-corrected per condition",
    "friedman": "Friedman test over independent test-set blocks, average ranks and the Nemenyi "
    "critical difference",
    "rankings": "Ranking per condition with its bootstrap stability",
    "bootstrap_ci": "Bootstrap 95% confidence intervals of mean Dice and of pairwise differences",
    "conformal_fnr": "Conformal risk control of the false-negative rate: threshold calibrated on "
    "the held-out calibration split, realised FNR per test condition, status",
    "coverage": "Empirical coverage of the conformal Dice lower bound per run and condition, with "
    "its Clopper-Pearson CI; flagged rows are where coverage breaks under shift",
    "per_image_with_bounds": "Every test and calibration image with its conformal Dice lower bound",
    "context_fbr_range": "Training patches' foreground-ratio range per dataset and patch size",
    "context_out_of_range": "Dice inside minus outside the training foreground-ratio range per "
    "architecture and patch size, with bootstrap 95% CIs",
    "context_fbr_bins": "Mean Dice per quantile bin of the test cases' foreground ratio",
    "shift_coverage": "Per kind of shift: share of held-out images the applicability check "
    "flags, coverage of the Dice bound among those that pass (Clopper-Pearson 95% CI) and without "
    "the check, status",
    "flag_levels": "Per run: the applicability check's flag level at the analysis' confidence, "
    "chosen on held-out tuning images of every shift kind, and why",
}


@dataclass(frozen=True)
class ReportInputs:
    """Where the report's material lies."""

    results: Path  # results/<study>/summary.csv, per_image.csv, train_logs.csv
    analysis: Path  # results/analysis/<table>.csv, notes.md
    figures: Path  # results/report/figures/<name>.png
    captions: Path  # workflow/report/captions/<name>.rst
    tables_out: Path  # results/report/tables/ (CSV copies the page links to)


def caption(captions_dir: Path, name: str) -> str:
    """The caption of figure ``name``: its ``<name>.rst`` (the one home of captions, which
    Snakemake's ``--report`` shows too) as one paragraph."""
    return " ".join((captions_dir / f"{name}.rst").read_text().split())


def analysis_tables(analysis_dir: Path) -> dict[str, pd.DataFrame]:
    """Every analysis table by name (``contract.ANALYSIS_TABLES``)."""
    return {name: read_table(analysis_dir / f"{name}.csv") for name in ANALYSIS_TABLES}


def study_tables(results: Path, study: str) -> dict[str, pd.DataFrame]:
    """A study's raw tables for the appendix: the summary, and the papers' level table."""
    tables = {f"{study}_summary": read_table(results / study / "summary.csv")}
    if study == "perturbation":
        tables["perturbation_levels"] = level_table(read_table(results / study / "per_image.csv"))
    return tables


def run_lines(
    results: Path,
    studies: Sequence[str],
    repo: Path,
    started: str | None,
    elapsed_s: float | None = None,
) -> list[str]:
    """Provenance shown under the title: the code version, the devices the models trained on,
    the training time, when this invocation started and (``elapsed_s``, the report being its
    last job) how long it ran until the report was written."""
    lines = [f"Code: {git_version(repo)}."]
    logs = [read_table(results / s / "train_logs.csv") for s in studies]
    logs = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()
    if not logs.empty:
        runs = logs.groupby(["study", "dataset", "arch", "patch", "seed"], dropna=False)
        last = runs.tail(1)
        devices = ", ".join(
            f"{n} on {device} (mixed precision {amp})"
            for (device, amp), n in last.groupby(["device", "amp"]).size().items()
        )
        minutes = logs["seconds"].sum() / 60
        lines.append(
            f"{len(last)} models trained: {devices}; {minutes:.1f} min of training epochs "
            "(job start-up and evaluation not included)."
        )
    if started:
        took = f"; the report was written {elapsed_s / 60:.1f} min later" if elapsed_s else ""
        lines.append(f"This invocation of the workflow started {started}{took}.")
    return lines


def git_version(repo: Path) -> str:
    """``commit <hash>`` (with ``+ local changes`` when the tree differs), or why there is none."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "not a git checkout (no commit recorded)"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"commit {commit[:12]}" + (" + local changes" if dirty else "")


def raw_tables(
    studies: Sequence[str], inputs: ReportInputs, analysis: Mapping[str, pd.DataFrame]
) -> dict[str, tuple[pd.DataFrame, str]]:
    """Every table of the appendix by name: (table, caption)."""
    raw = {name: (analysis[name], TABLE_CAPTIONS[name]) for name in ANALYSIS_TABLES}
    for study in studies:
        for name, frame in study_tables(inputs.results, study).items():
            what = (
                "mean, sd and n of each metric over images and seeds"
                if name.endswith("_summary")
                else "mean Dice per dataset, architecture and the papers' named levels"
            )
            raw[name] = (frame, f"{study.capitalize()} study: {what}")
    return raw


def pipeline_sections(studies: Sequence[str], inputs: ReportInputs) -> list[Section]:
    """The report's sections for the enabled ``studies``: Answer, one per study, statistics,
    then the tables, whose CSV copies are written into ``inputs.tables_out`` (linked from the
    page)."""
    analysis = analysis_tables(inputs.analysis)
    sections = [Section("Answer", "answer", answer_blocks(analysis, studies))]
    for study in studies:
        figures = [
            figure(inputs.figures / f"{name}.png", caption(inputs.captions, name))
            for name in FIGURES[study]
        ]
        sections.append(
            Section(f"{study.capitalize()} study", study, [paragraph(STUDY_TEXT[study]), *figures])
        )
    statistics = [
        figure(inputs.figures / f"{name}.png", caption(inputs.captions, name))
        for name in ANALYSIS_FIGURES
    ]
    statistics.append(notes((inputs.analysis / "notes.md").read_text()))
    sections.append(Section("Statistics and conformal confidence", "statistics", statistics))
    raw = raw_tables(studies, inputs, analysis)
    with atomic.atomic_dir(inputs.tables_out) as staging:
        for name, (frame, _) in raw.items():
            atomic.write_csv(staging / f"{name}.csv", frame)
    folded = [
        collapsed_table(frame, text, f"{inputs.tables_out.name}/{name}.csv")
        for name, (frame, text) in raw.items()
    ]
    sections.append(Section("Tables", "tables", folded))
    return sections
