"""The architecture recipe: one question per regime, answered with its unit and its direction.

Regimes (``regime_kind``):

* ``complexity`` (texture study): quantile bins of the test images' LBP complexity (bits), over
  the in-domain test rows only (models tested on their own training alpha); the bin's edges are
  the numeric columns ``low`` and ``high`` (the first bin includes ``low``, every bin its
  ``high``: ``pandas.qcut``), so an image can be mapped to its regime by its complexity (empty
  for the other regime kinds);
* ``shift`` (texture study): one regime per (blend direction, train alpha -> test alpha) with
  train != test: the models trained at one alpha, tested at another;
* ``perturbation``: one regime per (perturbation, severity) of the perturbation study, with the
  papers' level name where one applies, and the clean test set (``Unperturbed``);
* ``context``: one regime per (dataset, patch size, test image inside / outside the training
  patches' FBR range of that patch size; ``segrobust.analysis.context``).

The unit is the independent test image (``segrobust.analysis.units``): seeds averaged, in the
texture study one image index. ``n_units`` is the number of such images.

Decision per regime. Architecture A is **recommended** only when it beats each rival B in the
stated direction: the median of the per-unit differences A - B is > 0 and the two-sided paired
Wilcoxon signed-rank test (scipy.stats.wilcoxon) of those differences, Holm-corrected over A's
k - 1 rivals (statsmodels), has adjusted p < ``significance`` for every rival. At most one
architecture can do so (if A beats B, B's median difference to A is negative). Otherwise the row
says **no recommendation** and why: too few units for any p below the level (the smallest
attainable Holm-adjusted p, ``stats.min_attainable_p``), or no architecture significantly ahead
of every rival. Either way the row reports the closest comparison of the leading architecture:
the effect is the median paired Dice difference against its closest rival (a rival it does not
beat in direction first, then the largest adjusted p), with a percentile bootstrap 95% CI that
resamples units (seeded; only with at least ``min_cases`` units), and that comparison's
adjusted p.

The leading architecture when none is recommended is the one whose smallest median paired
difference against any rival is largest (maximin), ties broken by mean Dice: it is the
recommended one whenever one exists, so the effect column always describes the same question.

``mean_dice`` and ``runner_up_mean_dice`` are the leader's and closest rival's means; every
architecture's mean and its comparison with the leader are in the long-form
``comparisons`` table (one row per rival), which keeps the column set fixed whatever
architectures a config runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from segrobust.analysis.context import label_out_of_range
from segrobust.analysis.stats import holm, median_ci, min_attainable_p, wilcoxon_p
from segrobust.analysis.units import unit_matrix

RECOMMENDED = "recommended"
NO_RECOMMENDATION = "no recommendation"
ONLY_ONE = "only one architecture"

RECIPE_COLUMNS = [
    "study",
    "regime_kind",
    "regime",
    "low",
    "high",
    "decision",
    "recommended",
    "leader",
    "runner_up",
    "mean_dice",
    "runner_up_mean_dice",
    "effect",
    "ci_low",
    "ci_high",
    "n_units",
    "n_archs",
    "p_value",
    "min_attainable_p",
    "reason",
    "sentence",
]
COMPARISON_COLUMNS = [
    "study",
    "regime_kind",
    "regime",
    "arch",
    "rival",
    "n_units",
    "mean_dice",
    "rival_mean_dice",
    "median_difference",
    "p_value",
    "p_holm",
    "beats_rival",
]


@dataclass
class Regime:
    """One recipe question: its label and the per-image rows that answer it."""

    study: str
    kind: str
    label: str
    rows: pd.DataFrame
    low: float = np.nan  # numeric bin edges of a complexity regime (NaN for other kinds)
    high: float = np.nan


def pairwise_tests(matrix: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(median difference row - column, two-sided Wilcoxon p) for every ordered pair of archs."""
    archs = list(matrix.columns)
    median = pd.DataFrame(np.nan, index=archs, columns=archs)
    p = pd.DataFrame(np.nan, index=archs, columns=archs)
    for i, a in enumerate(archs):
        for b in archs[i + 1 :]:
            diff = matrix[a] - matrix[b]
            median.loc[a, b], median.loc[b, a] = diff.median(), -diff.median()
            p.loc[a, b] = p.loc[b, a] = wilcoxon_p(matrix[a].to_numpy(), matrix[b].to_numpy())[1]
    return median, p


