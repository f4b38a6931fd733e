"""The one-page summary of a prediction batch, for a clinician: one self-contained HTML file.

The page opens with the counts ("37 of 100 with a guarantee; 63 outside the calibration range:
check by eye": the images the applicability check flags) and which models segmented how many
images by which rule ("No-skip U-Net segmented 97, U-Net 3; chosen as recommended there by the
recipe 97, ..."), then where the rating was measured to hold per kind of shift (when the study's
``shift_coverage.csv`` is given), then one table row per image: an overlay thumbnail (the mask's
contour on the image; for a volume the axial slice with the most predicted foreground), the
confidence rating in words ("Dice >= 0.82 with 90% confidence", or "no guarantee" with the
reason), the image checks, the FNR-controlled mask (promised only where the guarantee holds)
and the rule that chose the model ("speckle noise severity 5 regime: noise 0.21 within 0.18 to
0.35 -> No-skip U-Net, recommended there"), with display names. The
table sorts by any column (a few lines of script; the page works without it). Then the files
that failed, and the package versions.

The page stays light: thumbnails are small WebP images inlined as data URIs (about 4 KB each
where a PNG of a noisy image took 60 KB), shown small and enlarged under the pointer, so 100
images make well under 2 MB (measured by tests/test_predict_page.py). Numbers that are compared
with a bound are printed with the digits that tell them apart (`segrobust.digits`).
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
from segrobust.digits import apart
from segrobust.guarantees.kernel import UNDEFINED
from segrobust.predict.model_choice import CHOSEN_BY, ONLY_MODEL
from segrobust.report.html import STYLE, package_versions
from segrobust.report.names import display_name
from segrobust.report.readable import readable

#: Thumbnail edge in inches and resolution: 112 px, shown at `THUMBNAIL_SHOWN_PX` and at full
#: size under the pointer.
THUMBNAIL_INCHES = 1.4
THUMBNAIL_DPI = 80
THUMBNAIL_SHOWN_PX = 72
#: WebP quality (Pillow, 0-100) of the thumbnails: the contour and the anatomy stay clear.
THUMBNAIL_QUALITY = 70
THUMBNAIL_FORMAT = "webp"

EXTRA_STYLE = f"""
td,th{{vertical-align:top;text-align:left}}.ok{{color:#064;font-weight:600}}
.none{{color:#a40;font-weight:600}}td img{{width:{THUMBNAIL_SHOWN_PX}px;transition:width .1s}}
td img:hover{{width:{round(THUMBNAIL_INCHES * THUMBNAIL_DPI)}px}}
.counts{{font-size:1.25em;font-weight:600;margin:.4em 0 .8em}}
th[data-sort]{{cursor:pointer;white-space:nowrap}}
th[data-sort]::after{{content:" \\2195";color:#999}}
"""

#: Sorts the table by the clicked column (numbers by value, text alphabetically; again to
#: reverse). Cells carry their sort key in data-key; without script the page reads the same.
SORT_SCRIPT = """<script>
document.querySelectorAll("th[data-sort]").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], up = th.dataset.up !== "1";
  const key = r => r.cells[col].dataset.key ?? r.cells[col].textContent;
  const rows = [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    const d = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
    return up ? d : -d;
  });
  th.dataset.up = up ? "1" : "0"; rows.forEach(r => body.appendChild(r));
}));
</script>"""


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

    def thumbnail(self, image: np.ndarray, mask: np.ndarray, spacing: Sequence[float]) -> bytes:
        """A small image (`THUMBNAIL_FORMAT`) of the mask's contour (red) on the image (gray,
        1st-99th percentile window), in the canonical (RAS+) layout: first axis to the right,
        second upwards."""
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
        self.figure.savefig(
            buffer, format=THUMBNAIL_FORMAT, pil_kwargs={"quality": THUMBNAIL_QUALITY}
        )
        return buffer.getvalue()


def _cell(text: Any, key: Any = None) -> str:
    """A table cell; ``key`` is what the column sorts by (default: its text)."""
    attr = "" if key is None else f' data-key="{html.escape(str(key))}"'
    return f"<td{attr}>{html.escape(str(text))}</td>"


def _number(value: Any, digits: int = 3) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return "undefined" if not np.isfinite(value) else f"{value:.{digits}g}"


def has_bound(row: Mapping[str, Any]) -> bool:
    """Whether the calibration gives the image a Dice bound at all: enough calibration images
    (a bound the applicability check withholds still exists; ``bound_status`` says which)."""
    return not str(row.get("bound_status", "")).startswith(UNDEFINED)


def has_guarantee(row: Mapping[str, Any]) -> bool:
    """Whether the image gets the Dice bound: a finite bound, and the applicability check rates
    the image like the calibration images (``applicable``)."""
    bound = pd.to_numeric(row.get("dice_lower_bound"), errors="coerce")
    return bool(row.get("applicable")) and bool(np.isfinite(bound))


def rating_counts(predictions: pd.DataFrame, failures: pd.DataFrame) -> str:
    """The page's opening line: how many images have a guarantee, how many the applicability
    check flags as outside the calibration range (check them by eye), how many have no bound at
    all (too few calibration images), how many failed."""
    n = len(predictions)
    rows = predictions.to_dict("records")
    guaranteed = sum(has_guarantee(r) for r in rows)
    unbounded = sum(not has_bound(r) for r in rows)
    outside = n - guaranteed - unbounded
    parts = [
        f"{guaranteed} of {n} with a guarantee",
        f"{outside} outside the calibration range: check by eye",
    ]
    if unbounded:
        parts.append(f"{unbounded} without a bound (too few calibration images): check by eye")
    if len(failures):
        parts.append(f"{len(failures)} file{'s' if len(failures) != 1 else ''} not segmented")
    return "; ".join(parts)


#: How each way of choosing a model (``predictions.csv``'s ``chosen_by``) reads in the counts.
CHOSEN_BY_WORDS = dict(
    zip(
        CHOSEN_BY,
        (
            "the only model given",
            "recommended there by the recipe",
            "the best calibrated of an equivalent set",
            "the leader of an inconclusive regime (not a recommendation)",
            "the best calibrated model (no usable regime)",
        ),
        strict=True,
    )
)


def model_use(predictions: pd.DataFrame) -> str:
    """Which architecture segmented how many images, and by which rule it was chosen."""
    if predictions.empty:
        return ""
    archs = predictions["arch"].map(display_name).value_counts()
    used = ", ".join(
        f"{name} {n}" if i else f"{name} segmented {n}" for i, (name, n) in enumerate(archs.items())
    )
    rules = predictions["chosen_by"].value_counts()
    how = ", ".join(f"{CHOSEN_BY_WORDS.get(rule, rule)} {n}" for rule, n in rules.items())
    return f"{used}; chosen as {how}"


def fnr_sentence(row: Mapping[str, Any]) -> str:
    """The FNR-controlled mask in words; no promise where the image has no guarantee (the
    control, like the bound, holds only for images like the calibration images)."""
    if not bool(row["applicable"]):
        return "no promise: the image is outside the calibration range"
    if not str(row["fnr_status"]).startswith("controlled"):
        return str(row["fnr_status"])
    return (
        f"threshold {float(row['fnr_threshold']):.2f}: misses on average at most "
        f"{float(row['fnr_level']) * 100:.10g}% of the object"
    )


def applicability_text(row: Mapping[str, Any]) -> str:
    """The applicability p-value beside the flag level it was compared with (printed with the
    digits that tell them apart, ``segrobust.digits``)."""
    p, level = (
        pd.to_numeric(row.get(k), errors="coerce") for k in ("applicability_p", "flag_level")
    )
    if not (np.isfinite(p) and np.isfinite(level)):
        return f"applicability p {_number(p)} (flagged at <= {_number(level)})"
    shown_p, shown_level = apart(float(p), float(level))
    return f"applicability p {shown_p} (flagged at <= {shown_level})"


def choice_text(row: Mapping[str, Any]) -> str:
    """Which rule chose the model, and with one model given what the recipe says of the image
    (display names)."""
    text = readable(row["model_choice"])
    if row["chosen_by"] != ONLY_MODEL or not _given(row["recipe_decision"]):
        return text
    advice = f"{row['recipe_decision']} there"
    if _given(row["recommended_arch"]):
        advice = f"{display_name(row['recommended_arch'])} recommended there"
    return readable(f"{text}; the recipe: {row['regime']} regime ({row['recipe_note']}), {advice}")


def _given(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def image_row(row: Mapping[str, Any], thumbnail: bytes) -> str:
    """One table row of the summary (each cell with its sort key)."""
    data = base64.b64encode(thumbnail).decode("ascii")
    guarantee = str(row["guarantee"])
    guaranteed = has_guarantee(row)
    bound = float(row["dice_lower_bound"]) if guaranteed else -1.0
    checks = (
        f"complexity {_number(row['complexity'])} bits; noise {_number(row['noise_sigma'])}; "
        f"predicted foreground {_number(row['predicted_fg_ratio'])}; {applicability_text(row)}"
    )
    chosen_by = choice_text(row)
    image = html.escape(str(row["image"]))
    model = f"{display_name(row['arch'])} ({row['model']})"
    return (
        "<tr>"
        f'<td><img alt="{image}" src="data:image/{THUMBNAIL_FORMAT};base64,{data}"></td>'
        f'<td data-key="{image}"><b>{image}</b><br>{html.escape(model)}</td>'
        f'<td class="{"ok" if guaranteed else "none"}" data-key="{bound:.6f}">'
        f"{html.escape(guarantee)}</td>"
        + _cell(checks, _number(row["complexity"], 17))
        + _cell(fnr_sentence(row))
        + _cell(chosen_by)
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
        "taken together: outside the calibration range), or the model had too few calibration "
        "images: check the mask by eye. For an image with a guarantee, the FNR-controlled mask "
        f"(the probabilities at the stated threshold) misses on average at most {f} of the "
        "object; an image without one gets no such promise. The last column says which "
        "rule chose the model: the study's regime the image falls in (what it was measured on) "
        "and the architecture recommended there (where the study could not decide: the "
        "architecture with the highest mean Dice there, which is no recommendation), or why "
        "the best calibrated model was used."
        "</p>"
    )


def limits_block(limits: Sequence[str]) -> str:
    """Where the rating was measured to hold, per kind of shift (or that it was not measured)."""
    if not limits:
        return (
            "<p><b>Where this rating holds.</b> Not stated: no per-shift coverage table was "
            "given (results/analysis/shift_coverage.csv of the study's run).</p>"
        )
    items = "".join(f"<li>{html.escape(readable(line))}</li>" for line in limits)
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
        "<thead><tr><th>overlay</th><th data-sort>image / model</th><th data-sort>confidence</th>"
        "<th data-sort>image checks</th><th data-sort>FNR-controlled mask</th>"
        "<th data-sort>model chosen by</th></tr></thead>"
    )
    body = "".join(image_row(r, thumbnails[r["image"]]) for r in predictions.to_dict("records"))
    versions = "".join(f"<tr>{_cell(k)}{_cell(v)}</tr>" for k, v in package_versions().items())
    n_files = len(predictions) + len(failures)
    parts = [
        f"<h1>Segmentation of {len(predictions)} of {n_files} files</h1>",
        f"<p class='counts'>{html.escape(rating_counts(predictions, failures))}.</p>",
        f"<p>{html.escape(model_use(predictions))}.</p>",
        f"<p>Images: {html.escape(str(Path(images_dir)))}. Generated "
        f"{time.strftime('%Y-%m-%d %H:%M')}. Model(s): {html.escape(', '.join(models))}.</p>",
        explanation(settings.confidence, settings.fnr_level),
        limits_block(limits),
        f"<table>{header}<tbody>{body}</tbody></table>",
        f"<h2>Files not segmented ({len(failures)})</h2>",
        failures_table(failures),
        "<h2>Package versions</h2>",
        f"<table>{versions}</table>",
        SORT_SCRIPT,
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>segrobust "
        f"predictions</title><style>{STYLE}{EXTRA_STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    atomic.write_text(path, page)
