"""End to end: run_analysis on a small synthetic table of all three studies."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from schema_defaults import default_config

from segrobust.analysis import run as analysis_run
from segrobust.analysis.conformal import SUMMARY_COLUMNS
from segrobust.analysis.context import FBR_RANGE_COLUMNS, OUT_OF_RANGE_COLUMNS
from segrobust.analysis.findings import FINDINGS_COLUMNS
from segrobust.analysis.recipe import COMPARISON_COLUMNS, RANKING_COLUMNS, RECIPE_COLUMNS
from segrobust.analysis.robustness import CORRUPTION_COLUMNS, ROBUSTNESS_COLUMNS
from segrobust.contract import read_table

ARCHS = {"unet": 0.85, "attention_unet": 0.80, "nested_unet": 0.75}
LEVELS = {1: "Easiest", 2: "Easier", 3: "Harder", 4: "Harder", 5: "Hardest"}
THRESHOLDS = np.round(np.arange(0.1, 1.0, 0.1), 2)


def _row(study, dataset, arch, seed, patch, condition, split, image_id, dice, **extra):
    base = dict(
        study=study,
        dataset=dataset,
        condition=condition,
        test_dataset=dataset,
        split=split,
        perturbation="none",
        severity=0,
        level="Unperturbed",
        direction="",
        train_alpha=np.nan,
        test_alpha=np.nan,
        arch=arch,
        seed=seed,
        patch=patch,
        image_id=image_id,
        group=image_id,
        dice=dice,
        hd95=1.0,
        nsd=dice,
        assd=0.5,
        volume_diff=0.0,
        fg_ratio=0.2,
        complexity=1.0,
        noise_sigma=0.02,
        noise_brightness_ratio=1.0,
    )
    base.update(extra)
    base["quality"] = float(np.clip(base["dice"] + 0.03, 0, 1))
    return base


@functools.cache
def _synthetic_tables(seed: int):
    return _build_tables(seed)


def synthetic_tables(seed: int = 0):
    """Fresh copies of the cached synthetic tables (tests may modify them)."""
    return tuple(table.copy() for table in _synthetic_tables(seed))


def _build_tables(seed: int):
    """(per_image, fnr, patches) with perturbation, texture and context studies."""
    rng = np.random.default_rng(seed)
    rows = []
    for arch, skill in ARCHS.items():
        for s in (1, 2):
            run = ("perturbation", "busi", arch, s, "full")
            for split, n in (("test", 12), ("calibration", 10)):
                for i in range(n):
                    d = skill + rng.normal(0, 0.03)
                    rows.append(_row(*run, "clean", split, f"{split}{i}", d))
            for pert, sevs in (("speckle", range(1, 6)), ("blur", range(1, 4))):
                for sev in sevs:
                    for i in range(12):
                        d = skill - 0.03 * sev * (1 + (arch == "nested_unet")) + rng.normal(0, 0.03)
                        rows.append(
                            _row(
                                *run,
                                f"{pert}-s{sev}",
                                "test",
                                f"test{i}",
                                d,
                                perturbation=pert,
                                severity=sev,
                                level=LEVELS[sev],
                                # the image's noise: up with speckle, down with blur
                                noise_sigma=(
                                    0.02 + 0.03 * sev if pert == "speckle" else 0.02 / (1 + sev)
                                )
                                * (1 + 0.02 * np.sin(i)),
                                noise_brightness_ratio=1.8 if pert == "speckle" else 1.0,
                            )
                        )
            for alpha in (0.1, 0.5):
                ds = f"texture-fg-{alpha:g}"
                trun = ("texture", ds, arch, s, "full")
                for split, n in (("test", 8), ("calibration", 8)):
                    for i in range(n):
                        rows.append(
                            _row(
                                *trun,
                                ds,
                                split,
                                f"{split}{i}",
                                skill - alpha / 2 + rng.normal(0, 0.03),
                                direction="fg",
                                train_alpha=alpha,
                                test_alpha=alpha,
                                complexity=3 - 4 * alpha + 0.2 * np.sin(i),
                            )
                        )
                other = 0.5 if alpha == 0.1 else 0.1
                ods = f"texture-fg-{other:g}"
                for i in range(8):
                    rows.append(
                        _row(
                            *trun,
                            ods,
                            "test",
                            f"test{i}",
                            skill - 0.3 + rng.normal(0, 0.03),
                            test_dataset=ods,
                            direction="fg",
                            train_alpha=alpha,
                            test_alpha=other,
                            complexity=3 - 4 * other + 0.2 * np.sin(i),
                        )
                    )
    patches = []
    for arch, skill in (("unet", 0.9), ("unetr", 0.8)):
        for patch in (32, 64):
            run = ("context", "spheres", arch, 1, str(patch))
            for i in range(30):
                fbr = rng.uniform(0.01, 0.4)
                d = skill - (0.3 if fbr > 0.25 else 0.0) + rng.normal(0, 0.02)
                rows.append(_row(*run, "clean", "test", f"case{i}", d, fg_ratio=fbr))
            for i in range(6):
                rows.append(_row(*run, "clean", "calibration", f"cal{i}", skill, fg_ratio=0.1))
            for j in range(100):
                patches.append(
                    dict(
                        zip(["study", "dataset", "arch", "seed", "patch"], run, strict=True),
                        epoch=j // 10,
                        batch=j % 10,
                        index=0,
                        fg_ratio=rng.uniform(0.02, 0.25),
                    )
                )
    per_image = pd.DataFrame(rows)
    keys = ["study", "dataset", "arch", "seed", "patch", "condition", "split", "image_id"]
    images = per_image[keys].drop_duplicates()
    offset = rng.uniform(0, 0.6, len(images))
    fnr = images.loc[images.index.repeat(len(THRESHOLDS))].assign(
        threshold=np.tile(THRESHOLDS, len(images)),
        fnr=np.clip(np.tile(THRESHOLDS, len(images)) - np.repeat(offset, len(THRESHOLDS)), 0, 1),
    )
    return per_image, fnr.reset_index(drop=True), pd.DataFrame(patches)


DEFAULTS = default_config()["analysis"]
SETTINGS = {**DEFAULTS, "n_bootstrap": 50, "complexity_bins": 2, "seed": 3}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """run_analysis once on all three studies: (output folder, written paths)."""
    out = tmp_path_factory.mktemp("analysis")
    per_image, fnr, patches = synthetic_tables()
    return out, analysis_run.run_analysis(per_image, fnr, patches, SETTINGS, out)


def test_run_analysis_writes_every_output_with_its_columns(full_run):
    tmp_path, written = full_run
    per_image, _, _ = synthetic_tables()
    assert set(written) == set(analysis_run.OUTPUTS)
    for name, path in written.items():
        assert path.exists() and path.stat().st_size > 0, name
    assert not list(tmp_path.glob(".analysis-*"))  # scratch folder removed
    robust = pd.read_csv(tmp_path / "robustness.csv")
    assert list(robust.columns) == ROBUSTNESS_COLUMNS
    assert set(robust["perturbation"]) == {"speckle", "blur"}
    ce = pd.read_csv(tmp_path / "corruption_errors.csv")
    assert list(ce.columns) == CORRUPTION_COLUMNS
    assert np.allclose(ce.loc[ce["arch"] == "unet", "ce"], 1.0)
    bounds = pd.read_csv(tmp_path / "per_image_with_bounds.csv")
    assert len(bounds) == len(per_image)
    defined = bounds["study"] == "perturbation"  # 10 calibration images; the others have < 9
    assert bounds.loc[defined, "dice_lower_bound"].between(0, 1).all()
    assert bounds.loc[~defined, "dice_lower_bound"].isna().all()
    recipe = pd.read_csv(tmp_path / "recipe.csv")
    assert list(recipe.columns) == RECIPE_COLUMNS
    assert {"complexity", "shift", "perturbation", "context"} == set(recipe["regime_kind"])
    assert (recipe["n_archs"] >= 2).all()
    assert set(recipe["decision"]) <= {"recommended", "equivalent", "inconclusive"}
    recommended = recipe[recipe["decision"] == "recommended"]
    assert (recommended["ci_low"] > DEFAULTS["min_effect"]).all()
    assert recipe.loc[recipe["decision"] != "recommended", "recommended"].isna().all()
    # the context study ran one seed: one run per architecture, never a decision
    context = recipe[recipe["study"] == "context"]
    assert (context["decision"] == "inconclusive").all()
    assert context["reason"].str.startswith("one training run per architecture").all()
    assert (recipe.loc[recipe["study"] != "context", "n_runs"] == 2).all()
    assert (tmp_path / "recipe.md").read_text().count("- For ") == len(recipe)
    comparisons = pd.read_csv(tmp_path / "recipe_comparisons.csv")
    assert list(comparisons.columns) == COMPARISON_COLUMNS
    assert len(comparisons) == (recipe["n_archs"] - 1).sum()
    rankings = pd.read_csv(tmp_path / "recipe_rankings.csv")
    assert list(rankings.columns) == RANKING_COLUMNS
    assert len(rankings) == recipe["n_archs"].sum()
    ctx = pd.read_csv(tmp_path / "context_out_of_range.csv")
    assert list(ctx.columns) == OUT_OF_RANGE_COLUMNS
    assert (ctx["dice_drop"] > 0.1).all()  # the synthetic drop outside the range is 0.3
    ranges = pd.read_csv(tmp_path / "context_fbr_range.csv")
    assert list(ranges.columns) == FBR_RANGE_COLUMNS and len(ranges) == 2  # one per patch size
    assert ranges["n_runs"].eq(2).all()  # pooled over unet and unetr
    friedman = pd.read_csv(tmp_path / "friedman.csv")
    assert set(friedman["study"]) == {"perturbation", "texture", "context"}
    assert friedman.set_index("study").loc["texture", "n_blocks"].eq(2).all()  # in-domain sets
    applicable = friedman.groupby("study")["cd_applicable"].first()
    assert applicable.to_dict() == {"context": False, "perturbation": False, "texture": True}
    coverage = pd.read_csv(tmp_path / "coverage.csv")
    assert {"coverage", "coverage_ci_low", "below_target", "slack", "status"} <= set(
        coverage.columns
    )
    # texture runs have 8 calibration images < 9: undefined, never "consistent"
    texture = coverage[coverage["study"] == "texture"]
    assert texture["coverage"].isna().all() and texture["status"].str.startswith("undefined").all()
    summary = pd.read_csv(tmp_path / "conformal_summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == len(per_image[["study", "arch"]].drop_duplicates())
    found = pd.read_csv(tmp_path / "findings.csv")
    assert list(found.columns) == FINDINGS_COLUMNS
    assert set(found["reproduced"]) <= {"yes", "no", "inconclusive", "not run"}
    # no noskip variants in the synthetic tables: the skip-connection findings are not run
    assert (
        found.loc[found["finding"].str.startswith(("(a)", "(b)")), "reproduced"] == "not run"
    ).all()
    notes = (tmp_path / "notes.md").read_text()
    for section in ("Findings of the papers", "Friedman / Nemenyi blocks", "easier"):
        assert section in notes


def test_run_analysis_without_perturbations_or_context_writes_empty_tables(tmp_path):
    per_image, fnr, _ = synthetic_tables()
    texture = per_image[per_image["study"] == "texture"]
    written = analysis_run.run_analysis(texture, fnr, None, SETTINGS, tmp_path)
    assert set(written) == set(analysis_run.OUTPUTS)
    robust = pd.read_csv(tmp_path / "robustness.csv")
    assert robust.empty and list(robust.columns) == ROBUSTNESS_COLUMNS
    assert list(pd.read_csv(tmp_path / "corruption_errors.csv").columns) == CORRUPTION_COLUMNS
    assert pd.read_csv(tmp_path / "context_out_of_range.csv").empty
    assert list(pd.read_csv(tmp_path / "findings.csv").columns) == FINDINGS_COLUMNS
    notes = (tmp_path / "notes.md").read_text()
    assert "No perturbed test rows" in notes and "context_out_of_range.csv are empty" in notes


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bootstrap": 10}, r"unknown \['bootstrap'\]"),
        ({"fnr_level": 1.5}, "analysis.fnr_level"),
        ({"n_bootstrap": 0}, "analysis.n_bootstrap"),
        ({"complexity_bins": 2.5}, "analysis.complexity_bins"),
        ({"baseline_arch": ""}, "analysis.baseline_arch"),
        ({"min_cases": 0}, "analysis.min_cases"),
        ({"relative_ce_min_degradation": -0.1}, "analysis.relative_ce_min_degradation"),
        ({"noninferiority_margin": "0.02"}, "analysis.noninferiority_margin"),
        ({"min_effect": -0.01}, "analysis.min_effect"),
    ],
)
def test_bad_settings_are_rejected_before_writing(tmp_path, settings, message):
    per_image, fnr, patches = synthetic_tables()
    with pytest.raises(ValueError, match=message):
        analysis_run.run_analysis(
            per_image, fnr, patches, {**DEFAULTS, **settings}, tmp_path / "out"
        )
    assert not (tmp_path / "out").exists()


def test_missing_settings_are_named(tmp_path):
    per_image, fnr, patches = synthetic_tables()
    settings = {k: v for k, v in DEFAULTS.items() if k != "min_cases"}
    with pytest.raises(ValueError, match=r"missing \['min_cases'\]"):
        analysis_run.run_analysis(per_image, fnr, patches, settings, tmp_path / "out")


def test_missing_columns_and_unknown_baseline_write_nothing(tmp_path):
    per_image, fnr, patches = synthetic_tables()
    with pytest.raises(ValueError, match="lacks columns.*quality"):
        analysis_run.run_analysis(
            per_image.drop(columns="quality"), fnr, patches, DEFAULTS, tmp_path
        )
    with pytest.raises(ValueError, match="patches table lacks columns.*'fg_ratio'"):
        analysis_run.run_analysis(
            per_image, fnr, patches.drop(columns="fg_ratio"), DEFAULTS, tmp_path
        )
    with pytest.raises(ValueError, match="baseline_arch 'vnet'.*attention_unet"):
        analysis_run.run_analysis(
            per_image, fnr, patches, {**DEFAULTS, "baseline_arch": "vnet"}, tmp_path
        )
    assert list(tmp_path.iterdir()) == []


def test_run_analysis_is_deterministic(full_run, tmp_path):
    first, _ = full_run
    per_image, fnr, patches = synthetic_tables()
    analysis_run.run_analysis(per_image, fnr, patches, SETTINGS, tmp_path)
    for csv in ("rankings.csv", "bootstrap_ci.csv", "context_out_of_range.csv", "coverage.csv",
                "recipe.csv", "findings.csv"):  # fmt: skip
        assert (first / csv).read_text() == (tmp_path / csv).read_text()


def test_tables_read_back_from_csv_give_the_same_results(full_run, tmp_path):
    """The workflow reads CSVs with the contract's reader: empty strings become NaN, identifiers
    stay text."""
    first, _ = full_run
    tables = synthetic_tables()
    paths = [tmp_path / f"{name}.csv" for name in ("per_image", "fnr", "patches")]
    for table, path in zip(tables, paths, strict=True):
        table.to_csv(path, index=False)
    per_image, fnr, patches = (read_table(path) for path in paths)
    assert per_image["direction"].isna().any()
    analysis_run.run_analysis(per_image, fnr, patches, SETTINGS, tmp_path / "out")
    for csv in ("recipe.csv", "context_out_of_range.csv", "friedman.csv", "conformal_fnr.csv",
                "findings.csv", "conformal_summary.csv"):  # fmt: skip
        assert pd.read_csv(first / csv).equals(pd.read_csv(tmp_path / "out" / csv)), csv
