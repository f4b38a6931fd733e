"""The report's first section: the answer, from the analysis tables, verdicts first.

Nothing is computed here that the analysis did not compute. The section opens with every
study's verdict, at most five plain lines each (`segrobust.report.verdict`), all on the first
screen; then one compact regime x architecture table per study with the decision marked in it
(`segrobust.report.regime_table`) and the recipe's per-regime sentences folded below it; then
the per-architecture conformal Dice bound with its measured coverage (``conformal_summary.csv``),
where that rating holds and where it is withheld per kind of shift (``shift_coverage.csv``:
"holds for: ...; withheld for: ...", with a warning wherever rated images fall below the target)
and the papers' findings (``findings.csv``) as small tables, and, folded, the context study's
Dice per patch size (``bootstrap_ci.csv``) and out-of-range drop (``context_out_of_range.csv``).
Architectures and perturbations are shown by their display names, inside the analysis's
sentences too (`segrobust.report.readable`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import pandas as pd

from segrobust.analysis.shift_coverage import BELOW, rating_limit_statements
from segrobust.report.html import bullets, heading, paragraph, table
from segrobust.report.names import display_name
from segrobust.report.readable import readable
from segrobust.report.regime_table import EQUIVALENT_MARK, WIN_MARK, regime_table
from segrobust.report.verdict import study_verdict

REPRODUCED_CLASSES = {"yes": "yes", "no": "no", "inconclusive": "inconclusive"}


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if pd.isna(value) else f"{value:.{digits}f}"


def _interval(low: float, high: float, digits: int = 2) -> str:
    if pd.isna(low) or pd.isna(high):
        return "no CI"
    return f"{low:.{digits}f} to {high:.{digits}f}"


def study_title(study: str) -> str:
    return f"{study.capitalize()} study"


def verdict_blocks(tables: Mapping[str, pd.DataFrame], studies: Sequence[str]) -> list[str]:
    """Every study's verdict lines, one box each (class ``verdict``, one ``li`` per line)."""
    boxes = []
    for study in studies:
        lines = "".join(
            f"<li>{html.escape(readable(line))}</li>" for line in study_verdict(study, tables)
        )
        boxes.append(
            f"<div class='verdict' id='verdict-{study}'><b>{study_title(study)}</b>"
            f"<ul>{lines}</ul></div>"
        )
    return [f"<div class='verdicts'>{''.join(boxes)}</div>"]


def recommendation_blocks(
    recipe: pd.DataFrame, rankings: pd.DataFrame, studies: Sequence[str]
) -> list[str]:
    """Per study: the regime x architecture table, then its per-regime sentences folded."""
    blocks = [heading("Which architecture to use, regime by regime")]
    if recipe.empty:
        return [*blocks, paragraph("No regime had images evaluated by two or more architectures.")]
    blocks.append(
        paragraph(
            f"Mean Dice per architecture over its training runs and the regime's test units; "
            f"{WIN_MARK} recommended (the CI of its mean Dice minus every rival's lies above "
            f"the minimum relevant difference), {EQUIVALENT_MARK} equivalent (within it)."
        )
    )
    for study in studies:
        rows = recipe[recipe["study"] == study]
        if rows.empty:
            continue
        ranked = rankings[rankings["study"] == study]
        blocks.append(heading(study_title(study), 4))
        blocks.append(f"<div class='tablewrap'>{regime_table(rows, ranked)}</div>")
        blocks.append(
            f"<details><summary>The {len(rows)} regimes in sentences, with the evidence"
            f"</summary>{bullets(readable(s) for s in rows['sentence'])}</details>"
        )
    return blocks


