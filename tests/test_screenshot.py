"""The first-screen check itself, on small hand-made pages: it must see a verdict line pushed
below the first screen, and count only the text a reader is shown before the first figure."""

from __future__ import annotations

import os

import pytest

from segrobust.report.screenshot import find_browser, first_screen


@pytest.fixture(autouse=True)
def _browser():
    if find_browser() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (apt-get install chromium): .ci/run does")
        pytest.skip("no Chromium here (apt-get install chromium); CI runs this check")


def _page(tmp_path, gap_px: int) -> str:
    page = tmp_path / "index.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>t</title></head><body>"
        "<section id='answer'><h2>Answer</h2>"
        "<div class='verdict'><ul><li>U-Net wins 3 of 4 regimes</li></ul></div>"
        f"<div style='height:{gap_px}px'></div>"
        "<div class='verdict'><ul><li>no Dice bound: 2 calibration images</li>"
        "<li>the papers' findings: 0.5 reproduced</li></ul></div>"
        "<details><summary>folded 1.5</summary><p>hidden words 2.5 3.5 4.5</p></details>"
        "</section><figure><img alt='f' width='10' height='10' src=''></figure>"
        "<p>after the figure 9.9</p></body></html>"
    )
    return page


def test_every_verdict_line_on_the_first_screen_is_seen(tmp_path):
    screen = first_screen(_page(tmp_path, 100), width=1280, height=900)
    assert screen.answer_visible and screen.verdicts_visible
    assert (screen.verdict_lines_seen, screen.verdict_lines) == (3, 3)
    # shown before the figure: not the folded paragraph, nor the text after the figure
    assert screen.decimals_before_figures == 2  # 0.5 and the summary's 1.5
    assert screen.words_before_figures == 20


def test_a_verdict_line_below_the_first_screen_fails_the_check(tmp_path):
    screen = first_screen(_page(tmp_path, 2000), width=1280, height=900)
    assert screen.answer_visible and not screen.verdicts_visible
    assert (screen.verdict_lines_seen, screen.verdict_lines) == (1, 3)
