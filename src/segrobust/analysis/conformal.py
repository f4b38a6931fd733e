"""Conformal confidence over every run's tables: the two guarantees of
``segrobust.guarantees.kernel`` ((a) conformal risk control of the false-negative rate, (b) a
per-image Dice lower bound), calibrated per model run (study, dataset, arch, seed, patch) on the
run's in-domain calibration rows and checked on its test conditions. An undefined bound (too few
calibration images) is left out of coverage and never described as holding.

Coverage under shift is checked, not assumed: conditional on the calibration set the coverage
of split conformal prediction is Beta(k, n + 1 - k) with k = ceil((n + 1)(1 - alpha)) (Vovk 2012;
Angelopoulos & Bates, "A gentle introduction to conformal prediction", 2021), so the number of
covered test images is beta-binomial. A condition is flagged when its covered count falls in the
lower ``significance`` tail of that distribution, i.e. below 1 - alpha by more than the
finite-sample slack that exchangeable data would show. Every coverage is reported with its
Clopper-Pearson 95% CI and the number of test images it rests on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from segrobust import contract
from segrobust.analysis.units import independent_unit
from segrobust.guarantees.kernel import (
    DEFINED,
    bound_status,
    calibration_rows,
    conformal_quantile,
    conformal_rank,
    crc_threshold,
    dice_lower_bound,
    fnr_status,
    min_calibration_for_bound,
    min_calibration_for_fnr,
)

RUN_KEYS = list(contract.RUN_KEYS)
FNR_COLUMNS = [
    *RUN_KEYS,
    "condition",
    "level",
    "n_calibration",
    "min_calibration",
    "t_hat",
    "certified",
    "status",
    "calibration_fnr",
    "n_test",
    "test_fnr",
    "meets_level",
]
COVERAGE_COLUMNS = [
    *RUN_KEYS,
    "condition",
    "perturbation",
    "severity",
    "level",
    "alpha",
    "n_calibration",
    "min_calibration",
    "q_hat",
    "n_test",
    "covered",
    "coverage",
    "coverage_ci_low",
    "coverage_ci_high",
    "target",
    "slack",
    "p_value",
    "below_target",
    "status",
]
CALIBRATION_COLUMNS = [*RUN_KEYS, "n_calibration", "min_calibration", "q_hat", "bound_status"]
SUMMARY_COLUMNS = [
    "study",
    "arch",
    "n_runs",
    "n_runs_defined",
    "n_calibration",
    "min_calibration",
    "n_test",
    "median_dice_lower_bound",
    "coverage",
    "coverage_ci_low",
    "coverage_ci_high",
    "target",
    "status",
]


def _mean_fnr_at(rows: pd.DataFrame, t_hat: float) -> float:
    at = rows[np.isclose(rows["threshold"], t_hat)]
    if at.empty:
        return 0.0 if t_hat == 0.0 else np.nan  # t = 0 marks everything foreground: FNR 0
    return float(at["fnr"].mean())


def conformal_fnr(fnr: pd.DataFrame, level: float = 0.1) -> pd.DataFrame:
    """t-hat per run from its calibration rows and the realised test FNR per condition.

    Images with an empty label (FNR undefined, NaN) are left out. Where no threshold could be
    certified (t-hat = 0) ``status`` says there is no control and ``meets_level`` is empty:
    the test FNR of 0 there is a consequence of predicting everything, not of calibration.
    """
    table = fnr.dropna(subset=["fnr"])
    needed = min_calibration_for_fnr(level)
    out = []
    for key, run in table.groupby(RUN_KEYS, dropna=False, sort=True):
        cal = calibration_rows(run)
        n = cal["image_id"].nunique()
        curve = cal.groupby("threshold")["fnr"].mean()
        t_hat, certified = crc_threshold(curve.index, curve.to_numpy(), n, level)
        run_key = dict(zip(RUN_KEYS, key, strict=True))
        test = run[run["split"] == "test"]
        for condition, rows in test.groupby("condition", sort=True):
            test_fnr = _mean_fnr_at(rows, t_hat)
            out.append(
                dict(
                    run_key,
                    condition=condition,
                    level=level,
                    n_calibration=n,
                    min_calibration=needed,
                    t_hat=t_hat,
                    certified=certified,
                    status=fnr_status(certified, n, level),
                    calibration_fnr=_mean_fnr_at(cal, t_hat),
                    n_test=rows["image_id"].nunique(),
                    test_fnr=test_fnr,
                    meets_level=bool(test_fnr <= level) if certified else None,
                )
            )
    return pd.DataFrame(out, columns=FNR_COLUMNS)


def calibrate_dice_bounds(per_image: pd.DataFrame, alpha: float = 0.1):
    """Add ``dice_lower_bound`` to every row; return (rows, per-run calibration table).

    The calibration table has the run keys, n_calibration, min_calibration, q_hat (infinite
    when undefined) and bound_status. Rows whose quality is missing, or whose run has too few
    calibration images, get a missing (NaN) bound.
    """
    cal = calibration_rows(per_image).dropna(subset=["quality", "dice"])
    runs = per_image[RUN_KEYS].drop_duplicates()
    quantiles = []
    for key, rows in cal.groupby(RUN_KEYS, dropna=False):
        scores = rows["quality"] - rows["dice"]
        quantiles.append(
            dict(
                zip(RUN_KEYS, key, strict=True),
                n_calibration=len(rows),
                q_hat=conformal_quantile(scores, alpha),
            )
        )
    calibration = runs.merge(
        pd.DataFrame(quantiles, columns=[*RUN_KEYS, "n_calibration", "q_hat"]),
        on=RUN_KEYS,
        how="left",
    )
    # A run without calibration rows has n = 0: k = 1 > 0, so q is infinite (undefined).
    calibration["n_calibration"] = calibration["n_calibration"].fillna(0).astype(int)
    calibration["q_hat"] = calibration["q_hat"].fillna(math.inf)
    calibration["min_calibration"] = min_calibration_for_bound(alpha)
    calibration["bound_status"] = [bound_status(n, alpha) for n in calibration["n_calibration"]]
    calibration = calibration[CALIBRATION_COLUMNS].reset_index(drop=True)
    merged = per_image.merge(calibration, on=RUN_KEYS, how="left")
    out = per_image.copy()
    out["dice_lower_bound"] = dice_lower_bound(merged["quality"], merged["q_hat"].to_numpy())
    return out, calibration


def clopper_pearson(covered: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) CI of a proportion covered / n.

    The beta-quantile form, as statsmodels' ``proportion_confint(method="beta")`` computes it,
    written out because the pooled summary passes a non-integer effective count (coverage
    times the number of independent images), which that function does not document.
    """
    if n <= 0:
        return np.nan, np.nan
    tail = (1 - level) / 2
    low = stats.beta.ppf(tail, covered, n - covered + 1) if covered > 0 else 0.0
    high = stats.beta.ppf(1 - tail, covered + 1, n - covered) if covered < n else 1.0
    return float(low), float(high)


