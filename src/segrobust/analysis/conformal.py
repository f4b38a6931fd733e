"""Conformal confidence from the calibration split (never trained on nor used for selection).

Two guarantees, both calibrated per model run (study, dataset, arch, seed, patch) on the run's
in-domain calibration rows (split ``calibration``, clean / own test distribution):

(a) Conformal risk control of the false-negative rate (Angelopoulos, Bates, Fisch, Lei,
    Schuster, "Conformal Risk Control", 2022). The prediction at threshold t is ``p >= t``; the
    per-image FNR(t) is non-decreasing in t and bounded by B = 1. t-hat is the largest threshold
    with (n / (n + 1)) * mean FNR_cal(t') + B / (n + 1) <= level for every t' <= t, which gives
    E[FNR_test(t-hat)] <= level for an exchangeable test image. If no threshold of the grid
    qualifies, t-hat = 0: every pixel is foreground and the FNR is 0 by construction.

(b) A per-image lower bound on Dice by split conformal prediction on the model's own quality
    estimate: scores s_i = quality_i - dice_i on calibration, q = the ceil((n + 1)(1 - alpha))-th
    smallest score (infinite when that exceeds n), bound = clip(quality - q, 0, 1), so that
    P(dice >= bound) >= 1 - alpha for an exchangeable test image.

Coverage under shift is checked, not assumed: conditional on the calibration set the coverage
of split conformal prediction is Beta(k, n + 1 - k) with k = ceil((n + 1)(1 - alpha)) (Vovk 2012;
Angelopoulos & Bates, "A gentle introduction to conformal prediction", 2021), so the number of
covered test images is beta-binomial. A condition is flagged when its covered count falls in the
lower ``significance`` tail of that distribution, i.e. below 1 - alpha by more than the
finite-sample slack that exchangeable data would show.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

RUN_KEYS = ["study", "dataset", "arch", "seed", "patch"]
FNR_COLUMNS = [
    *RUN_KEYS,
    "condition",
    "level",
    "n_calibration",
    "t_hat",
    "certified",
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
    "q_hat",
    "n_test",
    "covered",
    "coverage",
    "target",
    "slack",
    "p_value",
    "below_target",
]
# Tolerance for (n + 1)(1 - alpha) landing a rounding error above an integer (20 * 0.9).
_CEIL_TOLERANCE = 1e-9


def in_domain(rows: pd.DataFrame) -> pd.Series:
    """Rows from the run's own (clean) test distribution: condition ``clean`` or its dataset."""
    mask = (rows["condition"] == "clean") | (rows["condition"] == rows["dataset"])
    if "test_dataset" in rows and "perturbation" in rows:
        own = (rows["test_dataset"] == rows["dataset"]) & (rows["perturbation"] == "none")
        mask = mask | own
    return mask


def calibration_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The in-domain calibration-split rows."""
    return rows[(rows["split"] == "calibration") & in_domain(rows)]


def crc_threshold(thresholds, mean_fnr, n: int, level: float, bound: float = 1.0):
    """Conformal-risk-control threshold and whether the CRC inequality holds there.

    Args:
        thresholds: the threshold grid.
        mean_fnr: mean calibration FNR at each threshold.
        n: number of calibration images.
        level: target FNR.
        bound: upper bound B of the loss.

    Returns:
        (t_hat, certified): the largest t whose whole prefix t' <= t satisfies
        n/(n+1) * mean_fnr + B/(n+1) <= level, or (0.0, False) when none does.
    """
    order = np.argsort(thresholds)
    t = np.asarray(thresholds, float)[order]
    risk = np.asarray(mean_fnr, float)[order]
    ok = (n / (n + 1)) * risk + bound / (n + 1) <= level
    prefix = np.cumprod(ok).astype(bool)
    if not prefix.any():
        return 0.0, False
    return float(t[np.flatnonzero(prefix)[-1]]), True


def _mean_fnr_at(rows: pd.DataFrame, t_hat: float) -> float:
    at = rows[np.isclose(rows["threshold"], t_hat)]
    if at.empty:
        return 0.0 if t_hat == 0.0 else np.nan  # t = 0 marks everything foreground: FNR 0
    return float(at["fnr"].mean())


def conformal_fnr(fnr: pd.DataFrame, level: float = 0.1) -> pd.DataFrame:
    """t-hat per run from its calibration rows and the realised test FNR per condition.

    Images with an empty label (FNR undefined, NaN) are left out.
    """
    table = fnr.dropna(subset=["fnr"])
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
                    t_hat=t_hat,
                    certified=certified,
                    calibration_fnr=_mean_fnr_at(cal, t_hat),
                    n_test=rows["image_id"].nunique(),
                    test_fnr=test_fnr,
                    meets_level=bool(test_fnr <= level),
                )
            )
    return pd.DataFrame(out, columns=FNR_COLUMNS)


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)): the rank of the calibration score used as quantile."""
    return math.ceil((n + 1) * (1 - alpha) - _CEIL_TOLERANCE)


def conformal_quantile(scores, alpha: float) -> float:
    """The k-th smallest score, k = ceil((n + 1)(1 - alpha)); infinite when k > n."""
    s = np.sort(np.asarray(scores, float))
    k = conformal_rank(len(s), alpha)
    return float(s[k - 1]) if k <= len(s) else math.inf


