"""aggregate: reading per-run tables, per-group summaries and the papers' level table, checked
against values worked out by hand on toy tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from segrobust.analysis.aggregate import concat_tables, level_table, summarise
from segrobust.contract import LEVEL_ORDER

METRIC_VALUES = {"hd": 1.0, "hd95": 1.0, "nsd": 1.0, "assd": 1.0, "volume_diff": 0.0}


def _toy():
    # unet: clean dice 0.5, 0.7 (seeds 1, 2); speckle-s1 (Harder) 0.2; blur-s2 (Easiest) 0.9
    # vnet: clean 0.8; gamma-s1 has no named level; one calibration row that must be ignored
    rows = [
        ("unet", 1, "clean", "none", 0, None, "test", 0.5),
        ("unet", 2, "clean", "none", 0, None, "test", 0.7),
        ("unet", 1, "speckle-s1", "speckle", 1, "Harder", "test", 0.2),
        ("unet", 1, "background_blur-s2", "background_blur", 2, "Easiest", "test", 0.9),
        ("vnet", 1, "clean", "none", 0, None, "test", 0.8),
        ("vnet", 1, "gamma-s1", "gamma", 1, None, "test", 0.1),
        ("vnet", 1, "clean", "none", 0, None, "calibration", 0.0),
    ]
    cols = ["arch", "seed", "condition", "perturbation", "severity", "level", "split", "dice"]
    df = pd.DataFrame(rows, columns=cols)
    return df.assign(study="perturbation", dataset="busi", **METRIC_VALUES)


def test_summarise_mean_sd_n_by_hand():
    out = summarise(_toy())
    clean_unet = out[(out["arch"] == "unet") & (out["perturbation"] == "none")].iloc[0]
    assert clean_unet["dice_mean"] == pytest.approx(0.6)
    assert clean_unet["dice_sd"] == pytest.approx(math.sqrt(0.02))  # ddof=1
    assert clean_unet["dice_n"] == 2
    clean_vnet = out[(out["arch"] == "vnet") & (out["perturbation"] == "none")].iloc[0]
    assert clean_vnet["dice_mean"] == pytest.approx(0.8)  # calibration row left out
    assert clean_vnet["dice_n"] == 1 and math.isnan(clean_vnet["dice_sd"])
    assert len(out) == 5  # gamma (no level) keeps its own group
    assert list(out.columns[:5]) == ["dataset", "perturbation", "severity", "level", "arch"]


def test_summarise_needs_one_study_or_groups():
    df = pd.concat([_toy(), _toy().assign(study="context", patch="32")])
    with pytest.raises(ValueError, match="exactly one study"):
        summarise(df)
    assert len(summarise(df, by=["study", "arch"])) == 4


def test_level_table_by_hand():
    table = level_table(_toy())
    assert list(table.columns) == ["dataset", "arch", *LEVEL_ORDER]
    unet = table[table["arch"] == "unet"].iloc[0]
    assert unet["Unperturbed"] == pytest.approx(0.6)
    assert unet["Harder"] == pytest.approx(0.2) and unet["Easiest"] == pytest.approx(0.9)
    assert math.isnan(unet["Hardest"]) and math.isnan(unet["Easier"])
    vnet = table[table["arch"] == "vnet"].iloc[0]
    assert vnet["Unperturbed"] == pytest.approx(0.8)


def test_concat_tables_keeps_identifiers_as_text(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    pd.DataFrame({"patch": ["32", "64"], "image_id": ["001", "002"]}).to_csv(a, index=False)
    pd.DataFrame({"patch": ["full"], "image_id": ["010"]}).to_csv(b, index=False)
    pd.DataFrame({"patch": ["32"], "other": [1]}).to_csv(c, index=False)
    out = concat_tables([a, b])
    assert out["patch"].tolist() == ["32", "64", "full"]  # not 32.0, 64.0
    assert out["image_id"].tolist() == ["001", "002", "010"]  # not 1, 2, 10
    with pytest.raises(ValueError, match="c.csv: columns"):
        concat_tables([a, c])
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        concat_tables([a, tmp_path / "missing.csv"])
    with pytest.raises(ValueError, match="at least one"):
        concat_tables([])
