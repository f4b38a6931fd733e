"""The architecture recipe: which architecture to use in which complexity / perturbation regime.

Regimes: quantile bins of the test images' LBP complexity in the texture study (bits), and every
(study, perturbation, severity) of the perturbed test conditions (with the papers' named level
when the rows carry one). Within a regime the unit is one test image of one model group
(dataset, patch, condition, test_dataset, image_id), its Dice averaged over seeds; architectures
are compared on the images all of them have.

Decision per regime:
1. the architecture with the best mean Dice is recommended when its lead is significant: a
   paired Wilcoxon signed-rank test against every other architecture, Holm-corrected over those
   k - 1 comparisons, all below ``significance``;
2. otherwise, among the best and the architectures not significantly worse than it, the one with
   the smallest degradation (mean Dice drop vs its clean, in-domain test Dice; ties broken by the
   higher mean Dice).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segrobust.analysis.conformal import in_domain
from segrobust.analysis.stats import holm, wilcoxon_p

RECIPE_COLUMNS = [
    "study",
    "regime_kind",
    "regime",
    "recommended",
    "mean_dice",
    "runner_up",
    "runner_up_dice",
    "p_value",
    "reason",
    "degradation",
    "n_images",
    "sentence",
]
UNIT = ["dataset", "patch", "condition", "test_dataset", "image_id"]
GROUP = ["study", "dataset", "patch", "arch"]


def recommend(dice: pd.DataFrame, degradation: pd.Series, significance: float = 0.05) -> dict:
    """The recommendation for one regime.

    Args:
        dice: Dice per image (rows) and architecture (columns), complete cases.
        degradation: mean Dice drop vs clean per architecture (NaN where unknown).
        significance: level of the Holm-corrected Wilcoxon tests.

    Returns:
        dict with recommended, mean_dice, runner_up, runner_up_dice, p_value, reason,
        degradation (of the recommended arch).
    """
    means = dice.mean(axis=0).sort_values(ascending=False, kind="stable")
    best = means.index[0]
    if len(means) == 1:
        return dict(
            recommended=best,
            mean_dice=means[best],
            runner_up="",
            runner_up_dice=np.nan,
            p_value=np.nan,
            reason="only architecture",
            degradation=degradation.get(best, np.nan),
        )
    rivals = list(means.index[1:])
    raw = [wilcoxon_p(dice[best].to_numpy(), dice[r].to_numpy())[1] for r in rivals]
    adjusted = pd.Series(holm(raw), index=rivals)
    if (adjusted < significance).all():
        return dict(
            recommended=best,
            mean_dice=means[best],
            runner_up=rivals[0],
            runner_up_dice=means[rivals[0]],
            p_value=float(adjusted.max()),
            reason="significantly best",
            degradation=degradation.get(best, np.nan),
        )
    candidates = [best, *adjusted.index[adjusted >= significance]]
    drops = degradation.reindex(candidates)
    if drops.isna().any():
        chosen, reason = best, "best mean, not significant; no clean reference for degradation"
    else:
        order = sorted(candidates, key=lambda a: (drops[a], -means[a]))
        chosen, reason = order[0], "not significantly worse than best, smallest degradation"
    runner_up = rivals[0] if chosen == best else best
    p_value = adjusted[runner_up] if chosen == best else adjusted[chosen]
    return dict(
        recommended=chosen,
        mean_dice=means[chosen],
        runner_up=runner_up,
        runner_up_dice=means[runner_up],
        p_value=float(p_value),
        reason=reason,
        degradation=degradation.get(chosen, np.nan),
    )


def sentence(regime: str, decision: dict) -> str:
    """One plain-language sentence for a regime's recommendation."""
    d = decision
    arch, mean = d["recommended"], d["mean_dice"]
    if d["reason"] == "only architecture":
        return f"For {regime}, only {arch} was evaluated (mean Dice {mean:.2f})."
    if d["reason"] == "significantly best":
        return (
            f"For {regime}, use {arch}: best mean Dice {mean:.2f}, significantly ahead of all "
            f"others (Holm-adjusted Wilcoxon p <= {d['p_value']:.3g})."
        )
    if d["runner_up_dice"] > mean:  # the recommended arch is not the best by mean
        return (
            f"For {regime}, use {arch}: mean Dice {mean:.2f}, not significantly below the best "
            f"({d['runner_up']}, {d['runner_up_dice']:.2f}; Holm-adjusted Wilcoxon "
            f"p = {d['p_value']:.3g}), and it loses the least Dice vs clean "
            f"({d['degradation']:.3f})."
        )
    return (
        f"For {regime}, use {arch}: best mean Dice {mean:.2f}, but its lead over "
        f"{d['runner_up']} is not significant (Holm-adjusted Wilcoxon p = {d['p_value']:.3g}); "
        f"{d['reason']}."
    )


