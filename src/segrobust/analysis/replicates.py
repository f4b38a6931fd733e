"""Architecture claims across training runs and test images: a linear contrast over arms.

An architecture claim ("unet beats unetpp here", "the skip benefit shrinks with complexity") is
about architectures, not about one trained network. Two sources of variance stand between the
measured Dice and such a claim: the training run (seed: initialisation, data order, CPU kernels)
and the test image. Averaging seeds and testing over images (a paired Wilcoxon of seed-averaged
Dice) counts only the second; with one network per architecture a run-to-run offset of 0.01-0.04
Dice then turns into "significant" recommendations in 50-88% of regimes where the architectures
are equal (issue 18, ``benchmarks/inference_calibration.py``, docs/statistics.md).

The model. An **arm** ``a`` is a set of independent training runs (all seeds of ``unet`` trained
at alpha 0.1, say); run ``r`` gives per-unit values ``y[a, r, i]`` on the independent test units
``i`` (``segrobust.analysis.units``): Dice, or a within-run contrast of the same network such as
Dice(clean) - Dice(speckle) computed per unit before anything else. The contrast is

    D = sum_a w_a * mean_{r, i} y[a, r, i]

and its squared standard error has two estimable parts (a two-level method-of-moments, or
"summary statistics", decomposition):

* **run part** ``sum_g s_g^2 / R_g`` over the run sets ``g``: ``m_r = sum_{a in g} w_a *
  mean_i y[a, r, i]`` is run ``r``'s own contribution to D and ``s_g^2`` its sample variance
  over the ``R_g`` runs. It estimates the run-to-run variance plus the within-run image noise
  divided by n. Arms that are the same training runs measured on different units (finding (e):
  one network inside and outside its training range) share a run set, so their correlation is
  kept; independent run sets add.
* **image part** ``sum_k s_k^2 / n_k`` over the unit sets ``k``: ``z_i = sum_{a in k} w_a *
  mean_r y[a, r, i]`` is unit ``i``'s seed-averaged contribution and ``s_k^2`` its sample
  variance over the ``n_k`` units. It estimates the architecture x image interaction that makes
  "better on these images" differ from "better on images like these" (image main effects cancel
  in a contrast whose weights sum to zero within a unit set).

``SE^2 = run part + image part`` is slightly conservative: the within-run image noise enters
both parts. The degrees of freedom are Welch-Satterthwaite's over the components (``R_g - 1``
for a run set, ``n_k - 1`` for a unit set), the interval ``D +- t_{df} * SE`` and the p-value
come from the same t (``scipy.stats.t``), so effect, CI and test estimate one quantity: the mean.

With one run in any run set the run variance cannot be estimated, and no interval is given: the
contrast says so (``ONE_RUN``) and every verdict built on it is "inconclusive".

Why not a library (numbers in docs/statistics.md, from ``benchmarks/inference_calibration.py``):
a naive two-level bootstrap with 3 runs per arm has only 10 distinct resamples of the runs and
divides their variance by R instead of R - 1; statsmodels ``MixedLM`` fits crossed run and image
effects only through variance components and reports Wald z-tests without small-sample degrees
of freedom; deepsig's ASO and rliable's stratified bootstrap take the run as the only unit and
ignore the sample of test images.

The verdicts (``superiority``, ``noninferiority``, ``comparison_class``) turn a contrast and a
minimum relevant difference into the words the recipe and the findings both use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

#: The reason given whenever a run set has a single run.
ONE_RUN = (
    "one training run per architecture cannot support an architecture claim; "
    "run >= 2 seeds (3 recommended)"
)
YES, NO, INCONCLUSIVE = "yes", "no", "inconclusive"
#: Classes of one architecture against a rival (``comparison_class``).
AHEAD, EQUIVALENT, UNDECIDED = "ahead", "equivalent", "undecided"


@dataclass(frozen=True)
class Arm:
    """One arm of a contrast.

    Attributes:
        values: per-unit values of the arm's runs: rows are runs (e.g. seeds), columns units.
        weight: the arm's weight ``w_a`` in the contrast.
        runs: the run set; arms with the same label are the same training runs (their run means
            are combined per run before the variance is taken).
        units: the unit set; arms with the same label are measured on the same units (their
            seed-averaged values are combined per unit before the variance is taken).
    """

    values: pd.DataFrame
    weight: float
    runs: str
    units: str = "units"


@dataclass(frozen=True)
class Contrast:
    """The estimate of a linear contrast with its t interval (module docstring).

    ``reason`` is empty when the interval is defined; otherwise it says why not (one run in a
    run set, too few units) and ``se``, the interval and ``p_value`` are NaN.
    """

    estimate: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float
    run_variance: float
    image_variance: float
    n_units: dict[str, int] = field(default_factory=dict)
    n_runs: dict[str, int] = field(default_factory=dict)
    level: float = 0.95
    reason: str = ""

    @property
    def defined(self) -> bool:
        """Whether the interval exists (every run set has >= 2 runs, every unit set >= 2 units)."""
        return not self.reason

    @property
    def total_units(self) -> int:
        return int(sum(self.n_units.values()))

    @property
    def fewest_runs(self) -> int:
        return int(min(self.n_runs.values())) if self.n_runs else 0


def _common(frames: list[pd.DataFrame], axis: int) -> pd.Index:
    """The labels (rows: axis 0, columns: axis 1) every frame has, in the first one's order."""
    labels = frames[0].axes[axis]
    for frame in frames[1:]:
        labels = labels.intersection(frame.axes[axis], sort=False)
    return labels


