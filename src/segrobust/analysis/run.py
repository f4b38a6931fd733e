"""Entry point of the analysis stage: every table and figure from per-image and FNR rows.

``run_analysis`` computes everything in memory first and only then writes, each file through a
temporary name and a rename, so bad input or a failing step leaves no half-written output. Every
output is always written (the workflow declares them all); a part whose study is absent becomes
an empty table with its columns, and ``notes.md`` says why.

The structured answer a report leads with is three CSVs (no Markdown to parse):
``recipe.csv`` (one decision per regime across training runs and test units, with effect, CI,
n runs, n units, p, run-to-run agreement and a sentence),
``conformal_summary.csv`` (per study and architecture: Dice lower bound, coverage with its CI,
status) and ``findings.csv`` (each published finding: reproduced yes / no / inconclusive /
not run, with effect, CI, n, p).
"""

from __future__ import annotations

import contextlib
from numbers import Integral, Real
from pathlib import Path

import pandas as pd

from segrobust import atomic, contract
from segrobust.analysis import (
    conformal,
    context,
    findings,
    recipe,
    robustness,
    shift_coverage,
    stats,
)
from segrobust.analysis.regime_ranges import regime_ranges
from segrobust.analysis.regimes import all_regimes

#: The settings ``run_analysis`` takes: the config's ``analysis`` section, whose schema states
#: each one's default and allowed range.
SETTINGS = (
    "baseline_arch", "fnr_level", "conformal_alpha", "n_bootstrap", "complexity_bins",
    "significance", "seed", "relative_ce_min_degradation", "min_cases", "noninferiority_margin",
    "min_effect",
)  # fmt: skip
#: The per-image columns the analysis reads: every identifying column and the Dice.
ANALYSED_COLUMNS = [c for c in contract.PER_IMAGE_COLUMNS if c not in contract.METRICS] + ["dice"]
OUTPUTS = [f"{name}.csv" for name in contract.ANALYSIS_TABLES] + list(contract.ANALYSIS_TEXTS)


