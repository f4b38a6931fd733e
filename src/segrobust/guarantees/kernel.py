"""The conformal kernel: the two guarantees a model run's calibration images give.

Both are computed from a run's in-domain calibration images (split ``calibration``, never
trained on nor used for selection), by the analysis over every run's table
(``segrobust.analysis.conformal``) and for one new image from the scores and curve its
``calibration.json`` stores (``segrobust.guarantees.calibration_file``):

(a) Conformal risk control of the false-negative rate (Angelopoulos, Bates, Fisch, Lei,
    Schuster, "Conformal Risk Control", 2022). The prediction at threshold t is ``p >= t``; the
    per-image FNR(t) is non-decreasing in t and bounded by B = 1. t-hat is the largest threshold
    with (n / (n + 1)) * mean FNR_cal(t') + B / (n + 1) <= level for every t' <= t, which gives
    E[FNR_test(t-hat)] <= level for an exchangeable test image. If no threshold of the grid
    qualifies, t-hat = 0: every pixel is foreground and the FNR is 0 by construction, which is
    no control at all. Since B / (n + 1) alone must be <= level, that is certain when
    n < 1 / level - 1; ``fnr_status`` says which case applies and the minimum n.

(b) A per-image lower bound on Dice by split conformal prediction on the model's own quality
    estimate: scores s_i = quality_i - dice_i on calibration, q = the ceil((n + 1)(1 - alpha))-th
    smallest score, bound = clip(quality - q, 0, 1), so that P(dice >= bound) >= 1 - alpha for
    an exchangeable test image. When k > n (fewer than (1 - alpha) / alpha calibration images)
    the quantile is infinite and the bound is vacuous: it is reported as undefined (NaN, status,
    the minimum n needed), and never described as holding.

Torch-free (numpy and pandas): evaluation, analysis and predict all import it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from segrobust import contract
from segrobust.spec.conformal_sizes import (  # the arithmetic alone (also at parse time)
    conformal_rank,
    min_calibration_for_bound,
    min_calibration_for_fnr,
)

#: The thresholds of every image's false-negative-rate curve (``fnr.csv``), among which
#: conformal risk control chooses t-hat.
FNR_THRESHOLDS: np.ndarray = np.round(np.arange(51) * 0.02, 2)

DEFINED = "defined"
UNDEFINED = "undefined"


def calibration_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The in-domain calibration-split rows."""
    return rows[(rows["split"] == "calibration") & contract.in_domain(rows)]


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


def fnr_status(certified: bool, n: int, level: float) -> str:
    """``controlled`` or why conformal risk control achieved nothing (t-hat = 0)."""
    if certified:
        return "controlled"
    needed = min_calibration_for_fnr(level)
    if n < needed:
        return (
            f"no control: t-hat = 0 (everything foreground); n_calibration = {n} < {needed} "
            f"needed for level {level:g}"
        )
    return (
        "no control: t-hat = 0 (everything foreground); no threshold of the grid keeps the "
        f"calibration FNR bound <= {level:g}"
    )


def conformal_quantile(scores, alpha: float) -> float:
    """The k-th smallest score, k = ceil((n + 1)(1 - alpha)); infinite when k > n."""
    s = np.sort(np.asarray(scores, float))
    k = conformal_rank(len(s), alpha)
    return float(s[k - 1]) if k <= len(s) else math.inf


def dice_lower_bound(quality, q_hat: float) -> np.ndarray:
    """clip(quality - q_hat, 0, 1): the per-image Dice lower bound; NaN where q_hat is
    infinite (too few calibration images: no finite bound, see the module docstring)."""
    q = np.asarray(q_hat, float)
    bound = np.clip(np.asarray(quality, float) - q, 0.0, 1.0)
    return np.where(np.isfinite(q), bound, np.nan)


def bound_status(n_calibration: int, alpha: float) -> str:
    """``defined`` or why the run's Dice bound is undefined."""
    needed = min_calibration_for_bound(alpha)
    if n_calibration >= needed:
        return DEFINED
    return (
        f"{UNDEFINED}: n_calibration = {n_calibration} < {needed} needed for alpha {alpha:g} "
        f"(the conformal quantile is infinite)"
    )
