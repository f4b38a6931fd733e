"""The report's first section: the answer, in plain sentences, from the analysis tables.

Nothing is computed here that the analysis did not compute: the recipe's sentences
(``recipe.csv``), the per-architecture conformal Dice bound with its measured coverage
(``conformal_summary.csv``), the papers' findings (``findings.csv``) and, for the context study,
Dice per patch size (``bootstrap_ci.csv``) and the out-of-range drop (``context_out_of_range.csv``)
are put into words and small tables a reader sees before any figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from segrobust.analysis.shift_coverage import BELOW, rating_limit_statements
from segrobust.report.html import bullets, heading, paragraph, table

REPRODUCED_CLASSES = {"yes": "yes", "no": "no", "inconclusive": "inconclusive"}


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if pd.isna(value) else f"{value:.{digits}f}"


def _interval(low: float, high: float, digits: int = 2) -> str:
    if pd.isna(low) or pd.isna(high):
        return "no CI"
    return f"{low:.{digits}f} to {high:.{digits}f}"


def recommendation_blocks(recipe: pd.DataFrame, studies: Sequence[str]) -> list[str]:
    """Per study: the regimes with a recommendation or an equivalent set as sentences, then the
    inconclusive ones folded with their reason."""
    blocks = [heading("Which architecture to use")]
    if recipe.empty:
        return [*blocks, paragraph("No regime had images evaluated by two or more architectures.")]
    for study in studies:
        rows = recipe[recipe["study"] == study]
        if rows.empty:
            continue
        chosen = rows[rows["decision"].isin(["recommended", "equivalent"])]
        others = rows[~rows["decision"].isin(["recommended", "equivalent"])]
        recommended = int((rows["decision"] == "recommended").sum())
        blocks.append(
            paragraph(
                f"{study.capitalize()} study: a recommendation in {recommended} of {len(rows)} "
                f"regimes, equivalent architectures in {len(chosen) - recommended} (an "
                "architecture is recommended when the confidence interval of its mean Dice minus "
                "each rival's, across training runs and test images, lies above the minimum "
                "relevant difference; equivalent when it lies within it)."
            )
        )
        if not chosen.empty:
            blocks.append(bullets(chosen["sentence"]))
        if not others.empty:
            blocks.append(
                f"<details><summary>No recommendation in {len(others)} regimes: why</summary>"
                f"{bullets(others['sentence'])}</details>"
            )
    return blocks


def conformal_sentence(row: Mapping) -> str:
    """One architecture's conformal Dice bound and its measured coverage, in words."""
    target = row["target"]
    where = f"{row['arch']} ({row['study']} study)"
    if pd.isna(row["median_dice_lower_bound"]):
        return f"{where}: no guarantee: {row['status']}."
    return (
        f"{where}: Dice >= {row['median_dice_lower_bound']:.2f} with {target:.0%} confidence "
        f"(median per-image bound); measured coverage {_fmt(row['coverage'])} (95% CI "
        f"{_interval(row['coverage_ci_low'], row['coverage_ci_high'])}) on {int(row['n_test'])} "
        f"in-domain test images, {int(row['n_calibration'])} calibration images."
    )


def conformal_blocks(summary: pd.DataFrame) -> list[str]:
    blocks = [heading("How far to trust one result: conformal Dice bounds")]
    if summary.empty:
        return [*blocks, paragraph("No calibration rows: no bound was computed.")]
    blocks.append(
        paragraph(
            "Each test image gets a lower bound on its Dice from the model's own confidence, "
            "calibrated on held-out images the model never saw; the bound holds for the stated "
            "share of images from the same distribution (split conformal prediction)."
        )
    )
    blocks.append(bullets(conformal_sentence(row) for _, row in summary.iterrows()))
    return blocks


def shift_blocks(shift_coverage: pd.DataFrame) -> list[str]:
    """Where the confidence rating holds per kind of shift, and the table behind it."""
    blocks = [heading("Where the confidence rating holds")]
    if shift_coverage.empty:
        return [*blocks, paragraph("No per-shift coverage was measured.")]
    blocks.append(
        paragraph(
            "An image unlike the calibration images (its statistics and the model's own "
            "features taken together) gets no rating. Per kind of shift, on held-out labelled "
            "images the check's level was not chosen on: the share rated and the coverage of "
            "the bound among them."
        )
    )
    blocks.append(bullets(rating_limit_statements(shift_coverage)))
    below = shift_coverage[shift_coverage["status"] == BELOW]
    if not below.empty:
        blocks.append(
            paragraph(
                f"Warning: in {len(below)} (kind, architecture) rows images are rated and their "
                "coverage is below the target minus the tolerance; the rating is not to be "
                "relied on there."
            )
        )
    shown = shift_coverage.assign(
        rated=(1 - shift_coverage["fraction_flagged"]).map(lambda v: _fmt(v)),
        coverage_rated=shift_coverage["coverage"].map(_fmt),
        ci=[
            _interval(lo, hi)
            for lo, hi in zip(
                shift_coverage["coverage_ci_low"], shift_coverage["coverage_ci_high"], strict=True
            )
        ],
        coverage_unchecked=shift_coverage["coverage_all"].map(_fmt),
    )[["study", "arch", "kind", "n_images", "rated", "coverage_rated", "ci",
       "coverage_unchecked", "status"]]  # fmt: skip
    shown = shown.rename(columns={"ci": "95% CI", "n_images": "n"})
    blocks.append(
        "<details><summary>Coverage per kind of shift and architecture</summary>"
        f"{table(shown)}</details>"
    )
    return blocks


