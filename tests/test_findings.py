"""The papers' findings on constructed tables: yes, no, inconclusive and not run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segrobust.analysis import findings
from segrobust.analysis.context import training_fbr_range

SETTINGS = dict(significance=0.05, margin=0.02, min_cases=10, n_bootstrap=300, seed=0)


def _row(**values):
    base = dict(split="test", perturbation="none", severity=0, level="", direction="",
                train_alpha=np.nan, test_alpha=np.nan, seed=1, patch="full", fg_ratio=np.nan,
                complexity=np.nan, quality=np.nan)  # fmt: skip
    return {**base, **values}


def _texture(dice, archs, alphas=(0.1, 0.5, 0.9), n=20, seeds=(1,)):
    """The texture grid; ``dice(arch, train, test, i)`` gives each image's Dice."""
    return pd.DataFrame([
        _row(study="texture", dataset=f"texture-{d}-{a:g}", condition=f"texture-{d}-{b:g}",
             test_dataset=f"texture-{d}-{b:g}", direction=d, train_alpha=a, test_alpha=b,
             arch=arch, seed=seed, image_id=f"tex_{i:04d}",
             group=f"tex_{i:04d}", dice=dice(arch, a, b, i))
        for d in ("background", "foreground") for a in alphas for b in alphas
        for arch in archs for seed in seeds for i in range(n)
    ])  # fmt: skip


def _by_comparison(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("comparison")


@pytest.mark.parametrize(
    ("effect", "p", "sign", "verdict"),
    [(0.1, 0.01, 1, "yes"), (-0.1, 0.01, 1, "no"), (0.1, 0.2, 1, "inconclusive"),
     (-0.1, 0.01, -1, "yes"), (np.nan, np.nan, 1, "inconclusive")],
)  # fmt: skip
def test_directional_verdict(effect, p, sign, verdict):
    assert findings.directional_verdict(effect, p, 0.05, sign) == verdict


@pytest.mark.parametrize(
    ("effect", "ci_low", "p", "verdict"),
    [(0.05, 0.03, 0.001, "yes"),  # significantly positive
     (-0.003, -0.015, 0.4, "yes"),  # not significant, CI above -margin: non-inferior
     (-0.01, -0.05, 0.3, "inconclusive"),  # not significant, CI reaches below -margin
     (-0.004, -0.008, 0.01, "no")],  # significantly negative, however small
)  # fmt: skip
def test_noninferior_verdict(effect, ci_low, p, verdict):
    assert findings.noninferior_verdict(effect, ci_low, p, 0.05, 0.02) == verdict


def test_finding_a_skip_connections_help_on_the_easiest_alpha():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, (2, 20))

    def dice(arch, train, test, i):  # unet ahead in-domain at 0.1 only
        gain = 0.05 if (arch == "unet" and train == test == 0.1) else 0.0
        return 0.7 + 0.005 * i + gain + noise[int(arch == "unet"), i]

    table = findings.findings(_texture(dice, ["unet", "noskip_unet"]), None, **SETTINGS)
    rows = _by_comparison(table)
    unet = rows.loc["unet - noskip_unet"]
    assert unet["reproduced"] == "yes" and unet["n"] == 20  # image indices, not rows
    expected = np.median(0.05 + noise[1] - noise[0])
    assert unet["measured_effect"] == pytest.approx(expected)
    assert unet["p_value"] == pytest.approx(stats.wilcoxon(0.05 + noise[1] - noise[0]).pvalue)
    assert "alpha 0.1 " in unet["statistic"]
    assert rows.loc["vnet - noskip_vnet", "reproduced"] == "not run"
    assert "vnet and noskip_vnet" in rows.loc["vnet - noskip_vnet", "note"]