def _aligned(arms: list[Arm]) -> list[Arm]:
    """The arms restricted to the runs of their run set and the units of their unit set that
    every arm of that set has (complete cases), with every value finite."""
    runs = {g: _common([a.values for a in arms if a.runs == g], 0) for g in {a.runs for a in arms}}
    units = {
        k: _common([a.values for a in arms if a.units == k], 1) for k in {a.units for a in arms}
    }
    out = []
    for arm in arms:
        values = arm.values.loc[runs[arm.runs], units[arm.units]].astype(float)
        if not np.isfinite(values.to_numpy()).all():
            raise ValueError(
                f"contrast arm of run set {arm.runs!r}: values must be finite (complete cases)"
            )
        out.append(Arm(values, float(arm.weight), arm.runs, arm.units))
    return out


def welch_satterthwaite(variances, dfs) -> float:
    """Degrees of freedom of a sum of independent variance estimates (Welch-Satterthwaite)."""
    v, d = np.asarray(variances, float), np.asarray(dfs, float)
    denominator = float(np.sum(v**2 / d))
    return float(np.sum(v) ** 2 / denominator) if denominator > 0 else np.inf


def linear_contrast(arms: list[Arm], level: float = 0.95) -> Contrast:
    """``D = sum_a w_a mean_{r,i} y[a, r, i]`` with its two-part SE and t interval.

    Args:
        arms: the arms (``Arm``); runs and units are aligned within their sets first.
        level: two-sided confidence level of the interval (1 - ``analysis.significance``).

    Raises:
        ValueError: no arm, a non-finite weight or value, or a level outside (0, 1).
    """
    if not arms:
        raise ValueError("a contrast needs at least one arm")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level!r}")
    if not all(np.isfinite(a.weight) for a in arms):
        raise ValueError(f"contrast weights must be finite, got {[a.weight for a in arms]}")
    arms = _aligned(arms)
    measured = all(a.values.size for a in arms)
    estimate = (
        float(sum(a.weight * a.values.to_numpy().mean() for a in arms)) if measured else np.nan
    )
    run_parts, run_dfs, n_runs = [], [], {}
    for g in dict.fromkeys(a.runs for a in arms):
        members = [a for a in arms if a.runs == g]
        means = sum(a.weight * a.values.mean(axis=1).to_numpy() for a in members)
        n_runs[g] = len(members[0].values.index)
        if n_runs[g] >= 2:
            run_parts.append(float(np.var(means, ddof=1)) / n_runs[g])
            run_dfs.append(n_runs[g] - 1)
    image_parts, image_dfs, n_units = [], [], {}
    for k in dict.fromkeys(a.units for a in arms):
        members = [a for a in arms if a.units == k]
        n_units[k] = len(members[0].values.columns)
        if n_units[k] >= 2 and all(len(a.values.index) for a in members):
            z = sum(a.weight * a.values.mean(axis=0).to_numpy() for a in members)
            image_parts.append(float(np.var(z, ddof=1)) / n_units[k])
            image_dfs.append(n_units[k] - 1)
    reason = _undefined_reason(n_runs, n_units)
    run_var, image_var = float(sum(run_parts)), float(sum(image_parts))
    base = dict(n_units=n_units, n_runs=n_runs, level=level, estimate=estimate)
    if reason:
        nan = np.nan
        return Contrast(se=nan, df=nan, ci_low=nan, ci_high=nan, p_value=nan,
                        run_variance=run_var if run_parts else nan,
                        image_variance=image_var if image_parts else nan,
                        reason=reason, **base)  # fmt: skip
    se = float(np.sqrt(run_var + image_var))
    df = welch_satterthwaite(run_parts + image_parts, run_dfs + image_dfs)
    if se == 0:  # every run and unit gives the same contrast: the interval is the point
        p = 1.0 if estimate == 0 else 0.0
        return Contrast(se=0.0, df=df, ci_low=estimate, ci_high=estimate, p_value=p,
                        run_variance=run_var, image_variance=image_var, **base)  # fmt: skip
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(estimate) / se, df))
    return Contrast(se=se, df=df, ci_low=estimate - half, ci_high=estimate + half, p_value=p,
                    run_variance=run_var, image_variance=image_var, **base)  # fmt: skip