def findings_blocks(findings: pd.DataFrame) -> list[str]:
    blocks = [heading("The papers' findings in this run")]
    if findings.empty:
        return [*blocks, paragraph("No finding could be evaluated on the studies run.")]
    counts = findings["reproduced"].value_counts()
    summary = ", ".join(f"{counts[k]} {k}" for k in ("yes", "no", "inconclusive", "not run")
                        if k in counts)  # fmt: skip
    blocks.append(
        paragraph(
            "Each finding is a contrast between architectures across their training runs and "
            "the test images; 'yes' only when its confidence interval lies beyond the minimum "
            "relevant difference in the expected direction (above -margin for a "
            f"non-inferiority claim), 'no' when it lies on the other side, otherwise "
            f"inconclusive ({summary})."
        )
    )
    shown = findings.assign(
        effect=findings["measured_effect"].map(lambda v: _fmt(v, 3)),
        ci=[
            _interval(lo, hi, 3)
            for lo, hi in zip(findings["ci_low"], findings["ci_high"], strict=True)
        ],  # fmt: skip
        p=findings["p_value"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.3g}"),
    )[["finding", "comparison", "expected_direction", "effect", "ci", "n_runs", "n_units", "p",
       "reproduced"]]  # fmt: skip
    shown = shown.rename(
        columns={
            "expected_direction": "expected",
            "ci": "95% CI",
            "n_runs": "runs per arm",
            "n_units": "units",
        }  # fmt: skip
    )
    blocks.append(table(shown, classes={"reproduced": REPRODUCED_CLASSES}))
    return blocks


def context_blocks(bootstrap: pd.DataFrame, out_of_range: pd.DataFrame) -> list[str]:
    """Dice per patch size and the out-of-range drop per architecture, context study only."""
    means = bootstrap[
        (bootstrap["study"] == "context")
        & (bootstrap["quantity"] == "mean_dice")
        & (bootstrap["condition"] == "clean")
    ]
    if means.empty and out_of_range.empty:
        return []
    blocks = [heading("Context study: patch size and foreground ratio")]
    if not means.empty:
        lines = []
        for (dataset, arch), rows in means.groupby(["dataset", "arch"], sort=True):
            rows = rows.assign(edge=pd.to_numeric(rows["patch"], errors="coerce"))
            parts = [
                f"{r.patch}: {r.estimate:.2f} ({_interval(r.ci_low, r.ci_high)})"
                for r in rows.sort_values("edge").itertuples()
            ]
            lines.append(f"{arch} on {dataset}, mean Dice by patch edge: " + "; ".join(parts))
        blocks.append(bullets(lines))
    if not out_of_range.empty:
        lines = []
        for r in out_of_range.itertuples():
            if pd.isna(r.ci_low):
                detail = str(r.status)
            else:
                detail = (
                    f"drop {r.dice_drop:+.3f} (95% CI {_interval(r.ci_low, r.ci_high, 3)}), "
                    f"{r.n_inside} inside / {r.n_outside} outside"
                )
            lines.append(
                f"{r.arch}, patch {r.patch}: Dice inside the training foreground-ratio range "
                f"[{r.fbr_low:.3f}, {r.fbr_high:.3f}] minus outside: {detail}"
            )
        blocks.append(bullets(lines))
    return blocks


def answer_blocks(tables: Mapping[str, pd.DataFrame], studies: Sequence[str]) -> list[str]:
    """Every block of the Answer section, from the analysis tables by name (without ``.csv``)."""
    return [
        *recommendation_blocks(tables["recipe"], studies),
        *conformal_blocks(tables["conformal_summary"]),
        *shift_blocks(tables["shift_coverage"]),
        *findings_blocks(tables["findings"]),
        *context_blocks(tables["bootstrap_ci"], tables["context_out_of_range"]),
    ]
