"""Each study's answer in at most five plain lines, computed from the analysis tables.

The report opens with these lines for every study, on the first screen: what the architecture
claims are ("UNet++ wins 11 of 15 texture regimes", or why there is none: "no architecture
claim: 1 training run per architecture (set seeds: [1, 2, 3])"), where the answer changes ("from
speckle noise severity 3 on, use No-skip U-Net"), how far one result can be trusted ("Dice
bounds hold only for images like the calibration set ..."), the papers' findings as counts and,
for the context study, the foreground-ratio drop. Nothing is written by hand: every line is a
count or a value of ``recipe.csv``, ``conformal_summary.csv``, ``findings.csv`` or
``context_out_of_range.csv``, and names are display names.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from segrobust.analysis.recipe import EQUIVALENT, INCONCLUSIVE, ONLY_ONE, RECOMMENDED
from segrobust.analysis.regimes import parse_perturbation_label
from segrobust.analysis.replicates import ONE_RUN
from segrobust.report.names import display_name, perturbation_display_name

#: The most lines a study's verdict has.
MAX_LINES = 5

#: What the verdict suggests when one run per architecture blocks every claim (the config key).
SEEDS_HINT = "set seeds: [1, 2, 3]"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def claims_line(study: str, rows: pd.DataFrame) -> str:
    """How many regimes each architecture wins, or why no architecture claim is made."""
    if rows.empty:
        return f"no {study} regime was evaluated"
    compared = rows[rows["decision"] != ONLY_ONE]
    if compared.empty:
        only = ", ".join(sorted({display_name(a) for a in rows["leader"].dropna()}))
        return f"only {only} trained: no architecture to compare"
    decisions = compared["decision"]
    if (decisions == INCONCLUSIVE).all() and (compared["reason"] == ONE_RUN).all():
        runs = int(compared["n_runs"].min())
        return (
            f"no architecture claim: {_plural(runs, 'training run')} per architecture "
            f"({SEEDS_HINT})"
        )
    n = len(compared)
    wins = compared.loc[decisions == RECOMMENDED, "recommended"].value_counts()
    if wins.empty:
        head = f"no architecture wins a {study} regime ({n} compared)"
    else:
        ordered = sorted(wins.items(), key=lambda item: (-item[1], display_name(item[0])))
        (top, k), others = ordered[0], ordered[1:]
        head = f"{display_name(top)} wins {k} of {n} {study} regimes"
        head += "".join(f", {display_name(arch)} {count}" for arch, count in others)
    rest = [
        f"{count} {what}"
        for what, count in (
            ("equivalent", int((decisions == EQUIVALENT).sum())),
            ("inconclusive", int((decisions == INCONCLUSIVE).sum())),
        )
        if count
    ]
    return head + (f"; {', '.join(rest)}" if rest else "")


def _perturbation_trends(rows: pd.DataFrame) -> list[str]:
    """Per perturbation, the severity from which on one architecture is recommended."""
    parsed = [(parse_perturbation_label(r.regime), r) for r in rows.itertuples(index=False)]
    by_perturbation: dict[str, list] = {}
    for key, row in parsed:
        if key is not None:
            by_perturbation.setdefault(key[0], []).append((key[1], row))
    trends = []
    for perturbation, items in by_perturbation.items():
        items.sort(key=lambda item: item[0])
        chosen = [r.recommended if r.decision == RECOMMENDED else "" for _, r in items]
        arch, start = chosen[-1], len(chosen) - 1
        if not arch:
            continue
        while start > 0 and chosen[start - 1] == arch:
            start -= 1
        name = perturbation_display_name(perturbation)
        severities = [s for s, _ in items]
        if start == 0:
            where = f"at every {name} severity tested ({_span(severities)})"
        else:
            where = f"from {name} severity {severities[start]} on"
        trends.append(f"{where}, use {display_name(arch)}")
    return trends


def _span(values: list[int]) -> str:
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _regime_choices(rows: pd.DataFrame) -> list[str]:
    """The regimes with a recommendation, as "<regime>: <architecture>"."""
    chosen = rows[rows["decision"] == RECOMMENDED]
    return [f"{r.regime}: {display_name(r.recommended)}" for r in chosen.itertuples(index=False)]


def where_line(study: str, rows: pd.DataFrame) -> str | None:
    """Where the recommendation lies: the severity from which it holds (perturbation), the
    complexity bins (texture), the foreground-ratio side (context); None without any."""
    if study == "perturbation":
        items = _perturbation_trends(rows)
    elif study == "texture":
        items = _regime_choices(rows[rows["regime_kind"] == "complexity"])
    else:
        items = _regime_choices(rows)
    if not items:
        return None
    shown = items[:3]
    more = f"; {len(items) - 3} more in the table below" if len(items) > 3 else ""
    return "; ".join(shown) + more


def bounds_line(summary: pd.DataFrame) -> str | None:
    """How far one result can be trusted: the conformal Dice bound, or why there is none."""
    if summary.empty:
        return None
    target = float(summary["target"].iloc[0])
    level = f"{target:.0%} confidence"
    defined = summary.dropna(subset=["median_dice_lower_bound"])
    if defined.empty:
        have = int(summary["n_calibration"].min())
        need = int(summary["min_calibration"].max())
        return (
            f"no Dice bound: {_plural(have, 'calibration image')} per model, {need} needed for "
            f"{level} (raise n_calibration or split.calibration_fraction)"
        )
    bounds = defined.sort_values("median_dice_lower_bound")
    low, high = bounds.iloc[0], bounds.iloc[-1]
    span = f"{low['median_dice_lower_bound']:.2f} ({display_name(low['arch'])})"
    if len(bounds) > 1:
        span += f" to {high['median_dice_lower_bound']:.2f} ({display_name(high['arch'])})"
    coverage = defined["coverage"].dropna()
    measured = (
        f"; measured coverage {coverage.min():.2f}-{coverage.max():.2f}" if len(coverage) else ""
    )
    return (
        f"Dice bounds hold only for images like the calibration set: median bound {span} at "
        f"{level}{measured}"
    )


def findings_line(findings: pd.DataFrame) -> str | None:
    """The papers' findings of the study, counted by outcome."""
    if findings.empty:
        return None
    counts = findings["reproduced"].value_counts()
    words = {
        "yes": "reproduced",
        "no": "not reproduced",
        "inconclusive": "inconclusive",
        "not run": "not run",
    }
    parts = [f"{counts[key]} {word}" for key, word in words.items() if key in counts]
    return f"the papers' findings: {', '.join(parts)}"


