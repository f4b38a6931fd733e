"""The legibility check finds what makes a figure unreadable at 100% zoom, and nothing else."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from segrobust.report import display  # noqa: E402
from segrobust.report.legibility import (  # noqa: E402
    FigureLegibilityWarning,
    drawn_texts,
    legibility_problems,
    warn_if_illegible,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _clean_figure():
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=50, layout="constrained")
    ax.plot([0, 1, 2], [0.2, 0.5, 0.4], label="U-Net")
    ax.set(title="background blend", xlabel="Blend factor", ylabel="Dice (0-1)")
    ax.legend()
    return fig


def test_a_plain_figure_has_no_problem():
    assert legibility_problems(_clean_figure()) == []


def test_a_deliberately_broken_figure_fails_on_each_count():
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=50)  # no layout engine: labels may stick out
    ax.plot(range(6), range(6))
    ax.set_xticks(range(6), [f"a very long tick label number {i}" for i in range(6)])
    ax.set_ylabel("a y label", fontsize=10)
    ax.yaxis.set_label_coords(-0.5, 0.5)  # far left of the figure: clipped
    ax.set_title("six point title", fontsize=6)
    problems = legibility_problems(fig)
    assert any("overlap" in p and "a very long tick label" in p for p in problems), problems
    assert any("'a y label' is clipped" in p for p in problems), problems
    assert any("'six point title' is 8.0 px high" in p for p in problems), problems


def test_a_figure_larger_than_one_screen_is_named():
    fig, ax = plt.subplots(figsize=(14, 10), dpi=20, layout="constrained")
    ax.plot([0, 1], [0, 1])
    problems = legibility_problems(fig)
    assert any("wider than the page's 1100 px text column" in p for p in problems), problems
    assert any("more than the 760 px" in p for p in problems), problems
    # shown scaled down to the column, its 10 pt tick labels are smaller than 13.3 px
    assert display.font_px(10, 14) == pytest.approx(10 * 96 / 72 * 1100 / (14 * 96))


def test_hidden_and_out_of_view_text_is_not_checked():
    fig, (left, right) = plt.subplots(1, 2, figsize=(5, 3), dpi=50, layout="constrained")
    right.set_axis_off()  # its tick labels exist but are not drawn
    left.text(5.0, 5.0, "far outside the data limits", clip_on=True)
    left.set_xlim(0, 1)
    texts, _ = drawn_texts(fig)
    assert all(t.get_text() != "far outside the data limits" for t in texts)
    assert not any(t.axes is right for t in texts)


def test_problems_are_warnings_naming_the_file():
    fig, ax = plt.subplots(figsize=(3, 2), dpi=50, layout="constrained")
    ax.set_title("tiny", fontsize=5)
    with pytest.warns(FigureLegibilityWarning, match=r"fig\.png: text 'tiny' is 6\.7 px high"):
        warn_if_illegible(fig, "fig.png")
