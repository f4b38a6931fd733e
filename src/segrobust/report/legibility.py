"""Is a figure readable at 100% zoom? Every drawn text inside the figure, no two texts on top of
each other, fonts large enough as the report shows them, the figure within one screen.

The check reads matplotlib's own text extents: the figure is drawn once with a renderer that
records every text it actually draws (tick labels of hidden axes, ticks outside the view and
empty strings are not drawn, so they are not checked), then each text's window extent is compared
with the figure's box and with every other text's. Sizes are judged as the report shows the figure
(`segrobust.report.display`: one figure inch = 96 CSS px, scaled down only when wider than the
page's text column).

Rotated text is compared by its enclosing axis-parallel box, exact for 0 and 90 degrees and
conservative otherwise (two diagonal labels can be called overlapping when only their boxes
are): the report's figures use horizontal or vertical text only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from segrobust.report.display import (
    CONTENT_WIDTH_PX,
    CSS_PX_PER_INCH,
    MAX_FIGURE_HEIGHT_PX,
    MIN_FONT_PX,
    font_px,
    shown_size_px,
)

#: Pixels (at the figure's dpi) two boxes may share, or a box may stick out of the figure, before
#: it counts: anti-aliasing and rounding, not a visible collision.
TOLERANCE_PX = 1.0


class FigureLegibilityWarning(UserWarning):
    """A report figure has text that is clipped, overlapping or too small, or does not fit one
    screen; the message lists each problem."""


def drawn_texts(fig: Figure) -> tuple[list[Text], object]:
    """Draw ``fig`` (running its layout engine) and return the texts drawn, each once, in drawing
    order, with the renderer that drew them."""
    fig.canvas.draw()  # a first draw settles the layout (constrained layout, tick positions)
    renderer = fig.canvas.get_renderer()
    drawn: dict[int, Text] = {}
    original = renderer.draw_text

    def record(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if mtext is not None and str(s).strip():
            drawn.setdefault(id(mtext), mtext)
        return original(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = record
    try:
        fig.draw(renderer)
    finally:
        del renderer.draw_text  # back to the class's method
    return [t for t in drawn.values() if not _clipped_away(t, renderer)], renderer


def _clipped_away(text: Text, renderer) -> bool:
    """Whether ``text`` is drawn but entirely outside its clip box (so nothing of it shows)."""
    box = text.get_clip_box() if text.get_clip_on() else None
    if box is None:
        return False
    extent = text.get_window_extent(renderer)
    return not extent.overlaps(box)


def _label(text: Text) -> str:
    content = " ".join(text.get_text().split())
    return repr(content if len(content) <= 40 else content[:37] + "...")


def _boxes(texts: list[Text], renderer) -> np.ndarray:
    """(n, 4) array of x0, y0, x1, y1 window extents (pixels)."""
    if not texts:
        return np.zeros((0, 4))
    return np.array([text.get_window_extent(renderer).extents for text in texts])


def _clipped(texts: list[Text], boxes: np.ndarray, figure_box: Bbox) -> Iterator[str]:
    for text, (x0, y0, x1, y1) in zip(texts, boxes, strict=True):
        out = max(figure_box.x0 - x0, figure_box.y0 - y0, x1 - figure_box.x1, y1 - figure_box.y1)
        if out > TOLERANCE_PX:
            yield f"text {_label(text)} is clipped: it extends {out:.0f} px outside the figure"


def _overlapping(texts: list[Text], boxes: np.ndarray) -> Iterator[str]:
    if len(texts) < 2:
        return
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    dx = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])
    dy = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
    collide = np.triu((dx > TOLERANCE_PX) & (dy > TOLERANCE_PX), k=1)
    for i, j in zip(*np.nonzero(collide), strict=True):
        yield f"texts {_label(texts[i])} and {_label(texts[j])} overlap"


def _small(texts: list[Text], width_in: float) -> Iterator[str]:
    for text in texts:
        size = font_px(text.get_fontsize(), width_in)
        if size < MIN_FONT_PX - 1e-6:
            yield (
                f"text {_label(text)} is {size:.1f} px high at 100% zoom "
                f"(at least {MIN_FONT_PX:g} px)"
            )


def legibility_problems(fig: Figure) -> list[str]:
    """Every reason ``fig`` is hard to read as the report shows it (empty: none).

    Checks: each drawn text lies inside the figure; no two drawn texts intersect; each is at
    least `MIN_FONT_PX` high at 100% zoom; the figure, as shown, fits the page's text column and
    one screen's height.
    """
    width_in, height_in = fig.get_size_inches()
    problems = []
    _, shown_h = shown_size_px(width_in, height_in)
    natural_w = width_in * CSS_PX_PER_INCH
    if natural_w > CONTENT_WIDTH_PX + 0.5:
        problems.append(
            f"figure is {natural_w:.0f} px wide, wider than the page's {CONTENT_WIDTH_PX} px text "
            "column: it is shown scaled down"
        )
    if shown_h > MAX_FIGURE_HEIGHT_PX + 0.5:
        problems.append(
            f"figure is shown {shown_h:.0f} px tall, more than the {MAX_FIGURE_HEIGHT_PX} px that "
            "fit one screen with its caption"
        )
    texts, renderer = drawn_texts(fig)
    boxes = _boxes(texts, renderer)
    problems += _clipped(texts, boxes, fig.bbox)
    problems += _overlapping(texts, boxes)
    problems += _small(texts, width_in)
    return problems


def warn_if_illegible(fig: Figure, what: str) -> list[str]:
    """`legibility_problems` of ``fig``, each also issued as a `FigureLegibilityWarning` naming
    ``what`` (the figure's file): the figure is still written, the job log says what to fix."""
    problems = legibility_problems(fig)
    for problem in problems:
        warnings.warn(f"{what}: {problem}", FigureLegibilityWarning, stacklevel=2)
    return problems