def context_line(out_of_range: pd.DataFrame) -> str | None:
    """The largest Dice drop outside the training foreground-ratio range (with its CI), else
    why there is none."""
    if out_of_range.empty:
        return None
    with_ci = out_of_range.dropna(subset=["ci_low", "ci_high", "dice_drop"])
    if with_ci.empty:
        return (
            "Dice outside the training foreground-ratio range: no CI (too few test images a side)"
        )
    row = with_ci.loc[with_ci["dice_drop"].idxmax()]
    evidence = (
        f"{row['dice_drop']:.2f} (95% CI {row['ci_low']:.2f} to {row['ci_high']:.2f}; "
        f"{display_name(row['arch'])}, patch {row['patch']})"
    )
    if row["ci_low"] > 0:
        return f"outside the training foreground-ratio range, Dice drops by {evidence}"
    return f"no clear Dice drop outside the training foreground-ratio range: at most {evidence}"


def study_verdict(study: str, tables: Mapping[str, pd.DataFrame]) -> list[str]:
    """At most `MAX_LINES` plain lines answering the study, from the analysis tables by name."""
    recipe = tables["recipe"]
    rows = recipe[recipe["study"] == study]
    summary = tables["conformal_summary"]
    findings = tables["findings"]
    lines = [
        claims_line(study, rows),
        where_line(study, rows),
        bounds_line(summary[summary["study"] == study]),
        findings_line(findings[findings["study"] == study]),
    ]
    if study == "context":
        lines.append(context_line(tables["context_out_of_range"]))
    return [line for line in lines if line][:MAX_LINES]
