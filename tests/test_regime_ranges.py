"""The recipe's regimes as a new image is mapped to them (regime_ranges.csv): the complexity
bins' edges, what each perturbation regime's test images measure per training dataset, the
context study's training foreground-ratio sides; the mapping itself is tested in
test_predict_recipe.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis.regime_ranges import REGIME_RANGE_COLUMNS, regime_ranges
from segrobust.analysis.regimes import (
    all_regimes,
    parse_perturbation_label,
    perturbation_label,
    perturbation_regimes,
)
from segrobust.contract import PER_IMAGE_COLUMNS


def _per_image(rows: list[dict]) -> pd.DataFrame:
    base = dict(split="test", seed=1, patch="full", group="", dice=0.8, level="")
    return pd.DataFrame([{**base, **r} for r in rows]).reindex(columns=list(PER_IMAGE_COLUMNS))


def test_perturbation_regimes_record_each_images_statistics_once_per_dataset():
    rows = [
        dict(
            study="perturbation",
            dataset=dataset,
            test_dataset=dataset,
            arch=arch,
            seed=seed,
            condition="speckle-s2",
            perturbation="speckle",
            severity=2,
            image_id=f"i{i}",
            noise_sigma=0.1 + 0.01 * i + (dataset == "b"),
            noise_brightness_ratio=1.5,
            complexity=0.02 * i,
        )  # not a perturbation statistic: no row
        for dataset in ("a", "b")
        for arch in ("unet", "noskip_unet")
        for seed in (1, 2)
        for i in range(5)
    ]
    table = regime_ranges(perturbation_regimes(_per_image(rows)))
    assert list(table.columns) == REGIME_RANGE_COLUMNS
    noise = table[(table.statistic == "noise_sigma") & (table.dataset == "a")].iloc[0]
    assert (noise.rule, noise.n_images) == ("observed", 5)  # images, not rows of every run
    assert (noise.low, noise.high) == pytest.approx((0.1, 0.14))
    assert noise["mean"] == pytest.approx(0.12)
    assert noise.sd == pytest.approx(np.std([0.1, 0.11, 0.12, 0.13, 0.14], ddof=1))
    assert set(table.statistic) == {"noise_sigma", "noise_brightness_ratio"}
    b_noise = table[(table.statistic == "noise_sigma") & (table.dataset == "b")].iloc[0]
    assert (b_noise.low, b_noise.high) == pytest.approx((1.1, 1.14))  # its own images


def test_complexity_bins_and_context_sides_and_no_row_for_shifts():
    texture = [
        dict(
            study="texture",
            dataset=f"tex-{a}",
            test_dataset=f"tex-{b}",
            condition=f"tex-{b}",
            arch=arch,
            direction="background",
            train_alpha=a,
            test_alpha=b,
            image_id=f"i{i}",
            complexity=0.1 * i,
        )
        for a in (0.2, 0.8)
        for b in (0.2, 0.8)
        for arch in ("unet", "noskip_unet")
        for i in range(9)
    ]
    context = [
        dict(
            study="context",
            dataset="spheres",
            test_dataset="spheres",
            condition="clean",
            arch="unet",
            patch="16",
            image_id=f"v{i}",
            fg_ratio=0.02 * i + 0.001,
        )
        for i in range(10)
    ]
    fbr = pd.DataFrame(
        [dict(study="context", dataset="spheres", patch="16", fbr_low=0.05, fbr_high=0.12)]
    )
    regimes = all_regimes(_per_image(texture + context), fbr, n_bins=3)
    table = regime_ranges(regimes)
    bins = table[table.rule == "bin"].sort_values("low")
    assert list(bins.regime) == [r.label for r in regimes if r.kind == "complexity"]
    assert bins["low"].tolist() == pytest.approx([r.low for r in regimes if r.kind == "complexity"])
    sides = table[table.regime_kind == "context"].set_index("rule")
    assert set(sides.index) == {"inside", "outside"}
    assert (sides.loc["inside", "low"], sides.loc["inside", "high"]) == (0.05, 0.12)
    assert sides.loc["inside", "n_images"] == 3  # fg ratios 0.061, 0.081, 0.101
    assert (sides.loc["inside", "dataset"], sides.loc["inside", "patch"]) == ("spheres", "16")
    assert not (table.regime_kind == "shift").any()


def test_a_perturbation_label_reads_back_as_its_perturbation_and_severity():
    for perturbation, severity, level in (("speckle", 3, "Harder"), ("background_blur", 1, "")):
        label = perturbation_label(perturbation, severity, level)
        assert parse_perturbation_label(label) == (perturbation, severity)
    assert parse_perturbation_label(perturbation_label("none", 0, "Unperturbed")) is None
    assert parse_perturbation_label("complexity 0.1-0.2 bits") is None