def holm_against_rivals(p: pd.DataFrame, arch: str) -> pd.Series:
    """Holm-adjusted p of ``arch`` against each rival (the family of its k - 1 comparisons)."""
    raw = p.loc[arch].drop(arch)
    return pd.Series(holm(raw.to_numpy()), index=raw.index)


def beats_every_rival(median: pd.DataFrame, p: pd.DataFrame, arch: str, significance: float):
    """True when ``arch``'s median difference to every rival is > 0 and every Holm p < level."""
    if not (median.loc[arch].drop(arch) > 0).all():
        return False  # checked first: only one arch can pass it, so Holm runs at most once
    return bool((holm_against_rivals(p, arch) < significance).all())


def leading_arch(median: pd.DataFrame, means: pd.Series) -> str:
    """The maximin architecture: largest smallest median difference; ties by mean Dice."""
    worst = pd.Series({a: median.loc[a].drop(a).min() for a in median.index})
    order = sorted(median.index, key=lambda a: (-worst[a], -means[a], a))
    return order[0]


def closest_rival(median: pd.DataFrame, adjusted: pd.Series, leader: str) -> str:
    """The leader's weakest comparison: a rival it does not beat in direction (median <= 0)
    first, then the largest Holm-adjusted p, then the smallest median difference."""
    diffs = median.loc[leader].drop(leader)
    return sorted(diffs.index, key=lambda r: (diffs[r] > 0, -adjusted[r], diffs[r], r))[0]


def decision_reason(
    recommended: bool, n: int, k: int, floor: float, significance: float
) -> tuple[str, str]:
    """(decision, reason): recommended, or why not (too few units, or no clear winner)."""
    if recommended:
        return RECOMMENDED, (
            f"median paired difference > 0 and Holm-adjusted Wilcoxon p < {significance:g} "
            f"against each of {k - 1} rivals"
        )
    if floor >= significance:
        return NO_RECOMMENDATION, (
            f"too few images: with n = {n} and {k - 1} rivals the smallest attainable "
            f"Holm-adjusted p is {floor:.3g} (>= {significance:g})"
        )
    return NO_RECOMMENDATION, (
        "no architecture has a positive median difference with Holm-adjusted Wilcoxon "
        f"p < {significance:g} against every rival"
    )


def compare(
    matrix: pd.DataFrame, significance: float, n_bootstrap: int, rng, min_cases: int = 10
) -> tuple:
    """The decision of one regime from its unit x arch Dice matrix.

    The effect's CI needs ``min_cases`` units (``analysis.min_cases``); with fewer it is NaN.

    Returns:
        (decision dict with the RECIPE_COLUMNS decision fields, comparison rows of the leader).
    """
    archs, n = list(matrix.columns), len(matrix)
    k = len(archs)
    means = matrix.mean(axis=0)
    floor = min_attainable_p(n, k - 1)
    base = dict(n_units=n, n_archs=k, min_attainable_p=floor)
    if k == 1:
        arch = archs[0]
        return dict(
            base,
            decision=ONLY_ONE,
            recommended="",
            leader=arch,
            runner_up="",
            mean_dice=float(means[arch]),
            runner_up_mean_dice=np.nan,
            effect=np.nan,
            ci_low=np.nan,
            ci_high=np.nan,
            p_value=np.nan,
            reason="only one architecture was evaluated: nothing to compare",
        ), []
    median, p = pairwise_tests(matrix)
    winners = [a for a in archs if beats_every_rival(median, p, a, significance)]
    leader = winners[0] if winners else leading_arch(median, means)
    adjusted = holm_against_rivals(p, leader)
    rival = closest_rival(median, adjusted, leader)
    low, high = median_ci(matrix[leader] - matrix[rival], n_bootstrap, rng, min_cases=min_cases)
    decision, reason = decision_reason(bool(winners), n, k, floor, significance)
    comparisons = [
        dict(
            arch=leader,
            rival=r,
            n_units=n,
            mean_dice=float(means[leader]),
            rival_mean_dice=float(means[r]),
            median_difference=float(median.loc[leader, r]),
            p_value=float(p.loc[leader, r]),
            p_holm=float(adjusted[r]),
            beats_rival=bool(median.loc[leader, r] > 0 and adjusted[r] < significance),
        )
        for r in adjusted.index
    ]
    return dict(
        base,
        decision=decision,
        recommended=leader if winners else "",
        leader=leader,
        runner_up=rival,
        mean_dice=float(means[leader]),
        runner_up_mean_dice=float(means[rival]),
        effect=float(median.loc[leader, rival]),
        ci_low=low,
        ci_high=high,
        p_value=float(adjusted[rival]),
        reason=reason,
    ), comparisons


