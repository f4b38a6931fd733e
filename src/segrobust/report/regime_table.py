"""One compact table per study: regime x architecture, the decision marked in it.

Rows are the recipe's regimes, columns the architectures (display names) with each one's mean
Dice over its training runs and the regime's test units (``recipe_rankings.csv``), and a last
column with the decision: the recommended architecture with its effect and t interval
(``recipe.csv``), the equivalent set, or why the regime is inconclusive, in a few words (the
full sentence is in the folded block below the table). The recommended cell is marked with a
check mark and the equivalent ones with ``≈``, so a row reads at a glance without the text.
"""

from __future__ import annotations

import html

import pandas as pd

from segrobust.analysis.recipe import EQUIVALENT, ONLY_ONE, RECOMMENDED
from segrobust.analysis.replicates import ONE_RUN
from segrobust.report.names import display_name
from segrobust.report.readable import readable

WIN_MARK = "\u2714"  # heavy check mark
EQUIVALENT_MARK = "\u2248"  # almost equal to

#: Inconclusive reasons (``segrobust.analysis.recipe``) in a few words: the reason's opening
#: words -> what the table says.
SHORT_REASONS = (
    ("too few units", "too few test units"),
    ("the runs disagree", "the runs disagree"),
    ("no test unit", "no common test unit"),
)


def _interval(row) -> str:
    return f"{row.effect:+.3f} (CI {row.ci_low:+.3f} to {row.ci_high:+.3f})"


def decision_text(row) -> str:
    """The decision of one recipe row in a few words (display names)."""
    if row.decision == RECOMMENDED:
        return f"{WIN_MARK} {display_name(row.recommended)}: {_interval(row)}"
    if row.decision == EQUIVALENT:
        members = ", ".join(display_name(a.strip()) for a in str(row.equivalent).split(","))
        return f"{EQUIVALENT_MARK} {members} (within \u00b1{row.min_effect:g})"
    if row.decision == ONLY_ONE:
        return "one architecture: nothing to compare"
    reason = str(row.reason)
    if reason == ONE_RUN:
        return f"inconclusive: {int(row.n_runs)} run per architecture"
    for opening, short in SHORT_REASONS:
        if reason.startswith(opening):
            return f"inconclusive: {short}"
    if pd.notna(row.ci_low):
        return f"inconclusive: {_interval(row)} vs \u00b1{row.min_effect:g}"
    return f"inconclusive: {readable(reason)}"


def _means(recipe: pd.DataFrame, rankings: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice per (regime, architecture), from the rankings, else the recipe's leader."""
    means = rankings.pivot_table(
        index="regime", columns="arch", values="mean_dice", aggfunc="first"
    )
    for row in recipe.itertuples(index=False):
        if row.regime not in means.index or means.loc[row.regime].isna().all():
            if isinstance(row.leader, str) and row.leader:
                means.loc[row.regime, row.leader] = row.mean_dice
    return means


def _marks(row) -> dict[str, str]:
    if row.decision == RECOMMENDED:
        return {row.recommended: "win"}
    if row.decision == EQUIVALENT:
        return {a.strip(): "eq" for a in str(row.equivalent).split(",")}
    return {}


def regime_table(recipe: pd.DataFrame, rankings: pd.DataFrame) -> str:
    """The HTML table of one study's ``recipe`` rows and their ``rankings`` rows."""
    if recipe.empty:
        return "<p><em>No regime was evaluated.</em></p>"
    means = _means(recipe, rankings)
    archs = means.mean(axis=0).sort_values(ascending=False).index.tolist()
    header = "".join(f"<th>{html.escape(display_name(a))}</th>" for a in archs)
    body = []
    for row in recipe.itertuples(index=False):
        marks = _marks(row)
        cells = []
        for arch in archs:
            value = means.loc[row.regime, arch] if row.regime in means.index else float("nan")
            text = "" if pd.isna(value) else f"{value:.2f}"
            mark = marks.get(arch)
            if mark and text:
                symbol = WIN_MARK if mark == "win" else EQUIVALENT_MARK
                cells.append(f'<td class="{mark}">{symbol} {text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        runs = f"{int(row.n_runs)}\u00d7{int(row.n_units)}"
        css = "" if row.decision in (RECOMMENDED, EQUIVALENT) else ' class="undecided"'
        body.append(
            f"<tr{css}><td>{html.escape(readable(row.regime))}</td>{''.join(cells)}"
            f"<td>{runs}</td><td>{html.escape(decision_text(row))}</td></tr>"
        )
    return (
        f"<table class='regimes'><tr><th>regime</th>{header}<th>runs\u00d7units</th>"
        f"<th>decision</th></tr>{''.join(body)}</table>"
    )