def _undefined_reason(n_runs: dict, n_units: dict) -> str:
    if any(n == 0 for n in n_units.values()) or any(n == 0 for n in n_runs.values()):
        return "no unit was measured by every run of the contrast"
    if any(n < 2 for n in n_runs.values()):
        return ONE_RUN
    if any(n < 2 for n in n_units.values()):
        return f"too few units: {min(n_units.values())} (at least 2 are needed for a variance)"
    return ""


def difference(first: pd.DataFrame, second: pd.DataFrame, level: float = 0.95,
               names: tuple[str, str] = ("first", "second")) -> Contrast:  # fmt: skip
    """``mean(first) - mean(second)`` of two independent run sets on the same units."""
    return linear_contrast([Arm(first, 1.0, names[0]), Arm(second, -1.0, names[1])], level=level)


# --- verdicts: one logic for the recipe and the findings --------------------------------------


def superiority(contrast: Contrast, min_effect: float) -> str:
    """Claim "> 0 by a relevant amount": yes when the CI lies above ``+min_effect``, no when it
    lies below it (the effect is at most negligible, or opposite), else inconclusive."""
    if not contrast.defined:
        return INCONCLUSIVE
    if contrast.ci_low > min_effect:
        return YES
    if contrast.ci_high < min_effect:
        return NO
    return INCONCLUSIVE


def noninferiority(contrast: Contrast, margin: float) -> str:
    """Claim ">= -margin": yes when the CI's lower end is above ``-margin``, no when its upper
    end is below ``-margin``, else inconclusive."""
    if not contrast.defined:
        return INCONCLUSIVE
    if contrast.ci_low > -margin:
        return YES
    if contrast.ci_high < -margin:
        return NO
    return INCONCLUSIVE


def superiority_note(contrast: Contrast, min_effect: float) -> str:
    """Why a superiority verdict came out as it did, in words."""
    if not contrast.defined:
        return contrast.reason
    ci = f"the {contrast.level:.0%} CI {contrast.ci_low:+.3f} to {contrast.ci_high:+.3f}"
    verdict = superiority(contrast, min_effect)
    if verdict == YES:
        return f"{ci} lies above the minimum effect +{min_effect:g}"
    if verdict == NO and contrast.ci_high < 0:
        return f"{ci} lies below 0: the effect is opposite to the claim"
    if verdict == NO:
        return f"{ci} lies below +{min_effect:g}: the effect is at most negligible"
    return f"{ci} contains the minimum effect +{min_effect:g}"