def sentence(regime: str, d: dict, significance: float) -> str:
    """One plain-English sentence for a regime's decision (see the module docstring)."""
    n_text = f"n = {d['n_units']} image{'s' if d['n_units'] != 1 else ''}"
    if np.isnan(d.get("ci_low", np.nan)):
        ci = "no 95% CI: too few images"
    else:
        ci = f"95% CI {d['ci_low']:.3f} to {d['ci_high']:.3f}"
    if d["decision"] == ONLY_ONE:
        return (
            f"For {regime}, only {d['leader']} was evaluated (mean Dice {d['mean_dice']:.2f}, "
            f"{n_text}): no comparison, no recommendation."
        )
    if d["n_units"] == 0:
        return f"For {regime}, no recommendation: no image was evaluated by every architecture."
    comparison = (
        f"median Dice {d['effect']:+.3f} for {d['leader']} over {d['runner_up']} "
        f"({ci}), {n_text}, Holm-adjusted "
        f"Wilcoxon p = {d['p_value']:.3g}"
    )
    if d["decision"] == RECOMMENDED:
        return (
            f"For {regime}, use {d['leader']}: median Dice {d['effect']:+.3f} over "
            f"{d['runner_up']} ({ci}), {n_text}, "
            f"Holm-adjusted Wilcoxon p = {d['p_value']:.3g}."
        )
    if d["min_attainable_p"] >= significance:
        return (
            f"For {regime}, no recommendation: with {n_text} the smallest attainable p is "
            f"{d['min_attainable_p']:.3g} (>= {significance:g}); closest comparison: "
            f"{comparison}."
        )
    return (
        f"For {regime}, no recommendation: no architecture is significantly better than every "
        f"other; closest comparison: {comparison}."
    )


def _decide(regime: Regime, significance: float, n_bootstrap: int, rng, min_cases: int):
    head = dict(study=regime.study, regime_kind=regime.kind, regime=regime.label)
    edges = dict(low=regime.low, high=regime.high)
    matrix = unit_matrix(regime.rows, "arch", "dice")
    if matrix.empty:  # no image has a Dice from every architecture
        k = regime.rows["arch"].nunique()
        decision = dict(
            decision=NO_RECOMMENDATION,
            recommended="",
            leader="",
            runner_up="",
            mean_dice=np.nan,
            runner_up_mean_dice=np.nan,
            effect=np.nan,
            ci_low=np.nan,
            ci_high=np.nan,
            n_units=0,
            n_archs=k,
            p_value=np.nan,
            min_attainable_p=1.0,
            reason="no image was evaluated by every architecture",
        )
        comparisons = []
    else:
        decision, comparisons = compare(matrix, significance, n_bootstrap, rng, min_cases)
    row = dict(head, **edges, **decision, sentence=sentence(regime.label, decision, significance))
    return row, [dict(head, **c) for c in comparisons]