def coverage_tail(covered: int, n_test: int, n_cal: int, alpha: float, significance: float):
    """(p_value, slack) of a covered count under exchangeability (beta-binomial).

    slack is how far below 1 - alpha the empirical coverage may fall before its lower-tail
    probability drops under ``significance``. Undefined (NaN, NaN) when the bound is.
    """
    k = conformal_rank(n_cal, alpha)
    if k > n_cal or n_test == 0:  # infinite quantile: no bound, nothing to test
        return np.nan, np.nan
    law = stats.betabinom(n_test, k, n_cal + 1 - k)
    slack = (1 - alpha) - law.ppf(significance) / n_test
    return float(law.cdf(covered)), float(max(slack, 0.0))


def _coverage_row(rows: pd.DataFrame, alpha: float, significance: float) -> dict:
    n_cal, q_hat = int(rows["n_calibration"].iloc[0]), rows["q_hat"].iloc[0]
    n_test = len(rows)
    common = dict(
        alpha=alpha,
        n_calibration=n_cal,
        min_calibration=min_calibration_for_bound(alpha),
        q_hat=q_hat,
        n_test=n_test,
        target=1 - alpha,
    )
    if not np.isfinite(q_hat):
        # every coverage column undefined (`duplicates` finds this keyword list alike in shape
        # to an unrelated call in cli.py)
        return dict(
            common,
            covered=np.nan,
            coverage=np.nan,
            coverage_ci_low=np.nan,
            coverage_ci_high=np.nan,
            slack=np.nan,
            p_value=np.nan,
            below_target=None,
            status=bound_status(n_cal, alpha),
        )
    covered = int((rows["dice"] >= rows["dice_lower_bound"]).sum())
    p_value, slack = coverage_tail(covered, n_test, n_cal, alpha, significance)
    low, high = clopper_pearson(covered, n_test)
    below = bool(p_value < significance)
    return dict(
        common,
        covered=covered,
        coverage=covered / n_test,
        coverage_ci_low=low,
        coverage_ci_high=high,
        slack=slack,
        p_value=p_value,
        below_target=below,
        status="below target" if below else "consistent with target",
    )


