"""Open the HTML report as a reader would: headless Chromium, a laptop-sized window.

Used by the tests and by ``python -m segrobust.report.screenshot results/report/index.html``:
it says where the "Answer" section starts on the page (it must be within the first screen),
whether every study's verdict lines lie on that screen, how many words and decimal numbers a
reader sees before the first figure, which figures the browser shows smaller than their
intended size (none should be: a figure is drawn to fit the page, `segrobust.report.display`),
and can save a screenshot of that first screen. Chromium runs with ``--no-sandbox`` because CI runs
as root, where its sandbox refuses to start; the page is a local file with no scripts of its own.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Injected into a copy of the page, written into its title: the Answer section's position, the
#: figures shown narrower than their width attribute, how many verdict lines (``.verdict li``)
#: lie wholly within the first screen of how many, and the words and decimal numbers a reader
#: sees before the first figure (text in folded blocks is not shown, so not counted).
_PROBE = (
    "<script>const a=document.getElementById('answer');"
    "const scaled=[...document.querySelectorAll('figure img')].filter(i=>"
    "i.getBoundingClientRect().width<Number(i.getAttribute('width'))-0.5).map(i=>i.alt);"
    "const lines=[...document.querySelectorAll('.verdict li')];"
    "const seen=lines.filter(l=>{const r=l.getBoundingClientRect();"
    "return r.height>0&&r.top>=0&&r.bottom<=window.innerHeight;}).length;"
    "const fig=document.querySelector('figure');let text='';"
    "const w=document.createTreeWalker(document.body,NodeFilter.SHOW_TEXT);"
    "while(w.nextNode()){const n=w.currentNode;"
    "if(fig&&(fig.contains(n)||(fig.compareDocumentPosition(n)&Node.DOCUMENT_POSITION_FOLLOWING)))"
    "break;const e=n.parentElement;"
    "const d=e&&e.closest('details:not([open])');"
    "if(e&&!e.closest('script,style,title')&&!(d&&!e.closest('summary'))"
    "&&e.getClientRects().length)text+=' '+n.textContent;}"
    "const words=text.split(/\\s+/).filter(x=>x).length;"
    "const decimals=(text.match(/\\d*\\.\\d+/g)||[]).length;"
    "document.title='answer-top='+(a?Math.round(a.getBoundingClientRect().top):-1)"
    "+';viewport='+window.innerHeight+';scaled='+scaled.join(',')"
    "+';verdicts='+seen+'/'+lines.length+';words='+words+';decimals='+decimals+';end';</script>"
)


@dataclass(frozen=True)
class FirstScreen:
    """Where the Answer starts (pixels from the top; -1 when the page has none) in a window of
    ``viewport`` pixels height, the figures shown scaled down (by their alt text), the verdict
    lines wholly on that screen and in all, and the words and decimal numbers shown before the
    first figure."""

    answer_top: int
    viewport: int
    scaled_figures: tuple[str, ...] = ()
    verdict_lines_seen: int = 0
    verdict_lines: int = 0
    words_before_figures: int = 0
    decimals_before_figures: int = 0

    @property
    def answer_visible(self) -> bool:
        return 0 <= self.answer_top < self.viewport

    @property
    def verdicts_visible(self) -> bool:
        """Every verdict line lies wholly on the first screen (and there is at least one)."""
        return 0 < self.verdict_lines == self.verdict_lines_seen


def find_browser() -> str | None:
    """The first headless-capable Chromium on PATH (Debian's package is ``chromium``)."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _chromium(browser: str, *args: str) -> str:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{browser} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def first_screen(
    page: str | Path,
    *,
    width: int = 1280,
    height: int = 900,
    screenshot: str | Path | None = None,
    browser: str | None = None,
) -> FirstScreen:
    """Load ``page`` in a ``width`` x ``height`` window; optionally save the first screen.

    Raises:
        FileNotFoundError: no Chromium on PATH (the message says how to install it).
    """
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(
            "no Chromium found (looked for " + ", ".join(BROWSERS) + "); on Debian or Ubuntu: "
            "apt-get install chromium"
        )
    page = Path(page).resolve()
    window = f"--window-size={width},{height}"
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / page.name
        probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
        dom = _chromium(browser, window, "--dump-dom", probe.as_uri())
    found = re.search(
        r"answer-top=(-?\d+);viewport=(\d+);scaled=([^;]*);verdicts=(\d+)/(\d+);"
        r"words=(\d+);decimals=(\d+);end",
        dom,
    )
    if found is None:
        raise RuntimeError(f"{page}: the browser did not run the position probe")
    if screenshot is not None:
        _chromium(browser, window, f"--screenshot={Path(screenshot).resolve()}", page.as_uri())
    scaled = tuple(name for name in found.group(3).split(",") if name)
    seen, lines, words, decimals = (int(found.group(i)) for i in range(4, 8))
    return FirstScreen(
        int(found.group(1)), int(found.group(2)), scaled, seen, lines, words, decimals
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", help="the report, e.g. results/report/index.html")
    parser.add_argument("--screenshot", help="save the first screen as this PNG")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    screen = first_screen(
        args.page, width=args.width, height=args.height, screenshot=args.screenshot
    )
    where = "within" if screen.answer_visible else "NOT within"
    print(
        f"{args.page}: the Answer section starts {screen.answer_top} px from the top, "
        f"{where} the first screen ({args.width} x {screen.viewport} px); "
        f"{screen.verdict_lines_seen} of {screen.verdict_lines} verdict lines on it; "
        f"{screen.words_before_figures} words and {screen.decimals_before_figures} decimal "
        "numbers shown before the first figure"
    )
    if screen.scaled_figures:
        print(f"figures shown scaled down: {', '.join(screen.scaled_figures)}")
    ok = screen.answer_visible and screen.verdicts_visible and not screen.scaled_figures
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