def _alpha(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def complexity_regimes(texture: pd.DataFrame, n_bins: int) -> list[Regime]:
    """Quantile bins of complexity over the in-domain texture test rows.

    The bin edges are quantiles of the distinct in-domain test images' complexity (each
    (test dataset, image) once, whatever the number of architectures and seeds).
    """
    rows = texture[_alpha(texture["train_alpha"]) == _alpha(texture["test_alpha"])]
    rows = rows.dropna(subset=["complexity"])
    if rows.empty:
        return []
    images = rows.groupby(["test_dataset", "image_id"])["complexity"].mean()
    if images.nunique() > 1:
        codes, edges = pd.qcut(images, q=n_bins, labels=False, retbins=True, duplicates="drop")
    else:
        codes, edges = pd.Series(0, index=images.index), np.repeat(images.iloc[0], 2)
    bin_of = pd.Series(np.asarray(codes, dtype=int), index=images.index)
    keyed = pd.MultiIndex.from_frame(rows[["test_dataset", "image_id"]])
    row_bins = bin_of.reindex(keyed).to_numpy()
    regimes = []
    for code in sorted(set(row_bins)):
        label = f"complexity {edges[code]:.2f}-{edges[code + 1]:.2f} bits"
        low, high = float(edges[code]), float(edges[code + 1])
        regimes.append(Regime("texture", "complexity", label, rows[row_bins == code], low, high))
    return regimes


def shift_regimes(texture: pd.DataFrame) -> list[Regime]:
    """One regime per (direction, train alpha -> test alpha), train != test."""
    train, test = _alpha(texture["train_alpha"]), _alpha(texture["test_alpha"])
    rows = texture[(train != test) & train.notna() & test.notna()]
    rows = rows.assign(_train=train, _test=test)
    regimes = []
    for (direction, a, b), group in rows.groupby(["direction", "_train", "_test"], sort=True):
        harder = "harder" if b > a else "easier"
        label = f"{direction} blend, trained at alpha {a:g}, tested at alpha {b:g} ({harder})"
        regimes.append(Regime("texture", "shift", label, group.drop(columns=["_train", "_test"])))
    return regimes


def perturbation_label(perturbation: str, severity: int, level) -> str:
    """``speckle severity 3 (Harder)``, without the level when the rows have none."""
    if perturbation == "none":
        return "clean test images (Unperturbed)"
    text = f"{perturbation} severity {int(severity)}"
    return f"{text} ({level})" if isinstance(level, str) and level else text


def perturbation_regimes(perturbation_rows: pd.DataFrame) -> list[Regime]:
    """One regime per (perturbation, severity), the clean test set first."""
    rows = perturbation_rows.assign(_clean=perturbation_rows["perturbation"] != "none")
    regimes = []
    keys = ["_clean", "perturbation", "severity"]
    for (_, perturbation, severity), group in rows.groupby(keys, sort=True):
        levels = group["level"].dropna()
        level = levels.iloc[0] if len(levels) else ""
        label = perturbation_label(perturbation, severity, level)
        regimes.append(Regime("perturbation", "perturbation", label, group.drop(columns="_clean")))
    return regimes


def context_regimes(per_image: pd.DataFrame, fbr_ranges: pd.DataFrame) -> list[Regime]:
    """One regime per (dataset, patch size, inside / outside the training FBR range)."""
    rows = label_out_of_range(per_image, fbr_ranges)
    if rows.empty:
        return []
    rows = rows.assign(_patch=pd.to_numeric(rows["patch"], errors="coerce"))
    regimes = []
    for (dataset, _, patch, outside), group in rows.groupby(
        ["dataset", "_patch", "patch", "outside"], sort=True, dropna=False
    ):
        low, high = group["fbr_low"].iloc[0], group["fbr_high"].iloc[0]
        where = "outside" if outside else "inside"
        label = (
            f"{dataset}, patch {patch}, test foreground ratio {where} the training range "
            f"{low:.3f}-{high:.3f}"
        )
        regimes.append(Regime("context", "context", label, group.drop(columns="_patch")))
    return regimes


def all_regimes(per_image: pd.DataFrame, fbr_ranges, n_bins: int) -> list[Regime]:
    """Every regime of the test split, in report order (kinds, then their natural order)."""
    test = per_image[per_image["split"] == "test"]
    texture = test[test["study"] == "texture"]
    regimes = complexity_regimes(texture, n_bins) + shift_regimes(texture)
    regimes += perturbation_regimes(test[test["study"] == "perturbation"])
    if fbr_ranges is not None and not fbr_ranges.empty:
        regimes += context_regimes(test, fbr_ranges)
    return regimes


def recipe_tables(
    per_image: pd.DataFrame,
    fbr_ranges: pd.DataFrame | None = None,
    n_bins: int = 3,
    significance: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int = 0,
    min_cases: int = 10,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(recipe table, long-form comparisons of each regime's leader with every rival).

    Args:
        per_image: contract-4 rows of every study present.
        fbr_ranges: ``context.training_fbr_range`` for the context regimes (None: none).
        n_bins: quantile bins of complexity (``analysis.complexity_bins``).
        significance: level of the Holm-adjusted Wilcoxon tests.
        n_bootstrap, seed: bootstrap resamples of the effect's CI and their seed.
        min_cases: fewest units for the effect's CI (``analysis.min_cases``).
    """
    if n_bins < 1:
        raise ValueError(f"analysis.complexity_bins must be >= 1, got {n_bins}")
    rng = np.random.default_rng(seed)
    rows, comparisons = [], []
    for regime in all_regimes(per_image, fbr_ranges, n_bins):
        row, compared = _decide(regime, significance, n_bootstrap, rng, min_cases)
        rows.append(row)
        comparisons += compared
    return (
        pd.DataFrame(rows, columns=RECIPE_COLUMNS),
        pd.DataFrame(comparisons, columns=COMPARISON_COLUMNS),
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
