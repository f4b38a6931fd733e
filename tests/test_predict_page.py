"""The predict summary page: the counts first, light enough for 100 images, sortable, and
numbers printed with the digits that show where they stand against a bound."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from segrobust.digits import apart
from segrobust.predict.batch import FAILURE_COLUMNS, PREDICTION_COLUMNS
from segrobust.predict.summary import (
    ThumbnailCanvas,
    applicability_text,
    fnr_sentence,
    model_use,
    rating_counts,
    write_summary,
)

SETTINGS = SimpleNamespace(confidence=0.9, fnr_level=0.1)
#: The issue's budget for a page of 100 images.
BUDGET_BYTES = 2 * 10**6


def _row(i: int, kind: str) -> dict:
    """A predictions.csv row: ``kind`` is guaranteed, outside (flagged by the applicability
    check) or unbounded (too few calibration images: the check then flags every image too)."""
    row = dict.fromkeys(PREDICTION_COLUMNS, "")
    applicable = kind == "guaranteed"
    bound = 0.71 + i / 1000 if kind != "unbounded" else math.nan
    level = 1.0 if kind == "unbounded" else 1 / 101
    p = 0.5 if applicable else 0.00990099  # just below 1/101 = 0.00990099009...
    reason = (
        ""
        if applicable
        else f"unlike the calibration images (features jointly: p = {p} <= flag level {level})"
    )
    row.update(
        image=f"img{i:03d}", file=f"img{i:03d}.nii.gz", model="perturbation/demo/unet/pfull/seed1",
        arch="unet", complexity=1.2 + i / 100, noise_sigma=0.05, predicted_fg_ratio=0.12,
        quality=0.8, confidence=0.9, dice_lower_bound=bound, applicable=applicable,
        applicability_p=p, flag_level=level, applicability_reason=reason,
        guarantee=(
            f"Dice >= {math.floor(bound * 100) / 100:.2f} with 90% confidence"
            if kind == "guaranteed"
            else {
                "outside": f"no guarantee: {reason}",
                "unbounded": "no guarantee: the model was calibrated on 4 images; 9 are needed",
            }[kind]
        ),
        fnr_level=0.1, fnr_threshold=0.31 if applicable else math.nan,
        fnr_status="controlled" if applicable else f"no promise: {reason}",
        bound_status="defined" if kind != "unbounded" else "undefined",
        chosen_by="recipe: recommended" if i % 10 else "fallback: best calibrated",
        model_choice="speckle severity 5 regime: noise 0.21 within 0.18 to 0.35 -> No-skip U-Net, "
                     "recommended there" if i % 10 else "no regime -> U-Net, the best calibrated",
    )  # fmt: skip
    return row


@pytest.fixture(scope="module")
def batch():
    """100 images as a speckle severity 5 batch gives them: 256 x 256 noisy images with a mask
    (the worst case for compression), 37 guaranteed, 60 outside, 3 without a bound."""
    rng = np.random.default_rng(0)
    kinds = ["guaranteed"] * 37 + ["outside"] * 60 + ["unbounded"] * 3
    rows = [_row(i, kind) for i, kind in enumerate(kinds)]
    canvas = ThumbnailCanvas()
    thumbnails = {}
    yy, xx = np.mgrid[:256, :256]
    for row in rows:
        mask = (xx - 128) ** 2 + (yy - 120) ** 2 < rng.integers(30, 60) ** 2
        image = (0.3 + 0.5 * mask) * (1 + rng.normal(0, 0.7, mask.shape))  # strong speckle
        thumbnails[row["image"]] = canvas.thumbnail(image, mask, (1.0, 1.0))
    predictions = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    failures = pd.DataFrame(
        [("bad", "bad.nii", "bad.nii: not a NIfTI file"), ("x", "x.txt", "x.txt: not a NIfTI")],
        columns=list(FAILURE_COLUMNS),
    )
    return predictions, failures, thumbnails


def test_a_page_of_100_images_opens_with_the_counts_and_stays_under_2_mb(batch, tmp_path):
    predictions, failures, thumbnails = batch
    page = tmp_path / "summary.html"
    write_summary(page, predictions, failures, thumbnails, models=["m"], settings=SETTINGS,
                  images_dir=tmp_path)  # fmt: skip
    size = page.stat().st_size
    assert size <= BUDGET_BYTES, f"{size / 1e6:.2f} MB for 100 images"
    text = page.read_text()
    counts = re.search(r"<p class='counts'>(.*?)</p>", text).group(1)
    assert counts == (
        "37 of 100 with a guarantee; 60 outside the calibration range: check by eye; 3 without a "
        "bound (too few calibration images): check by eye; 2 files not segmented."
    )
    assert text.index("class='counts'") < text.index("<table>")  # the counts come first
    assert text.count("data:image/webp;base64,") == 100
    assert text.count("<th data-sort>") == 5 and "addEventListener" in text  # sortable
    # the confidence column sorts by the bound; no guarantee sorts below every bound
    assert 'data-key="0.710000"' in text and text.count('data-key="-1.000000"') == 63


def test_the_page_says_which_model_segmented_how_many_and_by_which_rule(batch, tmp_path):
    predictions, failures, thumbnails = batch
    predictions = predictions.assign(
        arch=["noskip_unet" if i % 10 else "unet" for i in range(len(predictions))]
    )
    assert model_use(predictions) == (
        "No-skip U-Net segmented 90, U-Net 10; chosen as recommended there by the recipe 90, "
        "the best calibrated model (no usable regime) 10"
    )
    page = tmp_path / "summary.html"
    write_summary(page, predictions, failures, thumbnails, models=["m"], settings=SETTINGS,
                  images_dir=tmp_path)  # fmt: skip
    text = page.read_text()
    assert "No-skip U-Net segmented 90" in text and text.count("speckle noise severity 5") == 90
    assert "noskip_unet" not in text.replace("/noskip_unet/", "")  # display names


def test_counts_and_fnr_promise_follow_the_guarantee(batch):
    predictions, failures, _ = batch
    assert rating_counts(predictions.head(37), failures.head(0)) == (
        "37 of 37 with a guarantee; 0 outside the calibration range: check by eye"
    )
    rows = predictions.to_dict("records")
    assert fnr_sentence(rows[0]).startswith("threshold 0.31: misses on average at most 10%")
    assert fnr_sentence(rows[40]) == "no promise: the image is outside the calibration range"


def test_a_value_beside_its_bound_prints_with_the_digits_that_show_it():
    assert apart(0.09709, 0.09712, 0.503) == ["0.09709", "0.09712", "0.503"]
    assert apart(2.5, 0.0, 1.1) == ["2.5", "0", "1.1"]  # 3 digits when they suffice
    assert apart(0.3, 0.3, 0.4) == ["0.3", "0.3", "0.4"]  # equal values stay equal
    shown, low = apart(0.1 + 0.2, 0.3)
    assert shown != low and float(shown) == 0.1 + 0.2  # down to the last float digit


def test_the_applicability_p_value_prints_with_the_digits_that_show_it_against_the_level(batch):
    """Compared unrounded; at 3 digits 0.00990099 and 1/101 both read 0.0099."""
    predictions, _, _ = batch
    rows = predictions.to_dict("records")
    assert applicability_text(rows[0]) == "applicability p 0.5 (flagged at <= 0.0099)"
    shown_p, shown_level = apart(0.00990099, 1 / 101)
    assert (shown_p, shown_level) == ("0.00990099", "0.0099009901")
    assert applicability_text(rows[40]) == (
        "applicability p 0.00990099 (flagged at <= 0.0099009901)"
    )
    assert applicability_text(dict(applicability_p=math.nan, flag_level=0.05)) == (
        "applicability p undefined (flagged at <= 0.05)"
    )
