"""Robustness metrics of each architecture from per-image rows (contract 4).

Perturbation metrics are computed per model group (study, dataset, patch, arch) and perturbation
from the test-split rows: the clean reference is the ``clean`` condition of the same group,
the perturbed values are the mean Dice of each severity (averaged over images and seeds).

* Dice drop: clean Dice minus the mean Dice over the severities (unweighted).
* ROOD-MRI Overall and Degradation (Boone et al., "ROOD-MRI: Benchmarking the robustness of deep
  learning segmentation models to out-of-distribution and corrupted data in MRI", 2022), with
  severity weights a^s, a = 2/3, s = 1..S and M_s the mean Dice at severity s (M_0 clean)::

      Overall     = sum_{s=0..S} a^s M_s / sum_{s=0..S} a^s         (clean enters with a^0 = 1)
      Degradation = sum_{s=1..S} a^s (M_0 - M_s) / sum_{s=1..S} a^s

  Overall rewards a model that is good and stays good; Degradation isolates the loss, weighting
  mild severities (more likely in practice) more than extreme ones.
* ImageNet-C corruption errors (Hendrycks & Dietterich, ICLR 2019) with error E = 1 - Dice::

      CE_f,c          = sum_s E_f,s,c / sum_s E_b,s,c
      relative CE_f,c = sum_s (E_f,s,c - E_f,clean) / sum_s (E_b,s,c - E_b,clean)

  normalised by the baseline architecture b of the same (study, dataset, patch); mCE and relative
  mCE are their means over the perturbations where they are defined (rows with perturbation
  ``all``, with the count). Relative CE is undefined (NaN, with the reason) where the
  baseline's summed degradation sum_s (E_b,s - E_b,clean) is <= ``min_degradation``
  (``analysis.relative_ce_min_degradation``): a perturbation that does not degrade the baseline
  (background blur makes the task *easier*) would otherwise flip the sign or explode the ratio.
  CE is undefined where the baseline's summed error is 0.
* Coefficient of variation of the per-severity mean Dice across severities 1..S (population
  standard deviation: the severities are the whole set studied, not a sample of them).
* ``easier``: the perturbation's mean Dice over its severities is above the clean Dice (the
  perturbation makes the task easier for that model).

Texture-study trends: the slope of Dice against the test image's LBP complexity and the
normalised area under the in-domain Dice-alpha curve (train_alpha == test_alpha), trapezoid rule
divided by the alpha span. The slope is an ordinary least-squares fit over the in-domain test
images (seeds averaged; statsmodels OLS). One image index appears at every alpha with the same
shape and texture crops, so its points are not independent: the 95% CI and p use standard errors
clustered by image index (t with clusters - 1 degrees of freedom), and ``n_images`` counts the
image indices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm

from segrobust.analysis.units import independent_unit
from segrobust.contract import in_domain

ROOD_WEIGHT_BASE = 2.0 / 3.0
MODEL_GROUP = ["study", "dataset", "patch"]

ROBUSTNESS_COLUMNS = [
    *MODEL_GROUP,
    "arch",
    "perturbation",
    "n_severities",
    "clean_dice",
    "mean_dice",
    "dice_drop",
    "rood_overall",
    "rood_degradation",
    "cv_dice",
    "easier",
]
CORRUPTION_COLUMNS = [
    *MODEL_GROUP,
    "arch",
    "perturbation",
    "baseline_arch",
    "ce",
    "relative_ce",
    "baseline_degradation",
    "n_perturbations_ce",
    "n_perturbations_relative_ce",
    "note",
]
#: Default of ``analysis.relative_ce_min_degradation``: 0.01 Dice summed over the severities
#: (0.002 per severity for five) is far below the seed-to-seed spread of a mean Dice (~0.01),
#: so a smaller summed degradation is indistinguishable from none.
MIN_DEGRADATION = 0.01
TEXTURE_COLUMNS = [
    "study",
    "direction",
    "patch",
    "arch",
    "n_images",
    "complexity_slope",
    "slope_ci_low",
    "slope_ci_high",
    "slope_p_value",
    "alpha_auc",
    "alpha_min",
    "alpha_max",
]


def severity_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice per (model group, arch, perturbation, severity) of the test split.

    Severity 0 is the clean reference: only the model's in-domain test rows (condition
    ``clean`` or its own test dataset), never other test datasets of the texture grid. Images
    are averaged within each seed first and seeds then averaged, so each seed weighs the same
    even if one run lost an image.
    """
    test = per_image[per_image["split"] == "test"]
    test = test[(test["perturbation"] != "none") | in_domain(test)]
    keys = [*MODEL_GROUP, "arch", "perturbation", "severity"]
    per_seed = test.groupby([*keys, "seed"], dropna=False)["dice"].mean()
    return per_seed.groupby(level=keys, dropna=False).mean().rename("dice").reset_index()


