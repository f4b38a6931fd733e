"""Where the confidence rating holds: coverage of the Dice bound per kind of shift.

Every model run's evaluation records each image's shift kind, role, Dice, quality estimate and
applicability p-value (``applicability.csv``, ``segrobust.evaluation.applicability_recorder``).
Per run, the flag level at the analysis' alpha is chosen on the run's *tuning* images exactly as
``predict`` chooses it from the calibration file (``segrobust.guarantees.applicability``), and the
bound from the run's in-domain calibration scores exactly as the analysis and ``predict`` compute
it (``segrobust.guarantees.kernel``). On the *report* images (the other half, never used to
choose anything) the table ``shift_coverage.csv`` then says, per (study, architecture, kind):

* how many images the check flags (no rating shown) and how many pass;
* the coverage P(Dice >= bound) among the images that pass, with its Clopper-Pearson 95% CI, and
  the coverage the bound would have had without the check (all images);
* ``status``: ``holds`` (passing coverage >= 1 - alpha - tolerance), ``below target`` (images
  pass and their coverage is lower: the report's Answer says so), ``withheld`` (every image
  flagged), or ``no bound`` (too few calibration images).

The kinds are the run's conditions (``segrobust.spec.shifts.shift_kind``: in-domain, other
alphas, each perturbation and severity, the second texture generator) and, across the
in-domain and second-generator images, those whose true foreground ratio lies below or above the
training images' 5th-95th percentile range (``segrobust.analysis.context.training_fbr_range``).

The unit. Runs of one architecture (seeds, training datasets) are pooled; an image seen by
several runs counts once in the CI's n (its independent unit, ``segrobust.analysis.units``):
the coverage is the mean over (run, image) pairs and the CI uses coverage x units as the count,
which is conservative, as in ``conformal.conformal_summary``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segrobust import contract
from segrobust.analysis import conformal
from segrobust.analysis.context import training_fbr_range
from segrobust.analysis.units import independent_unit
from segrobust.guarantees.applicability import (
    COVERAGE_TOLERANCE,
    FEATURE_STATISTICS,
    choose_flag_level,
    covered,
)
from segrobust.guarantees.kernel import conformal_quantile
from segrobust.spec.shifts import AUTHORS_KIND, IN_DOMAIN_KIND

RUN_KEYS = list(contract.RUN_KEYS)
SHIFT_COVERAGE_COLUMNS = [
    "study", "arch", "kind", "n_runs", "n_images", "n_units", "n_flagged", "fraction_flagged",
    "n_passing", "covered", "coverage", "coverage_ci_low", "coverage_ci_high", "coverage_all",
    "target", "tolerance", "status",
]  # fmt: skip
FLAG_LEVEL_COLUMNS = [*RUN_KEYS, "n_calibration", "q_hat", "flag_level", "reason"]

HOLDS, BELOW, WITHHELD, NO_BOUND = "holds", "below target", "withheld", "no bound"
#: Kinds whose images are also split by their true foreground ratio.
FG_SPLIT_KINDS = (IN_DOMAIN_KIND, AUTHORS_KIND)
_STAT_COLUMNS = {"complexity": "mask_complexity"}


def _calibration(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["role"] == "calibration") & rows["in_domain"].astype(bool)]


def reference_count(rows: pd.DataFrame) -> int:
    """Calibration images of a run whose every label-free statistic is defined: those the
    applicability check was fitted on."""
    cal = _calibration(rows)
    columns = [_STAT_COLUMNS.get(c, c) for c in FEATURE_STATISTICS]
    return int(np.isfinite(cal[columns].to_numpy(np.float64)).all(axis=1).sum())


def flag_levels(applicability: pd.DataFrame, alpha: float, tolerance: float) -> pd.DataFrame:
    """Per run: the calibration size, q-hat and the flag level at ``alpha`` and why."""
    out = []
    for key, rows in applicability.groupby(RUN_KEYS, sort=True, dropna=False):
        cal = _calibration(rows).dropna(subset=["quality", "dice"])
        scores = (cal["quality"] - cal["dice"]).to_numpy(np.float64)
        tuning = rows[rows["role"] == "tuning"]
        level = choose_flag_level(tuning, scores, alpha, reference_count(rows), tolerance=tolerance)
        out.append(
            dict(
                zip(RUN_KEYS, key, strict=True),
                n_calibration=len(scores),
                q_hat=conformal_quantile(scores, alpha),
                flag_level=level.level,
                reason=level.reason,
            )
        )
    return pd.DataFrame(out, columns=FLAG_LEVEL_COLUMNS)


def report_rows(applicability: pd.DataFrame, levels: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The report images with ``passed`` (p-value above the run's level) and ``covered``."""
    out = []
    for key, rows in applicability.groupby(RUN_KEYS, sort=True, dropna=False):
        level = levels.set_index(RUN_KEYS).loc[key]
        cal = _calibration(rows).dropna(subset=["quality", "dice"])
        report = rows[rows["role"] == "report"]
        p = report["p_value"].to_numpy(np.float64)
        out.append(
            report.assign(
                passed=np.isfinite(p) & (p > level["flag_level"]),
                covered=covered(
                    report["quality"], report["dice"], cal["quality"] - cal["dice"], alpha
                ),
                bound_defined=np.isfinite(level["q_hat"]),
            )
        )
    if not out:
        return applicability.assign(passed=False, covered=False, bound_defined=False).iloc[:0]
    return pd.concat(out, ignore_index=True)