def test_finding_b_degradation_on_harder_alphas():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, (2, 2, 20))

    def dice(arch, train, test, i, skip_loses=0.1):
        loss = (test - train) * (skip_loses if arch == "unet" else 0.02) if test > train else 0
        return 0.8 - loss + noise[int(arch == "unet"), int(train > 0.3), i]

    table = _by_comparison(findings.findings(_texture(dice, ["unet", "noskip_unet"]), None,
                                             **SETTINGS))  # fmt: skip
    row = table.loc["degradation unet - degradation noskip_unet"]
    assert row["reproduced"] == "yes" and row["measured_effect"] > 0 and row["n"] == 20

    reversed_dice = lambda arch, train, test, i: dice(arch, train, test, i, skip_loses=0.0)  # noqa: E731
    table = _by_comparison(findings.findings(_texture(reversed_dice, ["unet", "noskip_unet"]),
                                             None, **SETTINGS))  # fmt: skip
    assert table.loc["degradation unet - degradation noskip_unet", "reproduced"] == "no"


def _perturbation(level_shift: dict, n=30, archs=("unet", "noskip_unet"), noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.6, 0.85, n)
    conditions = {"Hardest": ("speckle", 4), "Harder": ("speckle", 2),
                  "Easier": ("background_blur", 2), "Easiest": ("background_blur", 4)}  # fmt: skip
    rows = []
    for arch in archs:
        rows += [_row(study="perturbation", dataset="busi", condition="clean", test_dataset="busi",
                      level="Unperturbed", arch=arch, image_id=f"i{i}", group=f"i{i}", dice=base[i])
                 for i in range(n)]  # fmt: skip
        for level, shift in level_shift.items():
            perturbation, severity = conditions[level]
            dice = base + shift + rng.normal(0, noise, n)
            condition = f"{perturbation}-s{severity}"
            rows += [_row(study="perturbation", dataset="busi", condition=condition,
                          test_dataset="busi", perturbation=perturbation, severity=severity,
                          level=level, arch=arch, image_id=f"i{i}", group=f"i{i}", dice=dice[i])
                     for i in range(n)]  # fmt: skip
    return pd.DataFrame(rows)


def test_finding_c_speckle_lowers_and_blur_does_not():
    table = findings.findings(
        _perturbation({"Hardest": -0.2, "Harder": -0.05, "Easier": 0.0, "Easiest": -0.1}),
        None,
        **SETTINGS,
    )
    rows = table.set_index("comparison")
    assert rows.loc["Dice(Hardest) - Dice(Unperturbed)", "reproduced"] == "yes"
    assert rows.loc["Dice(Harder) - Dice(Unperturbed)", "reproduced"] == "yes"
    easier = rows.loc["Dice(Easier) - Dice(Unperturbed)"]
    assert easier["reproduced"] == "yes" and easier["ci_low"] >= -0.02  # non-inferior
    assert easier["expected_direction"].startswith(">= 0 (non-inferior, margin 0.02)")
    assert rows.loc["Dice(Easiest) - Dice(Unperturbed)", "reproduced"] == "no"
    assert (rows.loc[rows["study"] == "perturbation", "n"] == 30).all()  # images, archs averaged


def test_finding_c_with_four_images_is_inconclusive_and_says_why():
    table = findings.findings(_perturbation({"Hardest": -0.2}, n=4), None, **SETTINGS)
    row = table.set_index("comparison").loc["Dice(Hardest) - Dice(Unperturbed)"]
    assert row["reproduced"] == "inconclusive" and row["p_value"] == pytest.approx(0.125)
    assert "smallest attainable p is 0.125" in row["note"]
    assert np.isnan(row["ci_low"]) and "no CI: n = 4 < 10" in row["note"]
    # a "does not lower" claim cannot be reproduced from four images either
    blur = findings.findings(_perturbation({"Easier": 0.01}, n=4), None, **SETTINGS)
    assert blur.set_index("comparison").loc["Dice(Easier) - Dice(Unperturbed)", "reproduced"] == (
        "inconclusive"
    )
    assert row["measured_effect"] < -0.15  # the effect is reported all the same


