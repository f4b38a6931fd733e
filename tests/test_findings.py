"""The papers' findings on constructed tables: contrasts across seeds, yes / no / inconclusive /
not run, and the rows' unit, runs and units."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from segrobust.analysis import findings
from segrobust.analysis import replicates as rep
from segrobust.analysis.context import training_fbr_range

SETTINGS = dict(significance=0.05, margin=0.02, min_cases=10, min_effect=0.01)
SEEDS = (1, 2, 3)
#: Each training run's offset (sd about 0.0025): retraining moves a network's Dice.
OFFSETS = {1: 0.002, 2: -0.0025, 3: 0.0005}


def _row(**values):
    base = dict(split="test", perturbation="none", severity=0, level="", direction="",
                train_alpha=np.nan, test_alpha=np.nan, seed=1, patch="full", fg_ratio=np.nan,
                complexity=np.nan, quality=np.nan)  # fmt: skip
    return {**base, **values}


def _offset(arch: str, seed: int, salt: str = "") -> float:
    """A run's offset, different per architecture and training dataset (independent runs)."""
    return OFFSETS[seed] * (1 if zlib.crc32(f"{arch}/{salt}".encode()) % 2 else -1)


def _texture(dice, archs, alphas=(0.1, 0.5, 0.9), n=20, seeds=SEEDS):
    """The texture grid; ``dice(arch, train, test, i)`` gives each image's Dice before the run
    offset of (arch, train alpha, seed)."""
    return pd.DataFrame([
        _row(study="texture", dataset=f"texture-{d}-{a:g}", condition=f"texture-{d}-{b:g}",
             test_dataset=f"texture-{d}-{b:g}", direction=d, train_alpha=a, test_alpha=b,
             arch=arch, seed=seed, image_id=f"tex_{i:04d}", group=f"tex_{i:04d}",
             dice=dice(arch, a, b, i) + _offset(arch, seed, f"{d}{a}"))
        for d in ("background", "foreground") for a in alphas for b in alphas
        for arch in archs for seed in seeds for i in range(n)
    ])  # fmt: skip


def _by_comparison(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("comparison")


def test_finding_a_the_skip_benefit_shrinks_from_easy_to_hard_textures():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, (2, 20))

    def dice(arch, train, test, i):  # unet ahead in-domain at 0.1 only
        gain = 0.05 if (arch == "unet" and train == test == 0.1) else 0.0
        return 0.7 + 0.005 * i + gain + noise[int(arch == "unet"), i]

    table = findings.findings(_texture(dice, ["unet", "noskip_unet"]), None, **SETTINGS)
    rows = _by_comparison(table)
    unet = rows.loc["(unet - noskip_unet) at alpha 0.1 - (unet - noskip_unet) at alpha 0.9"]
    assert unet["reproduced"] == "yes" and unet["n_units"] == 20 and unet["n_runs"] == 3
    assert unet["measured_effect"] == pytest.approx(0.05, abs=0.01)
    assert unet["ci_low"] > 0.01 and unet["unit"] == "training runs (seeds) x image indices"
    assert "above the minimum effect" in unet["note"]
    vnet = rows.loc["(vnet - noskip_vnet) at alpha 0.1 - (vnet - noskip_vnet) at alpha 0.9"]
    assert vnet["reproduced"] == "not run" and "vnet and noskip_vnet" in vnet["note"]


def test_finding_a_with_one_seed_is_inconclusive_and_says_why():
    def dice(arch, train, test, i):
        return 0.7 + 0.005 * i + (0.1 if arch == "unet" and train == 0.1 else 0.0)

    table = findings.findings(_texture(dice, ["unet", "noskip_unet"], seeds=(1,)), None,
                              **SETTINGS)  # fmt: skip
    row = table.iloc[0]
    assert row["reproduced"] == "inconclusive" and row["n_runs"] == 1
    assert row["note"] == rep.ONE_RUN and np.isnan(row["ci_low"])
    assert row["measured_effect"] == pytest.approx(0.1, abs=0.01)  # reported all the same


def test_finding_b_degradation_on_harder_alphas():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, (2, 2, 20))

    def dice(arch, train, test, i, skip_loses=0.1):
        loss = (test - train) * (skip_loses if arch == "unet" else 0.02) if test > train else 0
        return 0.8 - loss + noise[int(arch == "unet"), int(train > 0.3), i]

    table = _by_comparison(findings.findings(_texture(dice, ["unet", "noskip_unet"]), None,
                                             **SETTINGS))  # fmt: skip
    row = table.loc["degradation unet - degradation noskip_unet"]
    assert row["reproduced"] == "yes" and row["measured_effect"] > 0 and row["n_units"] == 20

    reversed_dice = lambda arch, train, test, i: dice(arch, train, test, i, skip_loses=0.0)  # noqa: E731
    table = _by_comparison(findings.findings(_texture(reversed_dice, ["unet", "noskip_unet"]),
                                             None, **SETTINGS))  # fmt: skip
    row = table.loc["degradation unet - degradation noskip_unet"]
    assert row["reproduced"] == "no" and "opposite" in row["note"]


