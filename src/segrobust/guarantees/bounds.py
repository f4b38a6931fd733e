"""The guarantees of one model run at the level a reader asks for, from what its calibration file
stores: the Dice lower bound from the sorted calibration scores, the false-negative-rate
threshold from the mean calibration FNR curve (``segrobust.guarantees.kernel``). The file holds
no level, so the analysis levels (``analysis.conformal_alpha``, ``fnr_level``) and predict's
can differ without re-running any evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segrobust.guarantees.kernel import (
    DEFINED,
    bound_status,
    conformal_quantile,
    crc_threshold,
    dice_lower_bound,
    fnr_status,
)


@dataclass(frozen=True)
class DiceBound:
    """The per-image Dice lower bound at one confidence level."""

    bound: float  # NaN when undefined
    q_hat: float  # infinite when undefined
    confidence: float
    status: str  # ``defined`` or why not (``segrobust.guarantees.kernel.bound_status``)

    @property
    def defined(self) -> bool:
        return self.status == DEFINED


@dataclass(frozen=True)
class FnrControl:
    """The conformal-risk-control threshold at one FNR level."""

    threshold: float
    certified: bool
    level: float
    status: str  # ``controlled`` or why not (``segrobust.guarantees.kernel.fnr_status``)


def dice_bound(scores: Sequence[float], quality: float, confidence: float) -> DiceBound:
    """``clip(quality - q_hat, 0, 1)`` with q_hat the conformal quantile of the sorted
    calibration ``scores`` (``quality - dice``) at alpha = 1 - ``confidence``."""
    check_level(confidence, "confidence")
    alpha = 1.0 - confidence
    scores = np.asarray(scores, dtype=float)
    q_hat = conformal_quantile(scores, alpha)
    bound = float(dice_lower_bound(quality, q_hat))
    status = bound_status(int(scores.size), alpha)
    return DiceBound(bound, q_hat, confidence, status)


def fnr_control(block: Mapping[str, Any], level: float) -> FnrControl:
    """t-hat of conformal risk control at FNR ``level`` from a calibration file's ``fnr`` block
    (``thresholds``, ``mean_fnr`` over its ``n`` calibration images)."""
    check_level(level, "FNR level")
    n = int(block["n"])
    if n:
        curve = np.asarray(block["mean_fnr"], dtype=float)
        t_hat, certified = crc_threshold(block["thresholds"], curve, n, level)
    else:
        t_hat, certified = 0.0, False
    return FnrControl(t_hat, certified, level, fnr_status(certified, n, level))


def check_level(value: float, what: str) -> float:
    """``value`` if it lies in (0, 1), else a ValueError naming ``what``."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{what} must lie strictly between 0 and 1, got {value:g}")
    return value