def coverage_table(
    rows_with_bounds: pd.DataFrame,
    calibration: pd.DataFrame,
    alpha: float = 0.1,
    significance: float = 0.05,
) -> pd.DataFrame:
    """Empirical coverage P(dice >= bound) per run and test condition, with the shift flag.

    Runs whose bound is undefined get a row with ``status`` saying so and no coverage.
    """
    test = rows_with_bounds[rows_with_bounds["split"] == "test"].dropna(subset=["dice"])
    test = test.merge(calibration[[*RUN_KEYS, "n_calibration", "q_hat"]], on=RUN_KEYS, how="left")
    undefined = ~np.isfinite(test["q_hat"].to_numpy(float))
    test = test[undefined | test["dice_lower_bound"].notna().to_numpy()]
    keys = [*RUN_KEYS, "condition", "perturbation", "severity", "level"]
    out = []
    for key, rows in test.groupby(keys, dropna=False, sort=True):
        out.append(dict(zip(keys, key, strict=True), **_coverage_row(rows, alpha, significance)))
    return pd.DataFrame(out, columns=COVERAGE_COLUMNS)


def _pooled_summary(rows: pd.DataFrame, runs: pd.DataFrame, alpha: float) -> dict:
    """Summary of one (study, arch): see ``conformal_summary``."""
    defined = runs[runs["bound_status"] == DEFINED]
    base = dict(
        n_runs=len(runs),
        n_runs_defined=len(defined),
        n_calibration=int(runs["n_calibration"].min()),
        min_calibration=min_calibration_for_bound(alpha),
        target=1 - alpha,
    )
    rows = rows.dropna(subset=["dice_lower_bound"])
    if defined.empty or rows.empty:
        reason = bound_status(base["n_calibration"], alpha)
        status = reason if reason != DEFINED else "no in-domain test images with a bound"
        return dict(
            base,
            n_test=0,
            median_dice_lower_bound=np.nan,
            coverage=np.nan,
            coverage_ci_low=np.nan,
            coverage_ci_high=np.nan,
            status=status,
        )
    n_units = independent_unit(rows).nunique()
    coverage = float((rows["dice"] >= rows["dice_lower_bound"]).mean())
    low, high = clopper_pearson(coverage * n_units, n_units)
    status = (
        DEFINED
        if len(defined) == len(runs)
        else (
            f"{DEFINED} in {len(defined)} of {len(runs)} runs; the others have "
            f"n_calibration < {base['min_calibration']}"
        )
    )
    return dict(
        base,
        n_test=n_units,
        median_dice_lower_bound=float(rows["dice_lower_bound"].median()),
        coverage=coverage,
        coverage_ci_low=low,
        coverage_ci_high=high,
        status=status,
    )


