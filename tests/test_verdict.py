"""The answer at a glance: each study's verdict lines, computed from the analysis tables, and
the display names of every text a person reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis.recipe import RECIPE_COLUMNS
from segrobust.analysis.replicates import ONE_RUN
from segrobust.report.readable import readable
from segrobust.report.regime_table import decision_text
from segrobust.report.verdict import (
    MAX_LINES,
    bounds_line,
    claims_line,
    context_line,
    study_verdict,
    where_line,
)


def _recipe(rows: list[dict]) -> pd.DataFrame:
    """recipe.csv rows: each dict gives study, regime (and kind), decision and what it needs."""
    base = dict(
        regime_kind="perturbation",
        leader="unet",
        mean_dice=0.8,
        min_effect=0.01,
        n_runs=3,
        n_units=100,
        effect=0.05,
        ci_low=0.02,
        ci_high=0.08,
        reason="",
    )
    return pd.DataFrame([{**base, **row} for row in rows]).reindex(columns=RECIPE_COLUMNS)


def _texture_regimes() -> pd.DataFrame:
    """15 texture regimes: UNet++ recommended in 11, U-Net in 2, one equivalent set, one
    inconclusive regime."""
    rows = [
        dict(regime=f"shift {i}", decision="recommended", recommended="unetpp") for i in range(11)
    ]
    rows += [
        dict(
            regime=f"complexity {i}-{i + 1} bits",
            regime_kind="complexity",
            decision="recommended",
            recommended="unet",
        )
        for i in range(2)
    ]
    rows += [
        dict(regime="shift eq", decision="equivalent", equivalent="unet, vnet"),
        dict(regime="shift x", decision="inconclusive", reason="the runs disagree: ..."),
    ]
    return _recipe([dict(row, study="texture") for row in rows])


def test_the_claims_line_counts_the_wins_per_architecture():
    assert claims_line("texture", _texture_regimes()) == (
        "UNet++ wins 11 of 15 texture regimes, U-Net 2; 1 equivalent, 1 inconclusive"
    )


def test_one_run_per_architecture_says_there_is_no_claim_and_the_key_to_set():
    rows = _recipe(
        [
            dict(study="texture", regime=f"r{i}", decision="inconclusive", reason=ONE_RUN, n_runs=1)
            for i in range(4)
        ]
    )
    assert claims_line("texture", rows) == (
        "no architecture claim: 1 training run per architecture (set seeds: [1, 2, 3])"
    )


def test_one_architecture_only_and_no_regime():
    rows = _recipe([dict(study="perturbation", regime="clean", decision="only one architecture")])
    assert claims_line("perturbation", rows) == "only U-Net trained: no architecture to compare"
    assert claims_line("context", rows.iloc[:0]) == "no context regime was evaluated"


def _severities(perturbation: str, recommended: dict[int, str]) -> list[dict]:
    return [
        dict(
            study="perturbation",
            regime=f"{perturbation} severity {s}",
            decision="recommended" if arch else "inconclusive",
            recommended=arch,
        )
        for s, arch in recommended.items()
    ]


def test_where_line_says_from_which_severity_on_an_architecture_is_recommended():
    rows = _recipe(
        [
            dict(
                study="perturbation",
                regime="clean test images (Unperturbed)",
                decision="recommended",
                recommended="unet",
            )
        ]
        + _severities(
            "speckle", {1: "unet", 2: "", 3: "noskip_unet", 4: "noskip_unet", 5: "noskip_unet"}
        )
        + _severities("background_blur", dict.fromkeys(range(1, 6), "unet"))
        + _severities("blur", {1: "unet", 2: ""})
    )
    assert where_line("perturbation", rows) == (
        "from speckle noise severity 3 on, use No-skip U-Net; at every background blur severity "
        "tested (1-5), use U-Net"
    )


def test_where_line_of_the_texture_study_names_the_complexity_bins():
    assert where_line("texture", _texture_regimes()) == (
        "complexity 0-1 bits: U-Net; complexity 1-2 bits: U-Net"
    )
    assert where_line("texture", _texture_regimes().assign(decision="inconclusive")) is None


def _summary(**values) -> pd.DataFrame:
    row = dict(
        study="texture",
        arch="unet",
        target=0.9,
        n_calibration=100,
        min_calibration=9,
        median_dice_lower_bound=0.82,
        coverage=0.91,
        status="defined",
    )
    return pd.DataFrame([{**row, **values}])


def test_bounds_line_states_where_the_bound_holds_or_why_there_is_none():
    both = pd.concat(
        [_summary(), _summary(arch="unetpp", median_dice_lower_bound=0.9, coverage=0.93)]
    )
    assert bounds_line(both) == (
        "Dice bounds hold only for images like the calibration set: median bound 0.82 (U-Net) "
        "to 0.90 (UNet++) at 90% confidence; measured coverage 0.91-0.93"
    )
    none = _summary(median_dice_lower_bound=np.nan, n_calibration=2, coverage=np.nan)
    assert bounds_line(none) == (
        "no Dice bound: 2 calibration images per model, 9 needed for 90% confidence (raise "
        "n_calibration or split.calibration_fraction)"
    )


def test_context_line_reports_the_largest_drop_only_with_its_ci():
    table = pd.DataFrame(
        dict(
            arch=["unet", "unetr"],
            patch=["16", "32"],
            dice_drop=[0.02, 0.11],
            ci_low=[-0.01, 0.05],
            ci_high=[0.05, 0.17],
        )
    )
    assert context_line(table) == (
        "outside the training foreground-ratio range, Dice drops by 0.11 (95% CI 0.05 to 0.17; "
        "UNETR, patch 32)"
    )
    assert context_line(table.head(1)).startswith("no clear Dice drop")
    assert "no CI" in context_line(table.assign(ci_low=np.nan))


def test_a_study_verdict_has_at_most_five_lines_from_its_own_rows():
    tables = {
        "recipe": pd.concat([_texture_regimes(), _recipe(_severities("speckle", {1: "vnet"}))]),
        "conformal_summary": pd.concat([_summary(), _summary(study="perturbation", arch="vnet")]),
        "findings": pd.DataFrame(
            dict(study=["texture", "texture", "context"], reproduced=["yes", "inconclusive", "no"])
        ),
        "context_out_of_range": pd.DataFrame(),
    }
    lines = study_verdict("texture", tables)
    assert 1 <= len(lines) <= MAX_LINES
    assert lines[0].startswith("UNet++ wins 11 of 15 texture regimes")
    assert lines[-1] == "the papers' findings: 1 reproduced, 1 inconclusive"
    assert not any("V-Net" in line for line in lines)  # the perturbation study's rows stay out


@pytest.mark.parametrize(
    ("row", "text"),
    [
        (
            dict(decision="recommended", recommended="noskip_unet"),
            "\u2714 No-skip U-Net: +0.050 (CI +0.020 to +0.080)",
        ),
        (
            dict(decision="equivalent", equivalent="unet, unetpp"),
            "\u2248 U-Net, UNet++ (within \u00b10.01)",
        ),
        (
            dict(decision="inconclusive", reason=ONE_RUN, n_runs=1),
            "inconclusive: 1 run per architecture",
        ),
        (
            dict(decision="inconclusive", reason="the runs disagree: seed 3 of unet is below"),
            "inconclusive: the runs disagree",
        ),
        (
            dict(decision="inconclusive", reason="the 95% CI of unet - vnet crosses"),
            "inconclusive: +0.050 (CI +0.020 to +0.080) vs \u00b10.01",
        ),
    ],
)
def test_the_decision_column_in_a_few_words(row, text):
    assert (
        decision_text(next(_recipe([dict(study="texture", regime="r", **row)]).itertuples()))
        == text
    )


def test_readable_replaces_whole_word_ids_only():
    assert readable("For speckle severity 3 (Harder), use noskip_unet over unet") == (
        "For speckle noise severity 3 (Harder), use No-skip U-Net over U-Net"
    )
    assert readable("background_blur severity 2: unetpp, unetr, swin_unetr") == (
        "background blur severity 2: UNet++, UNETR, Swin UNETR"
    )
    once = readable("speckle severity 1, resolution severity 2, noskip_unet")
    assert once == "speckle noise severity 1, low resolution severity 2, No-skip U-Net"
    assert readable(once) == once  # already readable: unchanged
    # ids inside other names, the English word "none" and ids shown as themselves stay
    assert readable("dataset unet_data, none of them, blur severity 1") == (
        "dataset unet_data, none of them, blur severity 1"
    )
