"""The self-contained HTML report: figures inlined as data URIs, tables, the config, versions.

One file a researcher can mail or archive: no external references, except links to the CSV
copies of the tables written beside it. Snakemake's own ``--report`` packs the same figures with
their captions; this page leads with the answer and adds the tables and the provenance.

The page is assembled from small HTML fragments (`paragraph`, `bullets`, `figure`, `table`,
`collapsed_table`) placed in `Section`s; text is always escaped.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from segrobust import atomic
from segrobust.report.display import CSS_PX_PER_INCH, DPI, PAGE_MAX_WIDTH_PX, PAGE_PADDING_PX

VERSIONED_PACKAGES = (
    "segrobust", "torch", "monai", "snakemake", "numpy", "scipy", "statsmodels", "pandas",
    "seaborn", "matplotlib", "nibabel", "SimpleITK", "scikit-image",
)  # fmt: skip

#: Rows of a table shown in the page; the CSV beside the report has them all.
MAX_ROWS = 200

STYLE = (
    (
        f"body{{font-family:system-ui,sans-serif;max-width:{PAGE_MAX_WIDTH_PX}px;margin:1.5em auto;"
        f"padding:0 {PAGE_PADDING_PX}px;color:#222}}"
    )
    + """
h1{border-bottom:2px solid #333;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #aaa}
.meta{color:#555;font-size:.9em}nav{font-size:.9em;margin:.5em 0 1em}nav a{margin-right:1em}
#answer{background:#f4f8fc;border:1px solid #c9d9ea;padding:.2em 1.2em 1em;border-radius:6px}
#answer h2{margin-top:.6em}li{margin:.25em 0}.yes{color:#1a7f37;font-weight:600}
.no{color:#b42318;font-weight:600}.inconclusive{color:#8a6d00}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto}
figcaption{font-size:.9em;color:#444}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}
td:first-child,th:first-child{text-align:left}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.85em}
details{margin:.4em 0}summary{cursor:pointer}.tablewrap{max-height:420px;overflow:auto}
.verdicts{margin:.4em 0 .2em}.verdict{margin:.3em 0}
.verdict ul{margin:.1em 0 .2em;padding-left:1.4em}.verdict li{margin:0}
td.win{background:#d7f0dd;font-weight:600}td.eq{background:#eef6e9}tr.undecided td{color:#666}
table.regimes td:last-child{text-align:left}
"""
)


@dataclass
class Section:
    """One part of the report: a heading (with an anchor ``id``) and its HTML fragments."""

    title: str
    id: str
    blocks: Sequence[str] = field(default_factory=list)


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def heading(text: str, level: int = 3) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def bullets(items: Iterable[str]) -> str:
    """A list of escaped items (plain text)."""
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def png_size(data: bytes, what: str | os.PathLike = "image") -> tuple[int, int]:
    """(width, height) in pixels of a PNG, from its header; an error naming ``what`` when the
    bytes are not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{what}: not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def figure(path: str | os.PathLike, caption: str, dpi: int = DPI) -> str:
    """A PNG inlined as a data URI, with its caption; a missing file is an error naming it.

    The image is shown at its physical size (a figure drawn at ``dpi`` shows one inch as
    `CSS_PX_PER_INCH` px, `segrobust.report.display`), so its fonts read as the figure code set
    them; only a figure wider than the page is scaled down (max-width).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report figure not found: {path}")
    raw = path.read_bytes()
    width, height = (round(n * CSS_PX_PER_INCH / dpi) for n in png_size(raw, path))
    data = base64.b64encode(raw).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(path.stem)}" width="{width}" height="{height}" '
        f'src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table(frame: pd.DataFrame, *, classes: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """A table (first `MAX_ROWS` rows), numbers to 4 significant digits, empty cells blank.

    ``classes`` maps a column to {cell value: CSS class} (e.g. reproduced yes / no).
    """
    if frame.empty:
        return "<p><em>(empty: the studies run do not provide this table)</em></p>"
    shown = frame.head(MAX_ROWS)
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for record in shown.itertuples(index=False):
        cells = []
        for column, value in zip(shown.columns, record, strict=True):
            css = (classes or {}).get(column, {}).get(str(value))
            attr = f' class="{css}"' if css else ""
            cells.append(f"<td{attr}>{html.escape(_cell(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f"<p><em>First {MAX_ROWS} of {len(frame)} rows; the CSV has them all.</em></p>"
        if len(frame) > MAX_ROWS
        else ""
    )
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>{more}"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def collapsed_table(frame: pd.DataFrame, caption: str, link: str) -> str:
    """A table folded under its caption, with a link to its CSV copy beside the report."""
    return (
        f"<details><summary>{html.escape(caption)} ({len(frame)} rows, "
        f'<a href="{html.escape(link)}">{html.escape(link)}</a>)</summary>'
        f"<div class='tablewrap'>{table(frame)}</div></details>"
    )


def notes(markdown: str) -> str:
    """The analysis notes (``notes.md``: ``#``/``##`` headings and ``-`` items, as
    ``segrobust.analysis.run`` writes them) as HTML headings and lists."""
    parts: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if items:
            parts.append(bullets(items))
            items.clear()

    for line in markdown.splitlines():
        text = line.strip()
        if text.startswith("- "):
            items.append(text[2:])
        elif text.startswith("#"):
            flush()
            if text.lstrip("#").strip() and not text.startswith("# "):
                parts.append(heading(text.lstrip("#").strip(), 4))
        elif text:
            flush()
            parts.append(paragraph(text))
    flush()
    return "".join(parts)


def build_html_report(
    out_path: str | os.PathLike,
    *,
    title: str,
    meta: Sequence[str],
    sections: Sequence[Section],
    config: Mapping[str, Any],
    versions: Mapping[str, str],
) -> None:
    """Write the report to ``out_path`` atomically: the title, ``meta`` lines (run provenance), a
    table of contents, the sections, then the configuration and the package versions.

    A missing figure is an error (nothing is written).
    """
    appendix = [
        Section("Configuration used", "config", [
            f"<pre>{html.escape(yaml.safe_dump(dict(config), sort_keys=False))}</pre>"
        ]),
        Section("Package versions", "versions", [
            table(pd.DataFrame(versions.items(), columns=["package", "version"]))
        ]),
    ]  # fmt: skip
    everything = [*sections, *appendix]
    contents = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in everything)
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        *(f"<p class='meta'>{html.escape(line)}</p>" for line in meta),
        f"<nav>{contents}</nav>",
    ]
    for section in everything:
        parts.append(f'<section id="{section.id}"><h2>{html.escape(section.title)}</h2>')
        parts += list(section.blocks)
        parts.append("</section>")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + f"<p class='meta'>Written {time.strftime('%Y-%m-%d %H:%M')}.</p></body></html>\n"
    )
    atomic.write_text(out_path, page)