CONDITIONS = {"Hardest": ("speckle", 4), "Harder": ("speckle", 2),
              "Easier": ("background_blur", 2), "Easiest": ("background_blur", 4)}  # fmt: skip


def _perturbation(level_shift: dict, n=30, noise=0.005, seed=0):
    """Clean and perturbed rows; ``level_shift[level][arch]`` is the level's Dice change."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.6, 0.85, n)
    rows = []
    for arch in ("unet", "noskip_unet"):
        for s in SEEDS:
            clean = base + _offset(arch, s)
            rows += [_row(study="perturbation", dataset="busi", condition="clean",
                          test_dataset="busi", level="Unperturbed", arch=arch, seed=s,
                          image_id=f"i{i}", group=f"i{i}", dice=clean[i])
                     for i in range(n)]  # fmt: skip
            for level, shifts in level_shift.items():
                perturbation, severity = CONDITIONS[level]
                dice = clean + shifts[arch] + rng.normal(0, noise, n)
                rows += [_row(study="perturbation", dataset="busi",
                              condition=f"{perturbation}-s{severity}", test_dataset="busi",
                              perturbation=perturbation, severity=severity, level=level,
                              arch=arch, seed=s, image_id=f"i{i}", group=f"i{i}", dice=dice[i])
                         for i in range(n)]  # fmt: skip
    return pd.DataFrame(rows)


def test_finding_c_skip_networks_degrade_more_and_the_main_effect_row():
    shifts = {"Hardest": {"unet": -0.3, "noskip_unet": -0.1},
              "Easiest": {"unet": -0.05, "noskip_unet": -0.05}}  # fmt: skip
    table = _by_comparison(findings.findings(_perturbation(shifts), None, **SETTINGS))
    hardest = table.loc[
        "Hardest: [Dice(Unperturbed) - Dice(Hardest)] unet - the same of noskip_unet"
    ]
    assert hardest["reproduced"] == "yes"
    assert hardest["measured_effect"] == pytest.approx(0.2, abs=0.01)
    assert hardest["n_units"] == 30 and hardest["n_runs"] == 3
    assert hardest["finding"].startswith("(c) skip networks degrade more")
    easiest = table.loc[
        "Easiest: [Dice(Unperturbed) - Dice(Easiest)] unet - the same of noskip_unet"
    ]
    assert easiest["reproduced"] == "no" and "at most negligible" in easiest["note"]
    assert (
        table.loc[
            "Harder: [Dice(Unperturbed) - Dice(Harder)] unet - the same of noskip_unet",
            "reproduced",
        ]
        == "not run"
    )
    main = table.loc["Dice(Unperturbed) - Dice(Hardest), architectures averaged"]
    assert main["finding"] == "(c, main effect) speckle (Hardest) lowers Dice"
    assert main["reproduced"] == "yes" and main["measured_effect"] == pytest.approx(0.2, abs=0.01)


def test_finding_c_with_four_images_is_inconclusive_and_says_why():
    shifts = {"Hardest": {"unet": -0.3, "noskip_unet": -0.1}}
    table = _by_comparison(findings.findings(_perturbation(shifts, n=4), None, **SETTINGS))
    row = table.loc["Hardest: [Dice(Unperturbed) - Dice(Hardest)] unet - the same of noskip_unet"]
    assert row["reproduced"] == "inconclusive"
    assert row["note"] == "too few units: 4 < analysis.min_cases = 10"
    assert row["measured_effect"] == pytest.approx(0.2, abs=0.02)  # reported all the same


def _context(drop_by_arch: dict, patch_gain=0.0, n=40, seed=0, patches=("16", "32")):
    """Context rows (3 seeds) with fg ratios over [0, 0.5]; the training range is [0.05, 0.3]."""
    rng = np.random.default_rng(seed)
    fg = np.linspace(0.0, 0.5, n)
    outside = (fg < 0.0625) | (fg > 0.2875)
    rows, patch_rows = [], []
    for p, patch in enumerate(patches):
        for arch, drop in drop_by_arch.items():
            for s in SEEDS:
                dice = (0.8 + p * patch_gain - drop * outside + _offset(arch, s, patch)
                        + rng.normal(0, 0.01, n))  # fmt: skip
                rows += [_row(study="context", dataset="spheres", condition="clean",
                              test_dataset="spheres", arch=arch, patch=patch, seed=s,
                              image_id=f"c{i}", group=f"c{i}", fg_ratio=fg[i], dice=dice[i])
                         for i in range(n)]  # fmt: skip
            patch_rows += [dict(study="context", dataset="spheres", arch=arch, seed=1,
                                patch=patch, fg_ratio=v)
                           for v in np.linspace(0.05, 0.3, 101)]  # fmt: skip
    return pd.DataFrame(rows), training_fbr_range(pd.DataFrame(patch_rows)), outside


def test_finding_e_attention_models_lose_more_outside_the_range():
    per_image, ranges, outside = _context({"unet": 0.05, "attention_unet": 0.2, "unetr": 0.05})
    table = findings.findings(per_image, ranges, **SETTINGS)
    rows = table[table["finding"].str.startswith("(e)")].set_index("comparison")
    attention = rows.loc["spheres, patch 16: drop attention_unet - drop unet"]
    assert attention["reproduced"] == "yes"
    assert attention["measured_effect"] == pytest.approx(0.15, abs=0.02)
    assert attention["n_units"] == 40 and f"{outside.sum()} outside" in attention["note"]
    unetr = rows.loc["spheres, patch 16: drop unetr - drop unet"]
    assert unetr["reproduced"] == "no"  # the same drop as unet: at most negligible
    assert "at most negligible" in unetr["note"] or "opposite" in unetr["note"]


def test_finding_e_too_few_cases_and_not_run():
    per_image, ranges, outside = _context({"unet": 0.05, "attention_unet": 0.2}, n=12)
    assert outside.sum() < 10
    table = findings.findings(per_image, ranges, **SETTINGS)
    rows = table[table["finding"].str.startswith("(e)")].set_index("comparison")
    row = rows.loc["spheres, patch 16: drop attention_unet - drop unet"]
    assert row["reproduced"] == "inconclusive" and row["note"].startswith("too few cases")
    assert np.isnan(row["p_value"]) and np.isnan(row["ci_low"]) and row["n_runs"] == 3
    assert rows.loc["drop unetr - drop unet", "reproduced"] == "not run"  # no unetr rows
    no_ranges = findings.findings(per_image, None, **SETTINGS)
    e = no_ranges[no_ranges["finding"].str.startswith("(e)")]
    assert (e["reproduced"] == "not run").all()
    assert (e["note"] == "no training-patch FBR ranges").all()


@pytest.mark.parametrize(
    ("gain", "superior", "noninferior"),
    [(0.05, "yes", "yes"), (0.0, "no", "yes"), (-0.05, "no", "no")],
)
def test_finding_d_context_per_architecture(gain, superior, noninferior):
    per_image, ranges, _ = _context({"unet": 0.0, "unetr": 0.0}, patch_gain=gain / 2,
                                    patches=("16", "32", "64"))  # fmt: skip
    table = findings.findings(per_image, ranges, **SETTINGS)
    d = table[table["finding"].str.startswith("(d)")]
    assert d["comparison"].tolist() == ["unet: Dice(patch 64) - Dice(patch 16)"] * 2 + [
        "unetr: Dice(patch 64) - Dice(patch 16)"
    ]
    assert d["reproduced"].tolist() == [superior, noninferior, superior]
    assert d["expected_direction"].tolist()[1] == ">= -0.02 (non-inferior, margin 0.02)"
    assert (d["n_units"] == 40).all() and (d["n_runs"] == 3).all()


def test_context_findings_compare_against_monai_unet_when_the_study_ran_it():
    per_image, ranges, _ = _context({"monai_unet": 0.05, "attention_unet": 0.2})
    table = findings.findings(per_image, ranges, **SETTINGS)
    d = table[table["finding"].str.startswith("(d)")]
    assert "monai_unet: Dice(patch 32) - Dice(patch 16)" in set(d["comparison"])
    assert len(d[d["comparison"].str.startswith("monai_unet")]) == 2  # with non-inferiority
    e = table[table["finding"].str.startswith("(e)")].set_index("comparison")
    assert e.loc["spheres, patch 16: drop attention_unet - drop monai_unet", "reproduced"] == "yes"


def test_empty_table_runs_nothing():
    columns = ["study", "split", "dataset", "condition", "test_dataset", "perturbation",
               "severity", "level", "direction", "train_alpha", "test_alpha", "arch", "seed",
               "patch", "image_id", "group", "dice", "fg_ratio"]  # fmt: skip
    table = findings.findings(pd.DataFrame(columns=columns), None, **SETTINGS)
    assert list(table.columns) == findings.FINDINGS_COLUMNS
    assert (table["reproduced"] == "not run").all()
    assert len(table) == 2 + 2 + 8 + 2 + 2 + 2  # (a), (b), (c), (c) main, (d) U-Net, (e)
    lines = findings.findings_statements(table)
    assert len(lines) == len(table) and all(": not run: " in line for line in lines)
