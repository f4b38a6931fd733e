"""Coverage per kind of shift: the flag level of each run, the table and its sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis import shift_coverage as sc
from segrobust.contract import APPLICABILITY_COLUMNS, Run
from segrobust.guarantees.applicability import choose_flag_level

ALPHA = 0.1


def _rows(run, kind, role, n, p, dice, quality=0.9, in_domain=None, fg_ratio=0.2, start=0):
    """``n`` applicability rows of one run (statistics finite unless the p-value says not)."""
    return pd.DataFrame(
        dict(
            run.columns, condition=kind, kind=kind,
            in_domain=kind == "in-domain" if in_domain is None else in_domain,
            test_dataset=run.dataset, split="calibration" if role == "calibration" else "test",
            role=role, image_id=[f"{kind}{i + start}" for i in range(n)],
            group=[f"{kind}{i + start}" for i in range(n)], dice=dice, quality=quality,
            fg_ratio=fg_ratio, mask_complexity=0.5, predicted_fg_ratio=0.2, noise_sigma=0.1,
            p_value=p,
        )
    ).reindex(columns=list(APPLICABILITY_COLUMNS))  # fmt: skip


def _run_table(run, rng):
    """A run with 99 calibration images (scores ~ 0.05 +- 0.02, so q-hat ~ 0.076), in-domain
    images, a kind whose images are far (p 0.012) and not covered, and a mild kind close and
    covered (scores below 0.06)."""
    cal_dice = 0.9 - rng.normal(0.05, 0.02, 99)
    parts = [_rows(run, "in-domain", "calibration", 99, np.nan, cal_dice)]
    for role, start in (("tuning", 0), ("report", 100)):
        parts += [
            _rows(run, "in-domain", role, 60, rng.uniform(0.01, 1, 60),
                  0.9 - rng.uniform(0, 0.06, 60), start=start),
            _rows(run, "far", role, 60, 0.012, 0.5, start=start),
            _rows(run, "mild", role, 60, rng.uniform(0.01, 1, 60),
                  0.9 - rng.uniform(0, 0.06, 60), start=start),
        ]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_each_runs_level_is_the_one_predict_chooses_from_its_tuning_images():
    rng = np.random.default_rng(0)
    runs = [Run("texture", "texture-background-0.5", arch, "full", 1) for arch in ("unet", "vnet")]
    table = pd.concat([_run_table(run, rng) for run in runs], ignore_index=True)
    levels = sc.flag_levels(table, ALPHA, 0.05)
    assert list(levels.columns) == sc.FLAG_LEVEL_COLUMNS and len(levels) == 2
    for run, level in zip(runs, levels.itertuples(), strict=True):
        rows = table[table.arch == run.arch]
        cal = rows[rows.role == "calibration"]
        expected = choose_flag_level(rows[rows.role == "tuning"], cal.quality - cal.dice, ALPHA, 99)
        assert level.flag_level == expected.level and level.reason == expected.reason
        assert level.n_calibration == 99
        assert level.flag_level == 0.012  # raised to flag the far kind


def test_the_table_reports_only_report_images_and_says_what_holds():
    rng = np.random.default_rng(1)
    run = Run("texture", "texture-background-0.5", "unet", "full", 1)
    table = sc.shift_coverage(_run_table(run, rng), None, ALPHA)
    assert list(table.columns) == sc.SHIFT_COVERAGE_COLUMNS
    assert table["kind"].tolist() == ["in-domain", "far", "mild"]  # in-domain first
    rows = table.set_index("kind")
    assert (rows["n_images"] == 60).all()  # the report half only
    assert rows.loc["far", "status"] == sc.WITHHELD and rows.loc["far", "fraction_flagged"] == 1
    assert rows.loc["far", "coverage_all"] == 0.0  # the bound would have failed there
    for kind in ("in-domain", "mild"):
        assert rows.loc[kind, "status"] == sc.HOLDS
        assert rows.loc[kind, "coverage_ci_low"] <= rows.loc[kind, "coverage"]
    sentence = sc.rating_limits(table, "texture")
    assert sentence.startswith("Texture study, confidence rating holds for: in-domain (")
    assert "withheld (every image flagged) for: far" in sentence


def test_a_kind_whose_rated_images_are_not_covered_is_named_below_target():
    rng = np.random.default_rng(2)
    run = Run("perturbation", "texture_demo", "unet", "full", 1)
    table = _run_table(run, rng)
    report = (table.role == "report") & (table.kind == "mild")
    table.loc[report, "dice"] = 0.5  # the report half breaks where tuning did not
    result = sc.shift_coverage(table, None, ALPHA).set_index("kind")
    assert result.loc["mild", "status"] == sc.BELOW
    sentence = sc.rating_limits(result.reset_index(), "perturbation")
    assert "BELOW 0.85 among rated images for: mild (unet 0.00)" in sentence


def test_images_outside_the_training_fg_range_get_kinds_of_their_own():
    rng = np.random.default_rng(3)
    run = Run("texture", "texture-background-0.5", "unet", "full", 1)
    table = _run_table(run, rng)
    small = (table.role == "report") & (table.kind == "in-domain") & (table.index % 3 == 0)
    table.loc[small, "fg_ratio"] = 0.01
    patches = pd.DataFrame(
        dict(run.columns, epoch=1, batch=0, index=range(50), fg_ratio=np.linspace(0.1, 0.3, 50))
    )
    result = sc.shift_coverage(table, patches, ALPHA).set_index("kind")
    below = "in-domain, fg ratio below training range"
    assert result.loc[below, "n_images"] == small.sum()
    assert "in-domain, fg ratio above training range" not in result.index


def test_an_undefined_bound_is_no_bound_not_coverage():
    rng = np.random.default_rng(4)
    run = Run("context", "spheres", "unet", "16", 1)
    table = _run_table(run, rng)
    table = table[(table.role != "calibration") | (table.image_id.isin(["in-domain0"]))]
    result = sc.shift_coverage(table, None, ALPHA)
    assert (result["status"] == sc.NO_BOUND).all() and result["coverage"].isna().all()
    assert "no bound (too few calibration images) for:" in sc.rating_limits(result, "context")


def test_no_rows_give_an_empty_table_and_a_sentence_saying_so():
    empty = pd.DataFrame(columns=list(APPLICABILITY_COLUMNS))
    table = sc.shift_coverage(empty, None, ALPHA)
    assert table.empty and list(table.columns) == sc.SHIFT_COVERAGE_COLUMNS
    assert sc.rating_limit_statements(table) == ["No per-shift coverage measured."]


@pytest.mark.parametrize("statuses, expected", [
    ([sc.HOLDS, sc.WITHHELD], sc.HOLDS),
    ([sc.WITHHELD, sc.WITHHELD], sc.WITHHELD),
    ([sc.HOLDS, sc.BELOW], sc.BELOW),
])  # fmt: skip
def test_a_kind_across_architectures_takes_the_worst_status(statuses, expected):
    assert sc._pooled_status(pd.DataFrame({"status": statuses})) == expected