def dice_lower_bound(quality, q_hat: float) -> np.ndarray:
    """clip(quality - q_hat, 0, 1): the per-image Dice lower bound."""
    return np.clip(np.asarray(quality, float) - q_hat, 0.0, 1.0)


def calibrate_dice_bounds(per_image: pd.DataFrame, alpha: float = 0.1):
    """Add ``dice_lower_bound`` to every row; return (rows, per-run calibration table).

    The calibration table has the run keys, n_calibration and q_hat. Rows whose quality is
    missing get a missing bound.
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
    # A run without calibration rows has n = 0: k = 1 > 0, so q is infinite and the bound is 0.
    calibration["n_calibration"] = calibration["n_calibration"].fillna(0).astype(int)
    calibration["q_hat"] = calibration["q_hat"].fillna(math.inf)
    merged = per_image.merge(calibration, on=RUN_KEYS, how="left")
    out = per_image.copy()
    out["dice_lower_bound"] = dice_lower_bound(merged["quality"], merged["q_hat"].to_numpy())
    return out, calibration


def coverage_tail(covered: int, n_test: int, n_cal: int, alpha: float, significance: float):
    """(p_value, slack) of a covered count under exchangeability (beta-binomial).

    slack is how far below 1 - alpha the empirical coverage may fall before its lower-tail
    probability drops under ``significance``.
    """
    k = conformal_rank(n_cal, alpha)
    if k > n_cal or n_test == 0:  # infinite quantile: coverage is 1 by construction
        return 1.0, 0.0
    law = stats.betabinom(n_test, k, n_cal + 1 - k)
    slack = (1 - alpha) - law.ppf(significance) / n_test
    return float(law.cdf(covered)), float(max(slack, 0.0))


def coverage_table(
    rows_with_bounds: pd.DataFrame,
    calibration: pd.DataFrame,
    alpha: float = 0.1,
    significance: float = 0.05,
) -> pd.DataFrame:
    """Empirical coverage P(dice >= bound) per run and test condition, with the shift flag."""
    test = rows_with_bounds[rows_with_bounds["split"] == "test"].dropna(
        subset=["dice", "dice_lower_bound"]
    )
    test = test.merge(calibration, on=RUN_KEYS, how="left")
    keys = [*RUN_KEYS, "condition", "perturbation", "severity", "level"]
    out = []
    for key, rows in test.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, key, strict=True))
        n_cal, q_hat = rows["n_calibration"].iloc[0], rows["q_hat"].iloc[0]
        covered = int((rows["dice"] >= rows["dice_lower_bound"]).sum())
        p_value, slack = coverage_tail(covered, len(rows), int(n_cal), alpha, significance)
        out.append(
            dict(
                row,
                alpha=alpha,
                n_calibration=int(n_cal),
                q_hat=q_hat,
                n_test=len(rows),
                covered=covered,
                coverage=covered / len(rows),
                target=1 - alpha,
                slack=slack,
                p_value=p_value,
                below_target=bool(p_value < significance),
            )
        )
    return pd.DataFrame(out, columns=COVERAGE_COLUMNS)


def coverage_statements(coverage: pd.DataFrame) -> list[str]:
    """Plain sentences on where coverage holds and where it breaks, per (study, condition)."""
    if coverage.empty:
        return ["No test rows with Dice bounds: coverage not assessed."]
    lines = []
    for (study, condition), rows in coverage.groupby(["study", "condition"], sort=True):
        broken = rows[rows["below_target"]]
        target = rows["target"].iloc[0]
        if broken.empty:
            lines.append(
                f"{study} / {condition}: coverage holds (min {rows['coverage'].min():.3f}, "
                f"target {target:.2f}, {len(rows)} runs)."
            )
        else:
            archs = ", ".join(sorted(broken["arch"].astype(str).unique()))
            lines.append(
                f"{study} / {condition}: coverage BREAKS in {len(broken)} of {len(rows)} runs "
                f"(lowest {broken['coverage'].min():.3f} vs target {target:.2f}, beyond the "
                f"finite-sample slack; archs: {archs})."
            )
    return lines


def fnr_statements(table: pd.DataFrame) -> list[str]:
    """Plain sentences on the conditions whose realised test FNR exceeds the target level."""
    if table.empty:
        return ["No FNR rows: risk control not assessed."]
    level = table["level"].iloc[0]
    lines = []
    for (study, condition), rows in table.groupby(["study", "condition"], sort=True):
        worst = rows["test_fnr"].max()
        failed = int((~rows["meets_level"]).sum())
        verdict = "within" if failed == 0 else f"ABOVE the level in {failed} of {len(rows)} runs"
        lines.append(
            f"{study} / {condition}: test FNR at t-hat {verdict} (max {worst:.3f}, "
            f"level {level:.2f})."
        )
    uncertified = table.loc[~table["certified"], ["study", "dataset", "arch", "seed", "patch"]]
    if not uncertified.empty:
        lines.append(
            f"{len(uncertified.drop_duplicates())} runs have too few calibration images for "
            f"the level (1/(n+1) > level): t-hat = 0, everything predicted foreground."
        )
    return lines
