"""How the report shows a figure, and the screen every figure must fit.

The HTML report (`segrobust.report.html`) shows each figure at its physical size: one inch of the
matplotlib figure is `CSS_PX_PER_INCH` CSS pixels, the browser's own inch. A font of p points is
then p * 96 / 72 px at 100% zoom whatever the PNG's resolution: `DPI` only adds sharpness for
zooming, printing and HiDPI screens. A figure no wider than `CONTENT_WIDTH_PX` (the page's text
column on a 1280 px wide window) is never scaled down, so its fonts are shown at that size;
`MIN_FONT_PX` is the smallest a reader should have to read. A figure and its caption fit one
`SCREEN_WIDTH_PX` x `SCREEN_HEIGHT_PX` screen when the figure is at most `MAX_FIGURE_HEIGHT_PX`
tall (the caption, two or three lines, takes the rest).

Nothing here imports matplotlib: the HTML page reads these numbers too.
"""

from __future__ import annotations

SCREEN_WIDTH_PX = 1280
SCREEN_HEIGHT_PX = 900
PAGE_MAX_WIDTH_PX = 1100
"""The report page's ``max-width`` (CSS px): the width of its text column (CSS applies it to the
content box, inside the padding)."""
PAGE_PADDING_PX = 16
"""The page's horizontal padding on each side."""
CONTENT_WIDTH_PX = PAGE_MAX_WIDTH_PX
"""Width of the page's text column on a window at least ``PAGE_MAX_WIDTH_PX + 2 *
PAGE_PADDING_PX`` wide (a 1280 px window is)."""
MAX_FIGURE_HEIGHT_PX = 760
"""Tallest a figure may be shown so that it and its caption fit one screen."""
CSS_PX_PER_INCH = 96
"""CSS pixels per inch: the report shows a figure inch as one CSS inch."""
POINTS_PER_INCH = 72
MIN_FONT_PX = 10.0
"""Smallest text height (CSS px at 100% zoom) a figure may show."""
DPI = 150
"""PNG resolution of the report's figures: sharp when zoomed to 150% or printed."""

MAX_FIGURE_WIDTH_IN = CONTENT_WIDTH_PX / CSS_PX_PER_INCH
MAX_FIGURE_HEIGHT_IN = MAX_FIGURE_HEIGHT_PX / CSS_PX_PER_INCH


def shown_size_px(width_in: float, height_in: float) -> tuple[float, float]:
    """The CSS size (px) at which the report shows a figure of this size in inches: its
    physical size, scaled down (aspect kept) only where it is wider than the text column."""
    width, height = width_in * CSS_PX_PER_INCH, height_in * CSS_PX_PER_INCH
    scale = min(1.0, CONTENT_WIDTH_PX / width) if width > 0 else 1.0
    return width * scale, height * scale


def font_px(points: float, figure_width_in: float) -> float:
    """Height in CSS px at 100% zoom of a ``points`` font in a figure ``figure_width_in`` wide,
    as the report shows it."""
    shown_width, _ = shown_size_px(figure_width_in, 1.0)
    scale = shown_width / (figure_width_in * CSS_PX_PER_INCH) if figure_width_in > 0 else 1.0
    return points * CSS_PX_PER_INCH / POINTS_PER_INCH * scale
