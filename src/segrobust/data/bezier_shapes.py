"""Random closed Bezier-curve shapes drawn the way the texture paper's authors drew theirs.

The second, independent shape generator (``segrobust.data.shapes`` is the first): its images
test whether a model and its confidence rating carry over to shapes and sizes the project's
own generator does not draw. The construction follows the authors' public generator
(re-implemented here, not copied):

1. ``n_points`` anchor points uniform in the unit square (redrawn, up to ``MAX_REDRAWS``
   times, until neighbouring anchors are at least ``min_distance`` apart), scaled by ``scale``
   and shifted by ``offset``: at the authors' settings the anchors lie in [0.25, 0.75]^2.
2. The anchors are ordered counter-clockwise around their centroid and joined in a loop.
3. At each anchor the curve's direction mixes the directions of the segment arriving and the
   segment leaving it, weighted by ``w = arctan(edgy) / pi + 1/2`` (``edgy`` 0: the mean
   direction, a smooth corner; larger: the leaving segment dominates, a sharper corner).
4. Each pair of neighbouring anchors is joined by a cubic Bezier segment whose two inner
   control points sit ``rad`` times the anchors' distance away from them along those directions
   (``rad`` 1: long arms, round lobes that may bulge well beyond the anchors' hull).
5. The curve is drawn on the pixel grid, thickened by a square of ``DILATION_AT_256`` pixels
   per 256 pixels of image edge (the authors dilate by 9 x 9 at 256 pixels) and everything it
   encloses is filled: one connected region without holes.

The defaults are the authors' "normal" shapes (4 anchors, rad 1.0, edgy 0.05, scale 0.5,
offset 0.25). Their foreground ratio varies widely: measured over 10,000 shapes at 64 pixels
(the generators of ``SeedSequence([0, i])``), median 0.166, 5th-95th percentile 0.067 to 0.298,
extremes 0.014 and 0.447 (``FG_RATIO_RANGE`` holds the 5th-95th percentile range; a test checks
it).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.draw import line

#: The authors' "normal" shape settings.
N_POINTS = 4
RAD = 1.0
EDGY = 0.05
SCALE = 0.5
OFFSET = 0.25
MIN_DISTANCE = 0.001
#: Redraws of the anchor points before the last draw is kept whatever its spacing (as the
#: authors' generator does).
MAX_REDRAWS = 200
#: Edge of the square the outline is thickened with, in pixels at an image edge of 256.
DILATION_AT_256 = 9
#: Curve samples per Bezier segment (consecutive samples are joined by pixel lines, so the
#: outline is closed at any image size).
SAMPLES_PER_SEGMENT = 100
#: 5th-95th percentile of the foreground ratio at the defaults and 64 pixels (module docstring).
FG_RATIO_RANGE = (0.067, 0.298)
#: Smallest image edge a shape is drawn into.
MIN_SIZE = 16


def check_bezier_arguments(
    size: int, n_points: int, rad: float, edgy: float, scale: float, offset: float
) -> None:
    """Raise ValueError naming the offending argument and its allowed values."""
    if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size!r}")
    if not isinstance(n_points, (int, np.integer)) or n_points < 3:
        raise ValueError(f"n_points must be an integer >= 3 (a closed outline), got {n_points!r}")
    if not rad > 0:
        raise ValueError(f"rad must be > 0, got {rad!r}")
    if not edgy >= 0:
        raise ValueError(f"edgy must be >= 0, got {edgy!r}")
    if not (0 < scale and 0 <= offset and offset + scale <= 1):
        raise ValueError(
            f"scale {scale!r} and offset {offset!r} must place the anchors inside the image: "
            "allowed 0 < scale, 0 <= offset, offset + scale <= 1"
        )


def anchor_points(
    n_points: int, scale: float, offset: float, min_distance: float, rng: np.random.Generator
) -> np.ndarray:
    """``(n_points, 2)`` anchors in ``[offset, offset + scale]^2``, counter-clockwise."""
    for _ in range(MAX_REDRAWS + 1):
        points = counter_clockwise(rng.uniform(0.0, 1.0, size=(n_points, 2)))
        gaps = np.linalg.norm(np.diff(points, axis=0, append=points[:1]), axis=1)
        if gaps.min() >= min_distance:
            break
    return points * scale + offset


def counter_clockwise(points: np.ndarray) -> np.ndarray:
    """``points`` ordered by their angle around the centroid."""
    d = points - points.mean(axis=0)
    return points[np.argsort(np.arctan2(d[:, 1], d[:, 0]))]


def corner_directions(points: np.ndarray, edgy: float) -> np.ndarray:
    """The curve's direction (radians) at each anchor of the closed loop ``points``."""
    leaving = np.diff(points, axis=0, append=points[:1])
    out_angle = np.mod(np.arctan2(leaving[:, 1], leaving[:, 0]), 2 * np.pi)
    in_angle = np.roll(out_angle, 1)  # the segment arriving at anchor i left anchor i - 1
    weight = math.atan(edgy) / math.pi + 0.5
    mixed = weight * out_angle + (1 - weight) * in_angle
    # the weighted mean of two angles more than pi apart points backwards: turn it round
    return mixed + np.pi * (np.abs(in_angle - out_angle) > np.pi)