def _clean_and_perturbed(per_image: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = severity_table(per_image)
    is_clean = (table["perturbation"] == "none") & (table["severity"] == 0)
    clean = table[is_clean].drop(columns=["perturbation", "severity"])
    clean = clean.rename(columns={"dice": "clean_dice"})
    perturbed = table[~is_clean & (table["severity"] > 0)]
    return clean, perturbed


def rood_overall(clean: float, by_severity: pd.Series, a: float = ROOD_WEIGHT_BASE) -> float:
    """ROOD-MRI Overall: a^s-weighted mean of the clean (s = 0) and per-severity metric."""
    weights = a ** by_severity.index.to_numpy(dtype=float)
    return float((clean + np.sum(weights * by_severity.to_numpy())) / (1.0 + weights.sum()))


def rood_degradation(clean: float, by_severity: pd.Series, a: float = ROOD_WEIGHT_BASE) -> float:
    """ROOD-MRI Degradation of a higher-is-better metric: a^s-weighted mean of (clean - M_s)."""
    weights = a ** by_severity.index.to_numpy(dtype=float)
    return float(np.sum(weights * (clean - by_severity.to_numpy())) / weights.sum())


def perturbation_robustness(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, dataset, patch, arch, perturbation): drop, ROOD metrics, CV.

    Groups without a clean reference are left out (nothing to compare to).
    """
    clean, perturbed = _clean_and_perturbed(per_image)
    merged = perturbed.merge(clean, on=[*MODEL_GROUP, "arch"], how="inner")
    rows = []
    for key, group in merged.groupby([*MODEL_GROUP, "arch", "perturbation"], dropna=False):
        by_severity = group.set_index("severity")["dice"].sort_index()
        clean_dice = float(group["clean_dice"].iloc[0])
        mean_dice = float(by_severity.mean())
        rows.append(
            dict(
                zip([*MODEL_GROUP, "arch", "perturbation"], key, strict=True),
                n_severities=len(by_severity),
                clean_dice=clean_dice,
                mean_dice=mean_dice,
                dice_drop=clean_dice - mean_dice,
                rood_overall=rood_overall(clean_dice, by_severity),
                rood_degradation=rood_degradation(clean_dice, by_severity),
                cv_dice=float(by_severity.std(ddof=0) / mean_dice) if mean_dice > 0 else np.nan,
                easier=bool(mean_dice > clean_dice),
            )
        )
    return pd.DataFrame(rows, columns=ROBUSTNESS_COLUMNS)


def _relative_ce_note(baseline_degradation: float, min_degradation: float) -> str:
    if np.isnan(baseline_degradation):
        return "baseline lacks this perturbation: CE undefined"
    if baseline_degradation <= min_degradation:
        return (
            f"relative CE undefined: the baseline's summed degradation "
            f"{baseline_degradation:.4f} <= {min_degradation:g} (the perturbation does not "
            f"degrade it)"
        )
    return ""


def _group_errors(group: pd.DataFrame, base: pd.DataFrame, min_degradation: float):
    """CE and relative CE of one model group's rows against its baseline rows."""
    out = group.copy()
    denom = base.reindex(out["perturbation"])  # NaN where the baseline lacks it
    error = denom["error"].to_numpy()
    increase = denom["error_increase"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ce"] = np.where(error > 0, out["error"].to_numpy() / error, np.nan)
        defined = increase > min_degradation
        out["relative_ce"] = np.where(defined, out["error_increase"].to_numpy() / increase, np.nan)
    out["baseline_degradation"] = increase
    out["n_perturbations_ce"] = out["ce"].notna().astype(int)
    out["n_perturbations_relative_ce"] = out["relative_ce"].notna().astype(int)
    out["note"] = [_relative_ce_note(d, min_degradation) for d in increase]
    keys = [*MODEL_GROUP, "arch"]
    means = out.groupby(keys, dropna=False).agg(
        ce=("ce", "mean"),
        relative_ce=("relative_ce", "mean"),
        n_perturbations_ce=("ce", "count"),
        n_perturbations_relative_ce=("relative_ce", "count"),
    )
    means = means.reset_index().assign(perturbation="all", baseline_degradation=np.nan)
    total = out["perturbation"].nunique()
    means["note"] = [
        f"mCE over {c} of {total} perturbations, relative mCE over {r} (where defined)"
        for c, r in zip(
            means["n_perturbations_ce"], means["n_perturbations_relative_ce"], strict=True
        )
    ]
    return [out, means]


def corruption_errors(
    per_image: pd.DataFrame, baseline_arch: str, min_degradation: float = MIN_DEGRADATION
) -> pd.DataFrame:
    """ImageNet-C CE and relative CE per perturbation, plus mCE rows (perturbation ``all``).

    Args:
        per_image: per-image rows.
        baseline_arch: the normalising architecture (``analysis.baseline_arch``).
        min_degradation: relative CE is undefined where the baseline's summed degradation is
            <= this (``analysis.relative_ce_min_degradation``).

    Raises:
        ValueError: the baseline architecture is absent from a model group that has
            perturbation rows (the normalisation would be undefined); the message lists the
            architectures present.
    """
    clean, perturbed = _clean_and_perturbed(per_image)
    if perturbed.empty:
        return pd.DataFrame(columns=CORRUPTION_COLUMNS)
    table = perturbed.merge(clean, on=[*MODEL_GROUP, "arch"], how="inner")
    table["error"] = 1.0 - table["dice"]
    table["error_increase"] = table["clean_dice"] - table["dice"]  # = E_s - E_clean
    keys = [*MODEL_GROUP, "arch", "perturbation"]
    sums = table.groupby(keys, dropna=False)[["error", "error_increase"]].sum().reset_index()
    frames = []
    for group_key, group in sums.groupby(MODEL_GROUP, dropna=False):
        base = group[group["arch"] == baseline_arch]
        if base.empty:
            present = ", ".join(sorted(group["arch"].unique()))
            raise ValueError(
                f"analysis.baseline_arch {baseline_arch!r} has no perturbation rows in "
                f"{dict(zip(MODEL_GROUP, group_key, strict=True))}; architectures present: "
                f"{present}"
            )
        frames += _group_errors(group, base.set_index("perturbation"), min_degradation)
    result = pd.concat(frames, ignore_index=True).assign(baseline_arch=baseline_arch)
    return result[CORRUPTION_COLUMNS]


def easier_statements(robust: pd.DataFrame) -> list[str]:
    """Which perturbations make the task easier (mean Dice above clean), per perturbation."""
    if robust.empty:
        return []
    lines = []
    for perturbation, rows in robust.groupby("perturbation", sort=True):
        easier = rows[rows["easier"].astype(bool)]
        if not easier.empty:
            models = ", ".join(f"{r.dataset}/{r.arch}" for r in easier.itertuples())
            lines.append(
                f"{perturbation} makes the task easier (mean Dice over severities above clean) "
                f"for {len(easier)} of {len(rows)} models: {models}."
            )
    return lines or ["No perturbation raised the mean Dice above clean for any model."]


def _seed_averaged_images(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    image_keys = [*keys, "condition", "test_dataset", "group", "image_id"]
    images = rows.groupby(image_keys, dropna=False)[["dice", "complexity"]].mean().reset_index()
    return images.assign(unit=independent_unit(images))


def complexity_slope(complexity, dice, units, level: float = 0.95, min_cases: int = 2) -> dict:
    """OLS slope of Dice on complexity, its CI and p with standard errors clustered by ``units``.

    Undefined (NaN) with fewer than 3 points, 2 clusters, or no spread in complexity. With
    fewer than ``min_cases`` clusters the slope is reported without CI and p: cluster-robust
    errors from a handful of clusters are far too small.
    """
    complexity, dice = np.asarray(complexity, float), np.asarray(dice, float)
    groups = pd.factorize(pd.Series(units))[0]
    if len(dice) < 3 or np.ptp(complexity) == 0 or groups.max(initial=-1) < 1:
        return dict(
            complexity_slope=np.nan, slope_ci_low=np.nan, slope_ci_high=np.nan, slope_p_value=np.nan
        )
    fit = sm.OLS(dice, sm.add_constant(complexity)).fit(
        cov_type="cluster", cov_kwds={"groups": groups}, use_t=True
    )
    low, high = fit.conf_int(alpha=1 - level)[1]
    if groups.max() + 1 < min_cases:
        low = high = np.nan
    return dict(
        complexity_slope=float(fit.params[1]),
        slope_ci_low=float(low),
        slope_ci_high=float(high),
        slope_p_value=float(fit.pvalues[1]) if np.isfinite(low) else np.nan,
    )


def alpha_auc(alpha: np.ndarray, dice: np.ndarray) -> float:
    """Area under the Dice-alpha curve by the trapezoid rule, divided by the alpha span."""
    order = np.argsort(alpha)
    alpha, dice = np.asarray(alpha, float)[order], np.asarray(dice, float)[order]
    span = alpha[-1] - alpha[0] if len(alpha) else 0.0
    if span <= 0:
        return float(dice[0]) if len(dice) == 1 else np.nan
    return float(np.trapezoid(dice, alpha) / span)


def texture_trends(per_image: pd.DataFrame, min_cases: int = 10) -> pd.DataFrame:
    """Per (direction, patch, arch) of the texture study: complexity slope and alpha AUC.

    The slope's CI and p need ``min_cases`` image indices (``analysis.min_cases``).
    """
    rows_in = per_image[(per_image["study"] == "texture") & (per_image["split"] == "test")]
    rows = []
    keys = ["study", "direction", "patch", "arch"]
    for key, group in rows_in.groupby(keys, dropna=False):
        in_domain = group[pd.to_numeric(group["train_alpha"]) == pd.to_numeric(group["test_alpha"])]
        images = _seed_averaged_images(in_domain, keys).dropna(subset=["dice", "complexity"])
        curve = in_domain.groupby(pd.to_numeric(in_domain["test_alpha"]))["dice"].mean()
        alphas = curve.index.to_numpy(dtype=float)
        rows.append(
            dict(
                zip(keys, key, strict=True),
                n_images=images["unit"].nunique(),
                **complexity_slope(
                    images["complexity"], images["dice"], images["unit"], min_cases=min_cases
                ),
                alpha_auc=alpha_auc(alphas, curve.to_numpy()) if len(curve) else np.nan,
                alpha_min=alphas.min() if len(alphas) else np.nan,
                alpha_max=alphas.max() if len(alphas) else np.nan,
            )
        )
    return pd.DataFrame(rows, columns=TEXTURE_COLUMNS)