def conformal_summary(
    rows_with_bounds: pd.DataFrame, calibration: pd.DataFrame, alpha: float = 0.1
) -> pd.DataFrame:
    """Per (study, arch), over its in-domain test conditions: the report's conformal answer.

    Columns: median Dice lower bound (over the test images of the runs with a defined bound),
    pooled coverage with its Clopper-Pearson 95% CI, ``n_test`` (independent test images),
    ``n_calibration`` (the smallest calibration set of its runs: the one that decides whether
    a bound exists), ``min_calibration`` and ``status``.

    The coverage pools the runs (seeds) of the architecture. Seeds score the same test images,
    so their coverage events are correlated; the CI therefore counts the independent images
    as its n (effective count = coverage x images), which is conservative.
    """
    test = rows_with_bounds[(rows_with_bounds["split"] == "test")]
    test = test[contract.in_domain(test)].dropna(subset=["dice"])
    out = []
    for (study, arch), runs in calibration.groupby(["study", "arch"], sort=True):
        rows = test[(test["study"] == study) & (test["arch"] == arch)]
        out.append(dict(study=study, arch=arch, **_pooled_summary(rows, runs, alpha)))
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def coverage_statements(coverage: pd.DataFrame) -> list[str]:
    """Plain sentences per (study, condition): undefined bounds, coverage with its CI, breaks."""
    if coverage.empty:
        return ["No test rows with Dice bounds: coverage not assessed."]
    lines = []
    for (study, condition), rows in coverage.groupby(["study", "condition"], sort=True):
        target = rows["target"].iloc[0]
        defined = rows[np.isfinite(rows["q_hat"].to_numpy(float))]
        text = f"{study} / {condition}: "
        if len(defined) < len(rows):
            text += (
                f"Dice bound undefined in {len(rows) - len(defined)} of {len(rows)} runs "
                f"(n_calibration < {int(rows['min_calibration'].iloc[0])}): no coverage claim "
                f"for them"
            )
            if defined.empty:
                lines.append(text + ".")
                continue
            text += "; "
        covered, n_test = defined["covered"].sum(), defined["n_test"].sum()
        broken = defined[defined["below_target"].astype(bool)]
        if broken.empty:
            text += (
                f"coverage consistent with the {target:.2f} target in {len(defined)} runs "
                f"(pooled {covered:.0f} of {n_test:.0f} test evaluations = "
                f"{covered / n_test:.3f}; lowest run {defined['coverage'].min():.3f})."
            )
        else:
            archs = ", ".join(sorted(broken["arch"].astype(str).unique()))
            text += (
                f"coverage BREAKS in {len(broken)} of {len(defined)} runs (lowest "
                f"{broken['coverage'].min():.3f} vs target {target:.2f}, beyond the "
                f"finite-sample slack; archs: {archs})."
            )
        lines.append(text)
    return lines


def fnr_statements(table: pd.DataFrame) -> list[str]:
    """Plain sentences per (study, condition): runs without control, and the realised FNR of the
    runs with it."""
    if table.empty:
        return ["No FNR rows: risk control not assessed."]
    level = table["level"].iloc[0]
    lines = []
    for (study, condition), rows in table.groupby(["study", "condition"], sort=True):
        controlled = rows[rows["certified"].astype(bool)]
        text = f"{study} / {condition}: "
        if len(controlled) < len(rows):
            text += (
                f"no FNR control in {len(rows) - len(controlled)} of {len(rows)} runs "
                f"(t-hat = 0: everything predicted foreground)"
            )
            if controlled.empty:
                lines.append(text + ".")
                continue
            text += "; "
        failed = int((~controlled["meets_level"].astype(bool)).sum())
        verdict = "within" if failed == 0 else f"ABOVE the level in {failed} of"
        text += (
            f"test FNR at t-hat {verdict} {len(controlled)} controlled runs "
            f"(max {controlled['test_fnr'].max():.3f}, level {level:.2f})."
        )
        lines.append(text)
    uncontrolled = table.loc[~table["certified"].astype(bool)]
    if not uncontrolled.empty:
        runs = uncontrolled.drop_duplicates(subset=RUN_KEYS)
        too_few = runs["n_calibration"] < runs["min_calibration"]
        lines.append(
            f"{len(runs)} runs achieved no FNR control; {int(too_few.sum())} of them have fewer "
            f"than {int(runs['min_calibration'].iloc[0])} calibration images, the minimum for "
            f"level {level:g} (1/(n+1) <= level)."
        )
    return lines
