"""The one-page summary of a prediction batch, for a clinician: one self-contained HTML file.

Per image an overlay thumbnail (the mask's contour on the image; for a volume the axial slice
with the most predicted foreground) and the confidence rating in words: "Dice >= 0.82 with 90%
confidence", or "no guarantee" with the reason. Then the files that failed, and the settings
and package versions. Thumbnails are PNGs inlined as data URIs, like the study report
(``segrobust.report.html``, whose style and version list are reused).
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from segrobust import atomic
from segrobust.report.html import STYLE, package_versions

#: Thumbnail edge in inches and resolution.
THUMBNAIL_INCHES = 2.2
THUMBNAIL_DPI = 80

EXTRA_STYLE = """
td,th{vertical-align:top;text-align:left}.ok{color:#064;font-weight:600}
.none{color:#a40;font-weight:600}td img{width:176px}
"""


def display_slice(
    image: np.ndarray, mask: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, float]:
    """The 2D view of a (canonical) image: itself, or for a volume the axial slice (last axis)
    with the most mask voxels (the middle one if the mask is empty); and its pixel aspect."""
    if image.ndim == 3:
        area = mask.reshape(-1, mask.shape[-1]).sum(axis=0)
        k = int(np.argmax(area)) if area.any() else image.shape[-1] // 2
        image, mask = image[..., k], mask[..., k]
    return image, mask, float(spacing[1]) / float(spacing[0])


class ThumbnailCanvas:
    """Draws overlay thumbnails on one reused matplotlib figure (a new figure and axes per
    image cost more than the drawing itself)."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(THUMBNAIL_INCHES, THUMBNAIL_INCHES), dpi=THUMBNAIL_DPI)
        self.axes = self.figure.add_axes((0, 0, 1, 1))
        self.axes.set_axis_off()

    def png(self, image: np.ndarray, mask: np.ndarray, spacing: Sequence[float]) -> bytes:
        """PNG of the mask's contour (red) on the image (gray, 1st-99th percentile window),
        in the canonical (RAS+) layout: first axis to the right, second upwards."""
        view, outline, aspect = display_slice(image, mask, spacing)
        low, high = np.percentile(view, [1, 99])
        for artist in [*self.axes.images, *self.axes.collections]:
            artist.remove()
        self.axes.imshow(
            view.T, cmap="gray", origin="lower", aspect=aspect, vmin=low, vmax=max(high, low + 1e-6)
        )
        if outline.any() and not outline.all():
            self.axes.contour(outline.T.astype(float), levels=[0.5], colors="red", linewidths=1.2)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png")
        return buffer.getvalue()


def _cell(text: Any) -> str:
    return f"<td>{html.escape(str(text))}</td>"


def _number(value: Any, digits: int = 3) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return "undefined" if not np.isfinite(value) else f"{value:.{digits}g}"


def fnr_sentence(row: Mapping[str, Any]) -> str:
    """The FNR-controlled mask in words."""
    if not str(row["fnr_status"]).startswith("controlled"):
        return str(row["fnr_status"])
    return (
        f"threshold {float(row['fnr_threshold']):.2f}: misses on average at most "
        f"{float(row['fnr_level']) * 100:.10g}% of the object"
    )


def image_row(row: Mapping[str, Any], thumbnail: bytes) -> str:
    """One table row of the summary."""
    data = base64.b64encode(thumbnail).decode("ascii")
    guarantee = str(row["guarantee"])
    css = "none" if guarantee.startswith("no guarantee") else "ok"
    checks = (
        f"complexity {_number(row['complexity'])} bits; noise {_number(row['noise_sigma'])}; "
        f"predicted foreground {_number(row['predicted_fg_ratio'])}; applicability p "
        f"{_number(row['applicability_p'])} (flagged at <= {_number(row['flag_level'])})"
    )
    recipe = row["recipe_note"] or "no recipe regime"
    if row["recommended_arch"]:
        recipe = f"use {row['recommended_arch']} ({row['regime']})"
    return (
        "<tr>"
        f'<td><img alt="{html.escape(str(row["image"]))}" src="data:image/png;base64,{data}"></td>'
        f"<td><b>{html.escape(str(row['image']))}</b><br>{html.escape(str(row['model']))}</td>"
        f'<td class="{css}">{html.escape(guarantee)}</td>'
        + _cell(checks)
        + _cell(fnr_sentence(row))
        + _cell(recipe)
        + "</tr>"
    )


def explanation(confidence: float, fnr_level: float) -> str:
    """How to read the ratings, in plain words."""
    c, f = f"{confidence * 100:.10g}%", f"{fnr_level * 100:.10g}%"
    return (
        f'<p><b>How to read this.</b> "Dice &gt;= 0.82 with {c} confidence" means: among '
        f"images like those the model was calibrated on, at least {c} have an overlap (Dice) "
        "with an expert's contour at or above their stated bound. It describes images like "
        'this one on average; it is not a certainty about one image. "No guarantee" means '
        "the image is unlike the images the model was calibrated on (its complexity, predicted "
        "foreground, noise level, the model's own confidence and the model's internal features "
        "taken together), or the model had too few calibration images: check the mask by eye; "
        "such an image gets no FNR promise either. The FNR-controlled mask (the probabilities "
        f"at the stated threshold) misses on average at most {f} of the object. The recipe "
        "column names the "
        "architecture the study recommends for images of this complexity, where it recommends "
        "one.</p>"
    )


def limits_block(limits: Sequence[str]) -> str:
    """Where the rating was measured to hold, per kind of shift (or that it was not measured)."""
    if not limits:
        return (
            "<p><b>Where this rating holds.</b> Not stated: no per-shift coverage table was "
            "given (results/analysis/shift_coverage.csv of the study's run).</p>"
        )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in limits)
    return (
        "<p><b>Where this rating holds.</b> Measured on held-out labelled images of each kind "
        "of shift, for the architecture(s) used here:</p>"
        f"<ul>{items}</ul>"
    )


def failures_table(failures: pd.DataFrame) -> str:
    """The failed files and why."""
    if failures.empty:
        return "<p>Every file was segmented.</p>"
    rows = "".join(f"<tr>{_cell(r.file)}{_cell(r.error)}</tr>" for r in failures.itertuples())
    return f"<table><tr><th>file</th><th>why it failed</th></tr>{rows}</table>"


def write_summary(
    path: str | os.PathLike,
    predictions: pd.DataFrame,
    failures: pd.DataFrame,
    thumbnails: Mapping[str, bytes],
    *,
    models: Sequence[str],
    settings: Any,
    images_dir: str | os.PathLike,
    limits: Sequence[str] = (),
) -> None:
    """Write the summary page atomically; ``limits`` are the sentences saying where the rating
    was measured to hold (``segrobust.analysis.shift_coverage.rating_limits``)."""
    header = (
        "<tr><th>overlay</th><th>image / model</th><th>confidence</th><th>image checks</th>"
        "<th>FNR-controlled mask</th><th>recipe</th></tr>"
    )
    body = "".join(image_row(r, thumbnails[r["image"]]) for r in predictions.to_dict("records"))
    versions = "".join(f"<tr>{_cell(k)}{_cell(v)}</tr>" for k, v in package_versions().items())
    n_files = len(predictions) + len(failures)
    parts = [
        f"<h1>Segmentation of {len(predictions)} of {n_files} files</h1>",
        f"<p>Images: {html.escape(str(Path(images_dir)))}. Generated "
        f"{time.strftime('%Y-%m-%d %H:%M')}. Model(s): {html.escape(', '.join(models))}.</p>",
        explanation(settings.confidence, settings.fnr_level),
        limits_block(limits),
        f"<table>{header}{body}</table>",
        f"<h2>Files not segmented ({len(failures)})</h2>",
        failures_table(failures),
        "<h2>Package versions</h2>",
        f"<table>{versions}</table>",
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>segrobust "
        f"predictions</title><style>{STYLE}{EXTRA_STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    atomic.write_text(path, page)
