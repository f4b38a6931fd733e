"""Numbers printed with the digits that tell them apart.

A value compared with a bound is compared unrounded; printed with a fixed 3 significant digits
it can look equal to the bound it was found outside of ("0.0971 outside the calibrated 0.0971 to
0.503"). `apart` prints a value and its references with the fewest significant digits (at least
``minimum``) at which every reference that differs from the value also reads differently.
"""

from __future__ import annotations

#: Enough significant digits to tell any two distinct float64 values apart.
MAX_DIGITS = 17


def apart(value: float, *references: float, minimum: int = 3) -> list[str]:
    """``[value, *references]`` formatted with one number of significant digits, the fewest
    (at least ``minimum``) at which no reference that differs from ``value`` prints the same."""
    differing = [r for r in references if r != value]
    for digits in range(minimum, MAX_DIGITS + 1):
        shown = f"{value:.{digits}g}"
        if all(f"{r:.{digits}g}" != shown for r in differing):
            break
    return [f"{x:.{digits}g}" for x in (value, *references)]