def noninferiority_note(contrast: Contrast, margin: float) -> str:
    """Why a non-inferiority verdict came out as it did, in words."""
    if not contrast.defined:
        return contrast.reason
    ci = f"the {contrast.level:.0%} CI {contrast.ci_low:+.3f} to {contrast.ci_high:+.3f}"
    verdict = noninferiority(contrast, margin)
    if verdict == YES:
        return f"{ci} lies above -{margin:g}: any loss is smaller than the margin"
    if verdict == NO:
        return f"{ci} lies below -{margin:g}: a loss larger than the margin"
    return f"{ci} contains -{margin:g}: too imprecise to tell"


def comparison_class(contrast: Contrast, min_effect: float) -> str:
    """An architecture against one rival: ``ahead`` (CI above +min_effect), ``equivalent`` (CI
    inside (-min_effect, +min_effect)) or ``undecided``."""
    if not contrast.defined:
        return UNDECIDED
    if contrast.ci_low > min_effect:
        return AHEAD
    if -min_effect < contrast.ci_low and contrast.ci_high < min_effect:
        return EQUIVALENT
    return UNDECIDED


# --- run-to-run agreement and ranking stability (descriptive) ---------------------------------


@dataclass(frozen=True)
class Agreement:
    """How consistently one architecture is ahead of another (descriptive, not a test)."""

    runs_ahead: int  # run pairs (one run of each) in which the first's run mean is higher
    run_pairs: int
    share_units_ahead: float  # share of units where the first's seed-averaged value is higher
    first_run_below: str  # one of the first's runs below every run of the second ('' if none)
    second_run_above: str  # one of the second's runs above every run of the first ('' if none)


def agreement(first: pd.DataFrame, second: pd.DataFrame) -> Agreement:
    """Run-pair and unit agreement of ``first`` over ``second`` (runs x units, same units)."""
    units = first.columns.intersection(second.columns, sort=False)
    first, second = first[units], second[units]
    a, b = first.mean(axis=1), second.mean(axis=1)
    ahead = int((a.to_numpy()[:, None] > b.to_numpy()[None, :]).sum())
    per_unit = first.mean(axis=0) > second.mean(axis=0)
    below = a[a < b.min()] if len(b) else a.iloc[:0]
    above = b[b > a.max()] if len(a) else b.iloc[:0]
    return Agreement(
        runs_ahead=ahead,
        run_pairs=len(a) * len(b),
        share_units_ahead=float(per_unit.mean()) if len(units) else np.nan,
        first_run_below=str(below.idxmin()) if len(below) and len(a) > 1 else "",
        second_run_above=str(above.idxmax()) if len(above) and len(b) > 1 else "",
    )


def ranking_stability(
    arms: dict[str, pd.DataFrame], n_bootstrap: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Mean-Dice ranking of the arms and its stability under a two-level bootstrap.

    Each resample draws runs with replacement within every arm, then units with replacement
    (the same units for every arm, so the comparison stays paired), and ranks the arms by their
    resampled mean. ``p_first`` is the share of resamples in which an arm ranks first (ties share
    the rank), ``rank_stability`` the share in which it keeps its observed rank. Descriptive, as
    challengeR's ranking stability: it shows how often the order would change, it tests nothing.

    Returns:
        One row per arm: arch, n_runs, n_units, mean_dice, rank, p_first, rank_stability.
    """
    names = list(arms)
    units = _common([arms[n] for n in names], 1)
    values = [arms[n][units].to_numpy(dtype=float) for n in names]
    n = len(units)
    unit_counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap)
    boot = np.empty((n_bootstrap, len(names)))
    for j, y in enumerate(values):
        runs = len(y)
        run_counts = rng.multinomial(runs, np.full(runs, 1.0 / runs), size=n_bootstrap)
        per_run = y @ unit_counts.T / n  # runs x resamples: each run's mean over resampled units
        boot[:, j] = np.sum(run_counts.T * per_run, axis=0) / runs
    means = np.array([y.mean() for y in values])
    observed = stats.rankdata(-means, method="min").astype(int)
    ranks = stats.rankdata(-boot, axis=1, method="min").astype(int)
    return pd.DataFrame(
        {
            "arch": names,
            "n_runs": [len(y) for y in values],
            "n_units": n,
            "mean_dice": means,
            "rank": observed,
            "p_first": (ranks == 1).mean(axis=0),
            "rank_stability": (ranks == observed[None, :]).mean(axis=0),
        }
    )