def foreground_kinds(rows: pd.DataFrame, patches: pd.DataFrame | None) -> pd.DataFrame:
    """Copies of the in-domain and second-generator report rows whose true foreground ratio is
    outside the training range, their kind renamed (``<kind>, fg ratio below/above training``)."""
    if patches is None or patches.empty or rows.empty:
        return rows.iloc[:0]
    ranges = training_fbr_range(patches)
    ranges = ranges.assign(patch=ranges["patch"].astype(str))
    base = rows[rows["kind"].isin(FG_SPLIT_KINDS)].assign(patch=lambda r: r["patch"].astype(str))
    merged = base.merge(ranges[["study", "dataset", "patch", "fbr_low", "fbr_high"]],
                        on=["study", "dataset", "patch"], how="inner")  # fmt: skip
    below = merged[merged["fg_ratio"] < merged["fbr_low"]]
    above = merged[merged["fg_ratio"] > merged["fbr_high"]]
    parts = [
        below.assign(kind=below["kind"] + ", fg ratio below training range"),
        above.assign(kind=above["kind"] + ", fg ratio above training range"),
    ]
    return pd.concat(parts, ignore_index=True)[rows.columns]


def _summary(rows: pd.DataFrame, target: float, tolerance: float) -> dict:
    n_images = len(rows)
    passing = rows[rows["passed"]]
    common = dict(
        n_runs=len(rows[RUN_KEYS].drop_duplicates()),
        n_images=n_images,
        n_units=independent_unit(rows).nunique() if n_images else 0,
        n_flagged=int(n_images - len(passing)),
        fraction_flagged=(n_images - len(passing)) / n_images if n_images else np.nan,
        n_passing=len(passing),
        coverage_all=float(rows["covered"].mean()) if n_images else np.nan,
        target=target,
        tolerance=tolerance,
    )
    if not rows["bound_defined"].all():
        return dict(common, covered=np.nan, coverage=np.nan, coverage_ci_low=np.nan,
                    coverage_ci_high=np.nan, status=NO_BOUND)  # fmt: skip
    if passing.empty:
        return dict(common, covered=0, coverage=np.nan, coverage_ci_low=np.nan,
                    coverage_ci_high=np.nan, status=WITHHELD)  # fmt: skip
    coverage = float(passing["covered"].mean())
    units = independent_unit(passing).nunique()
    low, high = conformal.clopper_pearson(coverage * units, units)
    status = HOLDS if coverage >= target - tolerance - 1e-12 else BELOW
    return dict(
        common,
        covered=int(passing["covered"].sum()),
        coverage=coverage,
        coverage_ci_low=low,
        coverage_ci_high=high,
        status=status,
    )


