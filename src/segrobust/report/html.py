"""The self-contained HTML report: figures inlined as data URIs, tables, the config, versions.

One file a researcher can mail or archive: no external references. Snakemake's own
``--report`` packs the same figures with their captions; this page adds the tables, the analysis
text and the provenance (config and package versions) next to them.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from segrobust import atomic

VERSIONED_PACKAGES = (
    "segrobust", "torch", "monai", "snakemake", "numpy", "scipy", "pandas", "seaborn",
    "matplotlib", "nibabel", "SimpleITK", "scikit-image",
)  # fmt: skip

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #333}h2{margin-top:2em;border-bottom:1px solid #aaa}
figure{margin:1.5em 0}figure img{max-width:100%}figcaption{font-size:.9em;color:#444}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.85em}
.tablewrap{max-height:420px;overflow:auto}
"""


@dataclass
class Section:
    """One part of the report: prose paragraphs, figures (path, caption), tables (table or CSV
    path, caption)."""

    title: str
    text: Sequence[str] = ()
    figures: Sequence[tuple[str | os.PathLike, str]] = ()
    tables: Sequence[tuple[pd.DataFrame | str | os.PathLike, str]] = field(default_factory=list)


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _figure(path: str | os.PathLike, caption: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report figure not found: {path}")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(table: pd.DataFrame | str | os.PathLike, caption: str) -> str:
    if not isinstance(table, pd.DataFrame):
        if not Path(table).is_file():
            raise FileNotFoundError(f"report table not found: {table}")
        table = pd.read_csv(table)
    body = (
        "<p><em>(empty: the studies run do not provide this table)</em></p>"
        if table.empty
        else table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
    )
    return f"<h3>{html.escape(caption)}</h3><div class='tablewrap'>{body}</div>"


def _text(paragraph: str) -> str:
    """A paragraph, or a Markdown-style list / heading block kept as lines."""
    lines = [html.escape(line) for line in paragraph.strip().splitlines()]
    return "<p>" + "<br>".join(lines) + "</p>"


def build_html_report(
    out_path: str | os.PathLike,
    *,
    title: str,
    sections: Sequence[Section],
    config: Mapping[str, Any],
    versions: Mapping[str, str],
) -> None:
    """Write the report to ``out_path`` atomically; a missing figure or table is an error."""
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M')}.</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [_text(p) for p in section.text]
        parts += [_figure(p, c) for p, c in section.figures]
        parts += [_table(t, c) for t, c in section.tables]
    parts.append("<h2>Configuration used</h2>")
    parts.append(f"<pre>{html.escape(yaml.safe_dump(dict(config), sort_keys=False))}</pre>")
    parts.append("<h2>Package versions</h2>")
    parts.append(_table(pd.DataFrame(versions.items(), columns=["package", "version"]), ""))
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    atomic.write_text(out_path, page)
