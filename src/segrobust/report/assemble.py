"""What the pipeline's report shows, in which order: the answer first, then the figures, the
statistics, and the raw tables last (folded, each also written as CSV beside the report).

The report is one folder (`write_report`): ``index.html``, ``findings.csv`` and ``tables/``, written
atomically, so Snakemake's ``--report`` can pack it as one entry whose index is the page. Captions
have one home each, read by both reports: ``workflow/report/captions/<figure>.rst`` and
``workflow/report/tables/<table>.rst``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from segrobust import atomic
from segrobust.analysis.aggregate import level_table
from segrobust.contract import ANALYSIS_FIGURES, ANALYSIS_TABLES, FIGURES, read_table
from segrobust.report.answer import answer_blocks
from segrobust.report.html import (
    Section,
    build_html_report,
    collapsed_table,
    figure,
    notes,
    paragraph,
)

INDEX = "index.html"
TABLES_DIR = "tables"
FINDINGS = "findings.csv"

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


@dataclass(frozen=True)
class ReportInputs:
    """Where the report's material lies."""

    results: Path  # results/<study>/summary.csv, per_image.csv, train_logs.csv
    analysis: Path  # results/analysis/<table>.csv, notes.md
    figures: Path  # results/figures/<name>.png
    captions: Path  # workflow/report/captions/<figure>.rst
    table_captions: Path  # workflow/report/tables/<table>.rst


def caption(captions_dir: Path, name: str) -> str:
    """The caption ``<name>.rst`` of a figure or table (the one home of its caption, which
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
    raw = {name: (analysis[name], caption(inputs.table_captions, name)) for name in ANALYSIS_TABLES}
    for study in studies:
        for name, frame in study_tables(inputs.results, study).items():
            what = (
                "mean, sd and n of each metric over images and seeds"
                if name.endswith("_summary")
                else "mean Dice per dataset, architecture and the papers' named levels"
            )
            raw[name] = (frame, f"{study.capitalize()} study: {what}")
    return raw


def pipeline_sections(
    studies: Sequence[str], inputs: ReportInputs, tables_out: Path
) -> list[Section]:
    """The report's sections for the enabled ``studies``: Answer, one per study, statistics,
    then the tables, whose CSV copies are written into ``tables_out`` (linked from the page,
    relative to it: ``tables_out`` is the ``tables/`` beside the page)."""
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
    with atomic.atomic_dir(tables_out) as staging:
        for name, (frame, _) in raw.items():
            atomic.write_csv(staging / f"{name}.csv", frame)
    folded = [
        collapsed_table(frame, text, f"{tables_out.name}/{name}.csv")
        for name, (frame, text) in raw.items()
    ]
    sections.append(Section("Tables", "tables", folded))
    return sections


def write_report(
    out_dir: str | os.PathLike,
    studies: Sequence[str],
    inputs: ReportInputs,
    *,
    meta: Sequence[str],
    config: Mapping[str, Any],
    versions: Mapping[str, str],
) -> Path:
    """Write the report folder ``out_dir`` atomically (all of it or nothing): the page
    ``index.html``, the papers' findings ``findings.csv`` and every table it shows in
    ``tables/``. Returns the page's path."""
    out_dir = Path(out_dir)
    with atomic.atomic_dir(out_dir) as staging:
        sections = pipeline_sections(studies, inputs, staging / TABLES_DIR)
        atomic.write_text(staging / FINDINGS, (inputs.analysis / FINDINGS).read_text())
        build_html_report(
            staging / INDEX,
            title="segrobust report",
            meta=meta,
            sections=sections,
            config=config,
            versions=versions,
        )
    return out_dir / INDEX
