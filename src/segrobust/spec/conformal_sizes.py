"""How many calibration images a conformal guarantee needs: the arithmetic alone.

`segrobust.guarantees.kernel` computes the guarantees; these three functions say, from a level
and a count only, whether one can exist. They live apart, importing nothing but ``math``, so the
parse-time pre-flight (`segrobust.spec.preflight`) can ask before any job without importing
numpy, pandas or scipy; `kernel` re-exports them.
"""

from __future__ import annotations

import math

# Tolerance for (n + 1)(1 - alpha) landing a rounding error above an integer (20 * 0.9).
CEIL_TOLERANCE = 1e-9


def min_calibration_for_fnr(level: float, bound: float = 1.0) -> int:
    """Smallest calibration n with B / (n + 1) <= level: below it no threshold can qualify."""
    n = max(0, math.floor(bound / level) - 2)
    while bound / (n + 1) > level + CEIL_TOLERANCE:
        n += 1
    return n


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)): the rank of the calibration score used as quantile."""
    return math.ceil((n + 1) * (1 - alpha) - CEIL_TOLERANCE)


def min_calibration_for_bound(alpha: float) -> int:
    """Smallest n with k = ceil((n + 1)(1 - alpha)) <= n, i.e. n >= (1 - alpha) / alpha
    (9 for alpha = 0.1): with fewer calibration images the bound is vacuous."""
    n = max(1, math.floor((1 - alpha) / alpha) - 1)
    while conformal_rank(n, alpha) > n:
        n += 1
    return n
