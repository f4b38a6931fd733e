"""The architecture recipe: one question per regime, answered across training runs and images.

The regimes (complexity bins, train -> test alpha shifts, perturbation levels, context patch
sizes inside / outside the training range) are ``segrobust.analysis.regimes``'. Within a regime
every architecture's training runs (seeds) are evaluated on the same independent test units
(``segrobust.analysis.units``: texture image index, else test image / volume), so the data of
one architecture is a runs x units matrix of Dice.

Decision per regime (``decide``). The **leader** L is the architecture with the highest mean
Dice (over its runs and the units). For each rival B the contrast ``mean(L) - mean(B)`` is
estimated with its two-part standard error and t interval at level ``1 - significance``
(``segrobust.analysis.replicates``: run-to-run and image variance, Welch-Satterthwaite df), and
classed against the minimum relevant difference ``min_effect`` (``analysis.min_effect``):

* **recommended**: L's interval lies above ``+min_effect`` against **every** rival. This is an
  intersection-union test (L is declared best only if each of its k - 1 comparisons is): its
  level is that of one comparison, so no multiplicity correction (Holm) is needed. Only the
  leader can pass it: a rival with the lower mean has an estimate, and so an interval, below it.
* **equivalent**: against every rival, L's interval lies either above ``+min_effect`` or inside
  ``(-min_effect, +min_effect)``, at least one inside: "use any of L, B (equivalent within
  +-min_effect); C clearly worse than L".
* **inconclusive**: anything else, with the reason in words: one training run per architecture
  (the run variance cannot be estimated), too few units (``analysis.min_cases``), the runs
  disagree (a seed of L below every seed of the rival, or the reverse), or an interval that
  crosses the minimum effect.

Each row reports the closest comparison (the rival whose comparison decided, else the one with
the lowest interval), its effect (mean difference), interval, df and p, the run-to-run agreement
(in how many of the R_L x R_B run pairs L's run mean is higher, and on what share of units L's
seed-averaged Dice is higher) and ``p_first``, the share of two-level bootstrap resamples in
which L ranks first (``replicates.ranking_stability``; descriptive, not a test). The long-form
``recipe_comparisons`` table has L against every rival; ``recipe_rankings`` every architecture's
mean, rank and bootstrap stability per regime.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from segrobust.analysis import replicates as rep
from segrobust.analysis.regimes import Regime, all_regimes
from segrobust.analysis.units import run_unit_matrix, runs_by_unit, unit_noun

RECOMMENDED = "recommended"
EQUIVALENT = "equivalent"
INCONCLUSIVE = "inconclusive"
ONLY_ONE = "only one architecture"

RECIPE_COLUMNS = [
    "study", "regime_kind", "regime", "low", "high", "decision", "recommended", "equivalent",
    "clearly_worse", "leader", "runner_up", "mean_dice", "runner_up_mean_dice", "effect",
    "ci_low", "ci_high", "df", "p_value", "min_effect", "n_units", "n_runs", "n_archs",
    "runs_ahead", "run_pairs", "share_units_ahead", "p_first", "unit", "reason", "sentence",
]  # fmt: skip
COMPARISON_COLUMNS = [
    "study", "regime_kind", "regime", "arch", "rival", "n_units", "n_runs_arch", "n_runs_rival",
    "mean_dice", "rival_mean_dice", "difference", "se", "df", "ci_low", "ci_high", "p_value",
    "comparison", "runs_ahead", "run_pairs", "share_units_ahead",
]  # fmt: skip
RANKING_COLUMNS = [
    "study", "regime_kind", "regime", "arch", "n_runs", "n_units", "mean_dice", "rank",
    "p_first", "rank_stability", "n_bootstrap",
]  # fmt: skip


@dataclass(frozen=True)
class RecipeSettings:
    """The analysis settings a decision uses (the config's ``analysis`` keys of the same names)."""

    significance: float = 0.05
    min_effect: float = 0.01
    min_cases: int = 10
    n_bootstrap: int = 1000

    @property
    def level(self) -> float:
        return 1.0 - self.significance


def _common_units(arms: dict[str, pd.DataFrame]) -> pd.Index:
    frames = list(arms.values())
    units = frames[0].columns
    for frame in frames[1:]:
        units = units.intersection(frame.columns, sort=False)
    return units


def _runner_up(leader, means, contrasts, classes) -> str:
    """The leader's closest comparison: an undecided rival with the lowest interval first, then
    the equivalent rival with the highest mean, else the rival with the lowest interval."""
    rivals = [b for b in means if b != leader]

    def low(b):
        value = contrasts[b].ci_low
        return -np.inf if np.isnan(value) else value

    undecided = [b for b in rivals if classes[b] == rep.UNDECIDED]
    if undecided:
        return min(undecided, key=lambda b: (low(b), -means[b], b))
    equivalent = [b for b in rivals if classes[b] == rep.EQUIVALENT]
    if equivalent:
        return max(equivalent, key=lambda b: (means[b], b))
    return min(rivals, key=lambda b: (low(b), -means[b], b))


def _decision(leader, runner_up, n, n_runs, classes, contrasts, agreements, s):
    """(decision, reason) from the comparison classes (module docstring)."""
    if n == 0:
        return INCONCLUSIVE, "no test unit was evaluated by every run of every architecture"
    if min(n_runs.values()) < 2:
        return INCONCLUSIVE, rep.ONE_RUN
    if n < s.min_cases:
        return INCONCLUSIVE, f"too few units: n = {n} < analysis.min_cases = {s.min_cases}"
    values = set(classes.values())
    if values == {rep.AHEAD}:
        return RECOMMENDED, (
            f"the {s.level:.0%} CI of {leader} minus each of its {len(classes)} rival(s) lies "
            f"above the minimum effect +{s.min_effect:g}"
        )
    if values <= {rep.AHEAD, rep.EQUIVALENT}:
        return EQUIVALENT, (
            f"against every rival the {s.level:.0%} CI of {leader} minus the rival lies above "
            f"+{s.min_effect:g} or inside +-{s.min_effect:g}"
        )
    c, agree = contrasts[runner_up], agreements[runner_up]
    if not c.defined:
        return INCONCLUSIVE, c.reason
    if agree.first_run_below:
        return INCONCLUSIVE, (
            f"the runs disagree: seed {agree.first_run_below} of {leader} is below every seed "
            f"of {runner_up}"
        )
    if agree.second_run_above:
        return INCONCLUSIVE, (
            f"the runs disagree: seed {agree.second_run_above} of {runner_up} is above every "
            f"seed of {leader}"
        )
    return INCONCLUSIVE, (
        f"the {s.level:.0%} CI of {leader} - {runner_up} ({c.ci_low:+.3f} to {c.ci_high:+.3f}) "
        f"neither lies above the minimum effect +{s.min_effect:g} nor inside "
        f"+-{s.min_effect:g}"
    )


def decide(arms: dict[str, pd.DataFrame], settings: RecipeSettings, rng: np.random.Generator):
    """The decision of one regime from each architecture's runs x units Dice matrix.

    Returns:
        (decision dict with the RECIPE_COLUMNS decision fields, comparison rows of the leader
        against every rival, ranking rows of every architecture).
    """
    s = settings
    names = sorted(arms)
    units = _common_units(arms)
    arms = {a: arms[a][units] for a in names}
    n = len(units)
    means = {a: float(arms[a].to_numpy().mean()) if n else np.nan for a in names}
    n_runs = {a: len(arms[a].index) for a in names}
    leader = sorted(names, key=lambda a: (-np.nan_to_num(means[a], nan=-np.inf), a))[0]
    base = dict(n_units=n, n_runs=min(n_runs.values()), n_archs=len(names),
                min_effect=s.min_effect, leader=leader, mean_dice=means[leader])  # fmt: skip
    if len(names) == 1:
        only = "only one architecture was evaluated: nothing to compare"
        return dict(base, decision=ONLY_ONE, reason=only), [], []
    rivals = [b for b in names if b != leader]
    contrasts = {b: rep.difference(arms[leader], arms[b], s.level, (leader, b)) for b in rivals}
    classes = {b: rep.comparison_class(contrasts[b], s.min_effect) for b in rivals}
    agreements = {b: rep.agreement(arms[leader], arms[b]) for b in rivals}
    runner_up = _runner_up(leader, means, contrasts, classes)
    decision, reason = _decision(leader, runner_up, n, n_runs, classes, contrasts, agreements, s)
    ranking = rep.ranking_stability(arms, s.n_bootstrap, rng) if n else pd.DataFrame()
    p_first = float(ranking.set_index("arch").loc[leader, "p_first"]) if n else np.nan
    c, agree = contrasts[runner_up], agreements[runner_up]
    equivalent = [leader] + [b for b in rivals if classes[b] == rep.EQUIVALENT]
    result = dict(
        base,
        decision=decision,
        recommended=leader if decision == RECOMMENDED else "",
        equivalent=", ".join(equivalent) if decision == EQUIVALENT else "",
        clearly_worse=", ".join(b for b in rivals if classes[b] == rep.AHEAD),
        runner_up=runner_up,
        runner_up_mean_dice=means[runner_up],
        effect=c.estimate,
        ci_low=c.ci_low,
        ci_high=c.ci_high,
        df=c.df,
        p_value=c.p_value,
        runs_ahead=agree.runs_ahead,
        run_pairs=agree.run_pairs,
        share_units_ahead=agree.share_units_ahead,
        p_first=p_first,
        reason=reason,
    )
    comparisons = [
        dict(arch=leader, rival=b, n_units=n, n_runs_arch=n_runs[leader], n_runs_rival=n_runs[b],
             mean_dice=means[leader], rival_mean_dice=means[b], difference=contrasts[b].estimate,
             se=contrasts[b].se, df=contrasts[b].df, ci_low=contrasts[b].ci_low,
             ci_high=contrasts[b].ci_high, p_value=contrasts[b].p_value, comparison=classes[b],
             runs_ahead=agreements[b].runs_ahead, run_pairs=agreements[b].run_pairs,
             share_units_ahead=agreements[b].share_units_ahead)
        for b in rivals
    ]  # fmt: skip
    rankings = ranking.assign(n_bootstrap=s.n_bootstrap).to_dict("records") if n else []
    return result, comparisons, rankings


def _runs_text(d: dict) -> str:
    runs = d["n_runs"]
    plural = "s" if runs != 1 else ""
    return f"{runs} training run{plural} (seed{plural}) per architecture"


def _ci_text(d: dict, level: float) -> str:
    if pd.isna(d.get("ci_low", np.nan)):
        return "no CI"
    return (
        f"{level:.0%} CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f}, t df {d['df']:.1f}, "
        f"p = {d['p_value']:.2g}"
    )


def _agreement_text(d: dict, noun: str) -> str:
    share = d["share_units_ahead"]
    units = "" if pd.isna(share) else f", on {share:.0%} of {noun}"
    return f"{d['leader']} ahead in {d['runs_ahead']} of {d['run_pairs']} run pairs{units}"


def sentence(regime: str, d: dict, level: float, noun: str = "test units") -> str:
    """One plain-English sentence for a regime's decision (see the module docstring)."""
    unit = f"{_runs_text(d)} x {d['n_units']} {noun}"
    if d["decision"] == ONLY_ONE:
        return (
            f"For {regime}, only {d['leader']} was evaluated (mean Dice {d['mean_dice']:.3f}; "
            f"{unit}): no comparison, no recommendation."
        )
    if d["n_units"] == 0:
        return f"For {regime}, inconclusive: {d['reason']}."
    effect = f"mean Dice {d['effect']:+.3f} for {d['leader']} over {d['runner_up']}"
    evidence = f"{effect} ({_ci_text(d, level)}); {_agreement_text(d, noun)}"
    if not pd.isna(d["p_first"]):
        evidence += f"; {d['leader']} ranks first in {d['p_first']:.0%} of bootstrap resamples"
    if d["decision"] == RECOMMENDED:
        return (
            f"For {regime}, use {d['leader']}: {evidence}; the CI lies above the minimum effect "
            f"+{d['min_effect']:g} against every rival ({unit})."
        )
    if d["decision"] == EQUIVALENT:
        worse = d["clearly_worse"]
        tail = f"; {worse} clearly worse than {d['leader']}" if worse else ""
        return (
            f"For {regime}, use any of {d['equivalent']} (equivalent within "
            f"+-{d['min_effect']:g} Dice){tail}: closest comparison {evidence} ({unit})."
        )
    if d["reason"] == rep.ONE_RUN:
        return (
            f"For {regime}, inconclusive: {d['reason']}; highest mean Dice {d['leader']} "
            f"{d['mean_dice']:.3f}, next {d['runner_up']} {d['runner_up_mean_dice']:.3f} "
            f"({unit})."
        )
    return f"For {regime}, inconclusive: {d['reason']}; closest comparison: {evidence} ({unit})."


def _decide(regime: Regime, settings: RecipeSettings, rng):
    head = dict(study=regime.study, regime_kind=regime.kind, regime=regime.label)
    edges = dict(low=regime.low, high=regime.high)
    matrix = run_unit_matrix(regime.rows, "arch", "dice")
    archs = sorted(regime.rows["arch"].dropna().unique())
    if matrix.empty:
        arms = {a: pd.DataFrame() for a in archs}
    else:
        arms = {a: runs_by_unit(matrix, a) for a in matrix.columns.get_level_values(0).unique()}
    noun = unit_noun(regime.study)
    decision, comparisons, rankings = decide(arms, settings, rng)
    decision["unit"] = f"training runs (seeds) x {noun}"
    text = sentence(regime.label, decision, settings.level, noun)
    row = dict(head, **edges, **decision, sentence=text)
    return row, [dict(head, **c) for c in comparisons], [dict(head, **r) for r in rankings]


def recipe_tables(
    per_image: pd.DataFrame,
    fbr_ranges: pd.DataFrame | None = None,
    n_bins: int = 3,
    settings: RecipeSettings | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(recipe, comparisons of each regime's leader with every rival, rankings per regime).

    Args:
        per_image: contract-4 rows of every study present.
        fbr_ranges: ``context.training_fbr_range`` for the context regimes (None: none).
        n_bins: quantile bins of complexity (``analysis.complexity_bins``).
        settings: significance, min_effect, min_cases and n_bootstrap (``RecipeSettings``).
        seed: seed of the ranking bootstrap.
    """
    if n_bins < 1:
        raise ValueError(f"analysis.complexity_bins must be >= 1, got {n_bins}")
    settings = settings or RecipeSettings()
    rng = np.random.default_rng(seed)
    rows, comparisons, rankings = [], [], []
    for regime in all_regimes(per_image, fbr_ranges, n_bins):
        row, compared, ranked = _decide(regime, settings, rng)
        rows.append(row)
        comparisons += compared
        rankings += ranked
    return (
        pd.DataFrame(rows, columns=RECIPE_COLUMNS),
        pd.DataFrame(comparisons, columns=COMPARISON_COLUMNS),
        pd.DataFrame(rankings, columns=RANKING_COLUMNS),
    )


def recipe(per_image: pd.DataFrame, fbr_ranges=None, n_bins: int = 3, **kwargs) -> pd.DataFrame:
    """The recipe table alone (``recipe_tables``' first table)."""
    return recipe_tables(per_image, fbr_ranges, n_bins, **kwargs)[0]


def recipe_markdown(table: pd.DataFrame) -> str:
    """The recipe's sentences as a Markdown list, grouped by regime kind."""
    lines = ["# Architecture recipe", ""]
    if table.empty:
        lines.append("No regime had test images: no recipe.")
    for kind, rows in table.groupby("regime_kind", sort=False):
        lines += [f"## {kind}", ""] + [f"- {s}" for s in rows["sentence"]] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"