def _context(drop_by_arch: dict, patch_gain=0.0, n=40, seed=0, patches=("16", "32")):
    """Context rows with fg ratios over [0, 0.5]; the training range is [0.05, 0.3]."""
    rng = np.random.default_rng(seed)
    fg = np.linspace(0.0, 0.5, n)
    outside = (fg < 0.0625) | (fg > 0.2875)
    rows, patch_rows = [], []
    for p, patch in enumerate(patches):
        for arch, drop in drop_by_arch.items():
            dice = 0.8 + p * patch_gain - drop * outside + rng.normal(0, 0.01, n)
            rows += [_row(study="context", dataset="spheres", condition="clean",
                          test_dataset="spheres", arch=arch, patch=patch, image_id=f"c{i}",
                          group=f"c{i}",
                          fg_ratio=fg[i], dice=dice[i]) for i in range(n)]  # fmt: skip
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
    assert attention["n"] == 40 and f"{outside.sum()} outside" in attention["note"]
    unetr = rows.loc["spheres, patch 16: drop unetr - drop unet"]
    assert unetr["reproduced"] == "inconclusive"  # same drop as unet


def test_finding_e_too_few_cases_and_not_run():
    per_image, ranges, outside = _context({"unet": 0.05, "attention_unet": 0.2}, n=12)
    assert outside.sum() < 10
    table = findings.findings(per_image, ranges, **SETTINGS)
    rows = table[table["finding"].str.startswith("(e)")].set_index("comparison")
    row = rows.loc["spheres, patch 16: drop attention_unet - drop unet"]
    assert row["reproduced"] == "inconclusive" and row["note"].startswith("too few cases")
    assert np.isnan(row["p_value"]) and np.isnan(row["ci_low"])
    assert rows.loc["drop unetr - drop unet", "reproduced"] == "not run"  # no unetr rows
    no_ranges = findings.findings(per_image, None, **SETTINGS)
    e = no_ranges[no_ranges["finding"].str.startswith("(e)")]
    assert (e["reproduced"] == "not run").all()
    assert (e["note"] == "no training-patch FBR ranges").all()


@pytest.mark.parametrize(("gain", "verdict"), [(0.0, "yes"), (-0.05, "no")])
def test_finding_d_unet_dice_with_patch_size(gain, verdict):
    per_image, ranges, _ = _context({"unet": 0.0}, patch_gain=gain, patches=("16", "32", "64"))
    table = findings.findings(per_image, ranges, **SETTINGS)
    row = table[table["finding"].str.startswith("(d)")].iloc[0]
    assert row["comparison"] == "unet: Dice(patch 64) - Dice(patch 16)"
    assert row["reproduced"] == verdict and row["n"] == 40


def test_context_findings_compare_against_monai_unet_when_the_study_ran_it():
    per_image, ranges, _ = _context({"monai_unet": 0.05, "attention_unet": 0.2})
    table = findings.findings(per_image, ranges, **SETTINGS)
    d = table[table["finding"].str.startswith("(d)")].iloc[0]
    assert d["comparison"] == "monai_unet: Dice(patch 32) - Dice(patch 16)"
    e = table[table["finding"].str.startswith("(e)")].set_index("comparison")
    assert e.loc["spheres, patch 16: drop attention_unet - drop monai_unet", "reproduced"] == "yes"


def test_empty_table_runs_nothing():
    columns = ["study", "split", "dataset", "condition", "test_dataset", "perturbation",
               "severity", "level", "direction", "train_alpha", "test_alpha", "arch", "seed",
               "patch", "image_id", "dice", "fg_ratio"]  # fmt: skip
    table = findings.findings(pd.DataFrame(columns=columns), None, **SETTINGS)
    assert list(table.columns) == findings.FINDINGS_COLUMNS
    assert (table["reproduced"] == "not run").all() and len(table) == 2 + 2 + 4 + 1 + 2
    lines = findings.findings_statements(table)
    assert len(lines) == len(table) and all(": not run: " in line for line in lines)