def _with_drop(rows: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``drop`` = their model group's clean in-domain mean Dice minus their Dice."""
    clean = test[in_domain(test)]
    reference = clean.groupby(GROUP, dropna=False)["dice"].mean().rename("clean_dice")
    out = rows.merge(reference.reset_index(), on=GROUP, how="left")
    return out.assign(drop=out["clean_dice"] - out["dice"])


def _decide(study: str, kind: str, regime: str, rows: pd.DataFrame, significance: float):
    dice = rows.pivot_table(index=UNIT, columns="arch", values="dice", aggfunc="mean")
    dice = dice.dropna(axis=0, how="any")
    if dice.empty:
        return None
    drop = rows.pivot_table(index=UNIT, columns="arch", values="drop", aggfunc="mean")
    degradation = drop.reindex(dice.index).mean(axis=0, skipna=False)
    decision = recommend(dice, degradation, significance)
    return dict(
        study=study,
        regime_kind=kind,
        regime=regime,
        n_images=len(dice),
        **decision,
        sentence=sentence(regime, decision),
    )


def complexity_regimes(test: pd.DataFrame, n_bins: int) -> pd.Series:
    """Regime label per texture-study row: its image's quantile bin of complexity (bits)."""
    units = test.groupby(UNIT, dropna=False)["complexity"].mean()
    bins = pd.qcut(units, q=n_bins, duplicates="drop")
    labels = bins.map(lambda b: f"complexity {b.left:.2f}-{b.right:.2f} bits").astype(object)
    keyed = test.set_index(UNIT).index
    return pd.Series(labels.reindex(keyed).to_numpy(), index=test.index)


def perturbation_label(perturbation: str, severity: int, level) -> str:
    """``speckle severity 3 (Harder)``, without the level when the rows have none."""
    text = f"{perturbation} severity {int(severity)}"
    return f"{text} ({level})" if isinstance(level, str) and level else text


def recipe(per_image: pd.DataFrame, n_bins: int = 4, significance: float = 0.05) -> pd.DataFrame:
    """The recipe table: one row per regime (see the module docstring)."""
    if n_bins < 1:
        raise ValueError(f"analysis.complexity_bins must be >= 1, got {n_bins}")
    test = per_image[per_image["split"] == "test"]
    out = []
    texture = test[(test["study"] == "texture")].dropna(subset=["complexity"])
    if not texture.empty:
        texture = texture.assign(regime=complexity_regimes(texture, n_bins))
        texture = _with_drop(texture, test)  # merges: the index is not preserved
        for regime, rows in texture.groupby("regime", sort=False):
            out.append(_decide("texture", "complexity", regime, rows, significance))
    perturbed = test[test["perturbation"] != "none"]
    if not perturbed.empty:
        perturbed = _with_drop(perturbed, test)
        perturbed["regime"] = [
            perturbation_label(p, s, lv)
            for p, s, lv in zip(
                perturbed["perturbation"], perturbed["severity"], perturbed["level"], strict=True
            )
        ]
        keys = ["study", "perturbation", "severity", "regime"]
        for (study, _, _, regime), rows in perturbed.groupby(keys, sort=True):
            out.append(_decide(study, "perturbation", regime, rows, significance))
    table = pd.DataFrame([row for row in out if row is not None], columns=RECIPE_COLUMNS)
    if not table.empty and (table["regime_kind"] == "complexity").any():
        # order complexity bins by their lower edge, not alphabetically
        lower = table["regime"].str.extract(r"complexity (-?[\d.]+)-")[0].astype(float)
        table = table.assign(_lower=lower).sort_values(
            ["regime_kind", "study", "_lower"], kind="stable", na_position="last"
        )
        table = table.drop(columns="_lower").reset_index(drop=True)
    return table


def recipe_markdown(table: pd.DataFrame) -> str:
    """The recipe's sentences as a Markdown list."""
    lines = ["# Architecture recipe", ""]
    if table.empty:
        lines.append("No regime had images evaluated by the same architectures: no recipe.")
    lines += [f"- {s}" for s in table["sentence"]]
    return "\n".join(lines) + "\n"