def check_settings(settings: dict) -> dict:
    """Every setting present and checked; errors name the key and what is allowed (the schema
    checks the config too: this guards callers outside the workflow)."""
    unknown = sorted(set(settings) - set(SETTINGS))
    missing = sorted(set(SETTINGS) - set(settings))
    if unknown or missing:
        raise ValueError(
            f"analysis settings: unknown {unknown}, missing {missing}; the keys are "
            f"{', '.join(SETTINGS)} (the config's analysis section)"
        )
    merged = dict(settings)
    if not isinstance(merged["baseline_arch"], str) or not merged["baseline_arch"]:
        raise ValueError(
            f"analysis.baseline_arch must be an architecture name, got {merged['baseline_arch']!r}"
        )
    for key in ("fnr_level", "conformal_alpha", "significance"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < 1:
            raise ValueError(f"analysis.{key} must be a number in (0, 1), got {value!r}")
    for key, minimum in (("n_bootstrap", 1), ("complexity_bins", 1), ("seed", 0), ("min_cases", 1)):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
            raise ValueError(f"analysis.{key} must be an integer >= {minimum}, got {value!r}")
    for key in ("relative_ce_min_degradation", "noninferiority_margin", "min_effect"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 1:
            raise ValueError(f"analysis.{key} must be a number in [0, 1), got {value!r}")
    return merged


def _require(table: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}; it needs {columns}")


def context_ranges(per_image: pd.DataFrame, patches: pd.DataFrame | None) -> pd.DataFrame:
    """The one training-FBR range table of the context study (empty without its patches)."""
    has_context = (per_image["study"] == "context").any()
    if not has_context or patches is None or patches.empty:
        return pd.DataFrame(columns=context.FBR_RANGE_COLUMNS)
    return context.training_fbr_range(patches[patches["study"] == "context"])


def _conformal_tables(tables: dict, per_image, fnr, settings) -> None:
    sig, alpha = settings["significance"], settings["conformal_alpha"]
    tables["conformal_fnr.csv"] = conformal.conformal_fnr(fnr, settings["fnr_level"])
    with_bounds, calibration = conformal.calibrate_dice_bounds(per_image, alpha)
    tables["per_image_with_bounds.csv"] = with_bounds
    tables["coverage.csv"] = conformal.coverage_table(with_bounds, calibration, alpha, sig)
    tables["conformal_summary.csv"] = conformal.conformal_summary(with_bounds, calibration, alpha)


def _context_tables(tables: dict, per_image, ranges, settings) -> None:
    tables["context_fbr_range.csv"] = ranges
    if ranges.empty:
        tables["context_out_of_range.csv"] = pd.DataFrame(columns=context.OUT_OF_RANGE_COLUMNS)
    else:
        tables["context_out_of_range.csv"] = context.out_of_range_table(
            per_image, ranges, settings["n_bootstrap"], settings["seed"], settings["min_cases"]
        )
    tables["context_fbr_bins.csv"] = context.dice_by_fbr_bin(per_image, settings["complexity_bins"])


def _section(title: str, lines: list[str]) -> list[str]:
    return ["", f"## {title}", ""] + [f"- {line}" for line in lines]


def _shift_tables(tables: dict, applicability, patches, settings) -> list[str]:
    """The per-shift coverage and the runs' flag levels (empty without applicability rows);
    the notes' sentences on where the rating holds."""
    alpha = settings["conformal_alpha"]
    if applicability is None or applicability.empty:
        tables["shift_coverage.csv"] = pd.DataFrame(columns=shift_coverage.SHIFT_COVERAGE_COLUMNS)
        tables["flag_levels.csv"] = pd.DataFrame(columns=shift_coverage.FLAG_LEVEL_COLUMNS)
        return ["No applicability rows: shift_coverage.csv and flag_levels.csv are empty."]
    tables["shift_coverage.csv"] = shift_coverage.shift_coverage(applicability, patches, alpha)
    tables["flag_levels.csv"] = shift_coverage.flag_levels(
        applicability, alpha, shift_coverage.COVERAGE_TOLERANCE
    )
    return shift_coverage.rating_limit_statements(tables["shift_coverage.csv"])


def analyse(per_image, fnr, patches, settings, applicability=None) -> tuple[dict, list[str]]:
    """All tables (name -> DataFrame or text) and the notes, without writing anything."""
    notes: list[str] = []
    tables: dict = {}
    sig, n_boot, seed = settings["significance"], settings["n_bootstrap"], settings["seed"]
    perturbed = per_image["perturbation"].ne("none") & per_image["split"].eq("test")
    tables["robustness.csv"] = robustness.perturbation_robustness(per_image)
    tables["corruption_errors.csv"] = robustness.corruption_errors(
        per_image, settings["baseline_arch"], settings["relative_ce_min_degradation"]
    )
    if not perturbed.any():
        notes.append("No perturbed test rows: robustness.csv and corruption_errors.csv are empty.")
    tables["texture_trends.csv"] = robustness.texture_trends(per_image, settings["min_cases"])
    if tables["texture_trends.csv"].empty:
        notes.append("No texture-study test rows: texture_trends.csv is empty.")
    tables["pairwise_wilcoxon.csv"] = stats.pairwise_wilcoxon(per_image, sig)
    tables["friedman.csv"] = stats.friedman(per_image, sig)
    tables["rankings.csv"] = stats.rankings(per_image, n_boot, seed)
    tables["bootstrap_ci.csv"] = stats.bootstrap_ci(per_image, n_boot, seed)
    _conformal_tables(tables, per_image, fnr, settings)
    if tables["conformal_fnr.csv"].empty:
        notes.append("No FNR rows with a test split: conformal_fnr.csv is empty.")
    ranges = context_ranges(per_image, patches)
    if ranges.empty:
        notes.append(
            "No context-study rows or no training patches: context_fbr_range.csv and "
            "context_out_of_range.csv are empty, and there are no context regimes."
        )
    _context_tables(tables, per_image, ranges, settings)
    decisions = recipe.RecipeSettings(sig, settings["min_effect"], settings["min_cases"], n_boot)
    (
        tables["recipe.csv"],
        tables["recipe_comparisons.csv"],
        tables["recipe_rankings.csv"],
    ) = recipe.recipe_tables(per_image, ranges, settings["complexity_bins"], decisions, seed)
    tables["recipe.md"] = recipe.recipe_markdown(tables["recipe.csv"])
    tables["regime_ranges.csv"] = regime_ranges(
        all_regimes(per_image, ranges, settings["complexity_bins"])
    )
    tables["findings.csv"] = findings.findings(
        per_image,
        ranges,
        sig,
        settings["noninferiority_margin"],
        settings["min_cases"],
        settings["min_effect"],
    )
    friedman_notes = tables["friedman.csv"].drop_duplicates("study")["friedman_note"].tolist()
    notes += _section(
        "Findings of the papers", findings.findings_statements(tables["findings.csv"])
    )
    notes += _section("Friedman / Nemenyi blocks", friedman_notes or ["No study to rank."])
    notes += _section(
        "Perturbations that make the task easier",
        robustness.easier_statements(tables["robustness.csv"]),
    )
    notes += _section(
        "Conformal risk control of the false-negative rate",
        conformal.fnr_statements(tables["conformal_fnr.csv"]),
    )
    notes += _section(
        "Conformal Dice bound coverage", conformal.coverage_statements(tables["coverage.csv"])
    )
    notes += _section(
        "Where the confidence rating holds, per kind of shift",
        _shift_tables(tables, applicability, patches, settings),
    )
    return tables, notes


def run_analysis(
    per_image: pd.DataFrame,
    fnr: pd.DataFrame,
    patches: pd.DataFrame | None,
    settings: dict | None,
    out_dir,
    applicability: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write every analysis table and figure into ``out_dir``; return name -> path.

    Args:
        per_image: per-image rows (contract 4) of every study present.
        fnr: the long-form FNR table with run columns (study, dataset, arch, seed, patch, ...).
        patches: training patches (``patches.csv`` rows with run columns) or None.
        settings: the config's ``analysis`` section (the keys of ``SETTINGS``).
        out_dir: the output folder (created if missing).
        applicability: the runs' ``applicability.csv`` rows (``contract.APPLICABILITY_COLUMNS``)
            for the per-shift coverage, or None (its tables are then empty).
    """
    settings = check_settings(settings)
    _require(per_image, ANALYSED_COLUMNS, "per-image")
    _require(fnr, list(contract.FNR_COLUMNS), "fnr")
    if patches is not None:
        _require(patches, list(contract.PATCH_COLUMNS), "patches")
    if applicability is not None:
        _require(applicability, list(contract.APPLICABILITY_COLUMNS), "applicability")
    tables, notes = analyse(per_image, fnr, patches, settings, applicability)
    tables["notes.md"] = "# Analysis notes\n\n" + "\n".join(notes) + "\n"
    out = Path(out_dir)
    # Every output is staged and moved into place only when all of them succeeded.
    with contextlib.ExitStack() as outputs:
        staged = {name: outputs.enter_context(atomic.atomic_file(out / name)) for name in OUTPUTS}
        for name, value in tables.items():
            text = value if isinstance(value, str) else value.to_csv(index=False)
            staged[name].write_text(text)
    return {name: out / name for name in OUTPUTS}