def shift_coverage(
    applicability: pd.DataFrame,
    patches: pd.DataFrame | None,
    alpha: float,
    tolerance: float = COVERAGE_TOLERANCE,
) -> pd.DataFrame:
    """The per-shift coverage table (module docstring), columns ``SHIFT_COVERAGE_COLUMNS``."""
    if applicability.empty:
        return pd.DataFrame(columns=SHIFT_COVERAGE_COLUMNS)
    levels = flag_levels(applicability, alpha, tolerance)
    rows = report_rows(applicability, levels, alpha)
    rows = pd.concat([rows, foreground_kinds(rows, patches)], ignore_index=True)
    out = []
    for (study, arch, kind), group in rows.groupby(["study", "arch", "kind"], sort=True):
        out.append(dict(study=study, arch=arch, kind=kind, **_summary(group, 1 - alpha, tolerance)))
    table = pd.DataFrame(out, columns=SHIFT_COVERAGE_COLUMNS)
    return table.sort_values(["study", "arch", "kind"], key=_kind_order).reset_index(drop=True)


def _kind_order(column: pd.Series) -> pd.Series:
    """In-domain first within each (study, arch), then the other kinds by name."""
    if column.name != "kind":
        return column
    return column.map(lambda kind: (kind != IN_DOMAIN_KIND, kind))


def _pooled_status(rows: pd.DataFrame) -> str:
    """One status of a kind across a study's architectures: the worst of theirs."""
    for status in (BELOW, NO_BOUND):
        if (rows["status"] == status).any():
            return status
    if (rows["status"] == WITHHELD).all():
        return WITHHELD
    return HOLDS


def rating_limits(table: pd.DataFrame, study: str) -> str:
    """ "Holds for: ...; withheld for: ..." for one study, from the per-shift table.

    A kind holds when the rating held for every architecture where images passed; it is
    withheld when every image was flagged for every architecture; a kind where passing images
    were covered less than the target for some architecture is named with them.
    """
    rows = table[table["study"] == study]
    if rows.empty:
        return f"{study} study: no per-shift coverage measured."
    holds, withheld, below, no_bound = [], [], [], []
    for kind, group in rows.groupby("kind", sort=False):
        status = _pooled_status(group)
        rated = 1 - group["fraction_flagged"].mean()
        if status == HOLDS:
            holds.append(f"{kind} ({rated:.0%} rated)")
        elif status == WITHHELD:
            withheld.append(kind)
        elif status == NO_BOUND:
            no_bound.append(kind)
        else:
            archs = group[group["status"] == BELOW]
            detail = ", ".join(f"{r.arch} {r.coverage:.2f}" for r in archs.itertuples())
            below.append(f"{kind} ({detail})")
    target = rows["target"].iloc[0] - rows["tolerance"].iloc[0]
    parts = [f"holds for: {', '.join(holds) if holds else 'no kind'}"]
    if withheld:
        parts.append(f"withheld (every image flagged) for: {', '.join(withheld)}")
    if below:
        parts.append(f"BELOW {target:.2f} among rated images for: {'; '.join(below)}")
    if no_bound:
        parts.append(f"no bound (too few calibration images) for: {', '.join(no_bound)}")
    return f"{study.capitalize()} study, confidence rating " + "; ".join(parts) + "."


def rating_limit_statements(table: pd.DataFrame) -> list[str]:
    """:func:`rating_limits` of every study in the table."""
    studies = [s for s in contract.STUDIES if s in set(table["study"])]
    return [rating_limits(table, study) for study in studies] or ["No per-shift coverage measured."]