def conformal_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per study and architecture: the median Dice bound, its measured coverage, the images
    (display names; ``no bound`` with the reason where it is undefined)."""
    rows = []
    for r in summary.itertuples(index=False):
        defined = not pd.isna(r.median_dice_lower_bound)
        rows.append(
            {
                "study": r.study,
                "architecture": display_name(r.arch),
                f"median Dice bound at {r.target:.0%}": (
                    f"{r.median_dice_lower_bound:.2f}"
                    if defined
                    else f"none: {int(r.min_calibration)} calibration images needed"
                ),
                "measured coverage (95% CI)": (
                    f"{_fmt(r.coverage)} ({_interval(r.coverage_ci_low, r.coverage_ci_high)})"
                    if defined
                    else ""
                ),
                "calibration / test images": f"{int(r.n_calibration)} / {int(r.n_test)}",
            }
        )
    return pd.DataFrame(rows)


def conformal_blocks(summary: pd.DataFrame) -> list[str]:
    blocks = [heading("How far to trust one result: conformal Dice bounds")]
    if summary.empty:
        return [*blocks, paragraph("No calibration rows: no bound was computed.")]
    blocks.append(
        paragraph(
            "Each test image gets a lower bound on its Dice from the model's own confidence, "
            "calibrated on held-out images the model never saw; it holds for the stated share "
            "of images like the calibration images (split conformal prediction)."
        )
    )
    blocks.append(table(conformal_table(summary)))
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
    blocks.append(bullets(readable(s) for s in rating_limit_statements(shift_coverage)))
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
        arch=shift_coverage["arch"].map(display_name),
        kind=shift_coverage["kind"].map(readable),
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
    shown = shown.rename(columns={"arch": "architecture", "ci": "95% CI", "n_images": "n"})
    blocks.append(
        "<details><summary>Coverage per kind of shift and architecture</summary>"
        f"{table(shown)}</details>"
    )
    return blocks


def findings_table(findings: pd.DataFrame, why: bool = False) -> str:
    """The findings as a table (display names), effect and CI to 3 decimals; ``why`` adds the
    note saying why a finding is not decided."""
    shown = pd.DataFrame(
        {
            "finding": findings["finding"].map(readable),
            "comparison": findings["comparison"].map(readable),
            "expected": findings["expected_direction"],
            "effect": findings["measured_effect"].map(lambda v: _fmt(v, 3)),
            "95% CI": [
                _interval(lo, hi, 3)
                for lo, hi in zip(findings["ci_low"], findings["ci_high"], strict=True)
            ],
            "runs per arm": findings["n_runs"],
            "units": findings["n_units"],
            "reproduced": findings["reproduced"],
        }
    )
    if why:
        shown["why"] = findings["note"].map(lambda v: "" if pd.isna(v) else readable(v))
    return table(shown, classes={"reproduced": REPRODUCED_CLASSES})


def findings_blocks(findings: pd.DataFrame) -> list[str]:
    """The findings decided yes or no as a table; the inconclusive and not run ones folded,
    with their notes (why)."""
    blocks = [heading("The papers' findings in this run")]
    if findings.empty:
        return [*blocks, paragraph("No finding could be evaluated on the studies run.")]
    blocks.append(
        paragraph(
            "Each finding is a contrast between architectures across their training runs and "
            "test images: 'yes' when its CI lies beyond the minimum relevant difference in the "
            "expected direction (above -margin for a non-inferiority claim), 'no' when it lies "
            "on the other side, else inconclusive."
        )
    )
    decided = findings["reproduced"].isin(["yes", "no"])
    if decided.any():
        blocks.append(findings_table(findings[decided]))
    else:
        blocks.append(paragraph("No finding was decided (yes or no) in this run."))
    rest = findings[~decided]
    if not rest.empty:
        counts = rest["reproduced"].value_counts()
        summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
        blocks.append(
            f"<details><summary>{html.escape(summary)}: why</summary>"
            f"{findings_table(rest, why=True)}</details>"
        )
    return blocks


def context_blocks(bootstrap: pd.DataFrame, out_of_range: pd.DataFrame) -> list[str]:
    """Dice per patch size and the out-of-range drop per architecture (context study only),
    folded: the verdict and the regime table carry the answer."""
    means = bootstrap[
        (bootstrap["study"] == "context")
        & (bootstrap["quantity"] == "mean_dice")
        & (bootstrap["condition"] == "clean")
    ]
    if means.empty and out_of_range.empty:
        return []
    lines = []
    for (dataset, arch), rows in means.groupby(["dataset", "arch"], sort=True):
        rows = rows.assign(edge=pd.to_numeric(rows["patch"], errors="coerce"))
        parts = [
            f"{r.patch}: {r.estimate:.2f} ({_interval(r.ci_low, r.ci_high)})"
            for r in rows.sort_values("edge").itertuples()
        ]
        lines.append(
            f"{display_name(arch)} on {dataset}, mean Dice by patch edge: " + "; ".join(parts)
        )
    for r in out_of_range.itertuples():
        if pd.isna(r.ci_low):
            detail = str(r.status)
        else:
            detail = (
                f"drop {r.dice_drop:+.3f} (95% CI {_interval(r.ci_low, r.ci_high, 3)}), "
                f"{r.n_inside} inside / {r.n_outside} outside"
            )
        lines.append(
            f"{display_name(r.arch)}, patch {r.patch}: Dice inside the training foreground-ratio "
            f"range [{r.fbr_low:.3f}, {r.fbr_high:.3f}] minus outside: {detail}"
        )
    return [
        "<details><summary>Context study: Dice per patch size and the drop outside the "
        f"training foreground-ratio range</summary>{bullets(lines)}</details>"
    ]


def answer_blocks(tables: Mapping[str, pd.DataFrame], studies: Sequence[str]) -> list[str]:
    """Every block of the Answer section, from the analysis tables by name (without ``.csv``)."""
    return [
        *verdict_blocks(tables, studies),
        *recommendation_blocks(tables["recipe"], tables["recipe_rankings"], studies),
        *conformal_blocks(tables["conformal_summary"]),
        *shift_blocks(tables["shift_coverage"]),
        *findings_blocks(tables["findings"]),
        *context_blocks(tables["bootstrap_ci"], tables["context_out_of_range"]),
    ]
