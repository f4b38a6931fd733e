"""Random smooth closed shapes: the foreground masks of the texture study.

A shape is star-shaped around its centre with a radial function built from a few low harmonics,

    r(theta) = R * (1 + sum_k a_k cos(k theta + phi_k)),   k = 2 .. MAX_HARMONIC,

whose amplitudes sum to ``irregularity * MAX_DEFORMATION``: irregularity 0 gives a disc of radius
R, irregularity 1 a blob whose radius swings between 0.4 R and 1.6 R. Because r(theta) stays
positive, the shape is one connected region without holes. The first harmonic is left out: it
only shifts the shape, which the centre jitter already does.

Sizes and outlines. ``radius`` is either one mean radius R (every shape about one size: the
foreground ratio of a whole dataset then lies within a few thousandths of pi R^2) or a range
``[low, high]`` from which each shape draws its R uniformly, so a dataset spans the foreground
ratios between about pi low^2 and pi high^2; ``irregularity`` likewise (each shape draws its
own, after its radius). Ranges are the texture study's default: images another generator or a
deployment brings come in many sizes and outlines (the texture paper's Bezier shapes cover
0.067 to 0.298 of the image from the 5th to the 95th percentile,
``segrobust.data.bezier_shapes``), and a model and its calibration images should have seen what
it is asked about. Each range makes one draw per shape, first; single values make none, so
they keep every shape they drew before ranges existed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Highest harmonic of the radial function (low harmonics keep the outline smooth).
MAX_HARMONIC = 5
#: Largest relative swing of the radius, reached at irregularity 1 (keeps r(theta) >= 0.4 R).
MAX_DEFORMATION = 0.6
#: Smallest image edge in pixels a shape is drawn into.
MIN_SIZE = 8
#: Smallest radius in pixels the shape may shrink to anywhere on its outline.
MIN_RADIUS_PX = 2.0


def shape_margin(size: int) -> int:
    """Pixels kept free between a shape and the image border (3 % of the edge, at least 2)."""
    return max(2, math.ceil(0.03 * size))


def max_radius_fraction(size: int, irregularity: float) -> float:
    """Largest ``radius`` (fraction of ``size``) whose shape still fits inside the margin."""
    half_room = (size - 1) / 2.0 - shape_margin(size)
    return half_room / (size * (1.0 + MAX_DEFORMATION * irregularity))


#: One value, or a range ``[low, high]`` each shape draws its own value from.
Radius = float | Sequence[float]
Irregularity = float | Sequence[float]


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def value_bounds(value: float | Sequence[float], name: str = "radius") -> tuple[float, float]:
    """``(low, high)`` of a value or a range (equal for one value).

    Raises:
        ValueError: a range that is not two increasing numbers, naming ``name``.
    """
    if _is_number(value):
        return float(value), float(value)
    values = list(value) if isinstance(value, (list, tuple)) else None
    if values is None or len(values) != 2 or not all(_is_number(v) for v in values):
        raise ValueError(
            f"{name} must be a number or a range [low, high] of two numbers, got {value!r}"
        )
    low, high = map(float, values)
    if not low < high:
        raise ValueError(f"{name} range [low, high] needs low < high, got {values!r}")
    return low, high


def radius_bounds(radius: Radius) -> tuple[float, float]:
    """``(low, high)`` of a radius or radius range (:func:`value_bounds`)."""
    return value_bounds(radius, "radius")


def _draw(bounds: tuple[float, float], rng: np.random.Generator) -> float:
    """The value of a shape: the one value, or uniform in the range (one draw)."""
    low, high = bounds
    return low if low == high else float(rng.uniform(low, high))


def check_shape_arguments(size: int, irregularity: Irregularity, radius: Radius) -> None:
    """Raise ValueError naming the offending argument (size, irregularity, radius) and its
    allowed range; ranges are checked at their ends (every radius at the most irregular
    outline)."""
    if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size!r}")
    irregular_low, irregular_high = value_bounds(irregularity, "irregularity")
    if not 0.0 <= irregular_low <= irregular_high <= 1.0:
        raise ValueError(f"irregularity must be in [0, 1], got {irregularity!r}")
    low, high = radius_bounds(radius)
    _check_radius(size, irregular_high, low)
    _check_radius(size, irregular_high, high)


def _check_radius(size: int, irregularity: float, radius: float) -> None:
    if not 0.0 < radius < 0.5:
        raise ValueError(
            f"radius must be in (0, 0.5) (a fraction of the image size), got {radius!r}"
        )
    largest = max_radius_fraction(size, irregularity)
    if radius > largest:
        raise ValueError(
            f"radius {radius:g} does not fit a {size}-pixel image at irregularity "
            f"{irregularity:g} (border margin {shape_margin(size)} px); allowed: radius <= "
            f"{largest:.3f}"
        )
    smallest_px = radius * size * (1.0 - MAX_DEFORMATION * irregularity)
    if smallest_px < MIN_RADIUS_PX:
        raise ValueError(
            f"radius {radius:g} is too small for a {size}-pixel image at irregularity "
            f"{irregularity:g}: the outline would come within {smallest_px:.2f} px of its centre "
            f"(allowed: at least {MIN_RADIUS_PX:g} px)"
        )


def random_shape_mask(
    size: int, irregularity: Irregularity, radius: Radius, rng: np.random.Generator
) -> np.ndarray:
    """A boolean ``(size, size)`` mask of one smooth, connected, hole-free random shape.

    Args:
        size: image edge in pixels.
        irregularity: 0 (a disc) .. 1 (strongly lobed); scales the harmonic amplitudes. A
            range ``[low, high]`` is drawn from uniformly (after the radius).
        radius: mean radius R as a fraction of ``size`` (R = radius * size pixels), or a range
            ``[low, high]`` R is drawn from uniformly (the shape's first draw).
        rng: source of the amplitudes, phases and centre. The same number of draws is made for
            every irregularity, so one rng state gives the same centre and phases at any
            irregularity.

    The centre is jittered uniformly over the positions that keep the whole shape (its largest
    possible radius) at least ``shape_margin(size)`` pixels from the border.
    """
    check_shape_arguments(size, irregularity, radius)
    r_fraction = _draw(radius_bounds(radius), rng)
    irregularity = _draw(value_bounds(irregularity, "irregularity"), rng)
    harmonics = np.arange(2, MAX_HARMONIC + 1)
    weights = rng.uniform(0.0, 1.0, size=harmonics.size) / harmonics  # decaying spectrum
    phases = rng.uniform(0.0, 2.0 * np.pi, size=harmonics.size)
    amplitudes = weights / weights.sum() * (MAX_DEFORMATION * irregularity)

    r_mean = r_fraction * size
    r_max = r_mean * (1.0 + MAX_DEFORMATION * irregularity)
    low = r_max + shape_margin(size)
    high = (size - 1) - low
    centre = rng.uniform(low, high, size=2)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    theta = np.arctan2(dy, dx)
    outline = r_mean * (1.0 + np.cos(np.outer(theta.ravel(), harmonics) + phases) @ amplitudes)
    mask = np.hypot(dy, dx) <= outline.reshape(size, size)
    return _single_filled_region(mask)


def _single_filled_region(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected component and fill its holes.

    A star-shaped region with a positive radius is connected and hole-free in the continuum; this
    guards the pixel grid, where a sliver of the outline could in principle rasterise apart.
    """
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask)