def bezier_outline(points: np.ndarray, rad: float, edgy: float) -> np.ndarray:
    """``(n_points * SAMPLES_PER_SEGMENT, 2)`` samples of the closed curve through ``points``."""
    angle = corner_directions(points, edgy)
    unit = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    start, end = points, np.roll(points, -1, axis=0)
    arm = rad * np.linalg.norm(end - start, axis=1, keepdims=True)
    control1 = start + arm * unit
    control2 = end - arm * np.roll(unit, -1, axis=0)
    t = np.linspace(0.0, 1.0, SAMPLES_PER_SEGMENT)[None, :, None]
    curve = (
        (1 - t) ** 3 * start[:, None]
        + 3 * (1 - t) ** 2 * t * control1[:, None]
        + 3 * (1 - t) * t**2 * control2[:, None]
        + t**3 * end[:, None]
    )
    return curve.reshape(-1, 2)


def dilation_width(size: int) -> int:
    """Odd edge of the thickening square: ``DILATION_AT_256`` pixels per 256, at least 3."""
    return 2 * max(1, round((DILATION_AT_256 - 1) / 2 * size / 256)) + 1


def rasterise_closed(outline: np.ndarray, size: int) -> np.ndarray:
    """The filled region a closed outline (unit-square coordinates) encloses on a
    ``(size, size)`` grid, after thickening the outline by :func:`dilation_width`."""
    pixels = np.clip(np.floor(outline * size).astype(int), 0, size - 1)
    drawn = np.zeros((size, size), dtype=bool)
    for (r0, c0), (r1, c1) in zip(pixels, np.roll(pixels, -1, axis=0), strict=True):
        rr, cc = line(r0, c0, r1, c1)
        drawn[rr, cc] = True
    width = dilation_width(size)
    thick = ndimage.binary_dilation(drawn, structure=np.ones((width, width), dtype=bool))
    return ndimage.binary_fill_holes(thick)


def bezier_shape_mask(
    size: int,
    rng: np.random.Generator,
    *,
    n_points: int = N_POINTS,
    rad: float = RAD,
    edgy: float = EDGY,
    scale: float = SCALE,
    offset: float = OFFSET,
    min_distance: float = MIN_DISTANCE,
) -> np.ndarray:
    """A boolean ``(size, size)`` mask of one random closed Bezier shape (module docstring).

    The defaults are the authors' settings; ``rng`` fixes the anchors (one draw per attempt).
    """
    check_bezier_arguments(size, n_points, rad, edgy, scale, offset)
    points = anchor_points(n_points, scale, offset, min_distance, rng)
    return rasterise_closed(bezier_outline(points, rad, edgy), size)
