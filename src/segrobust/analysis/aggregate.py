"""Aggregation of per-image metric tables (contract 4) into study tables.

Every aggregate of segrobust is computed from the per-image rows the evaluation writes, so a
figure, a summary and a statistical test always agree on what was measured. This module reads and
concatenates those tables, summarises them per group (mean, sd and n over images and seeds) and
builds the papers' table of mean Dice per named perturbation level.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from segrobust.contract import CLEAN_LEVEL, LEVEL_ORDER, METRICS, read_table

STAT_NAMES = {"mean": "mean", "std": "sd", "count": "n"}
"""pandas aggregation name -> suffix of the summary column."""

DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "texture": ("direction", "train_alpha", "test_alpha", "arch"),
    "perturbation": ("dataset", "perturbation", "severity", "level", "arch"),
    "context": ("dataset", "arch", "patch"),
}
"""Default `summarise` groups per study: the experimental factors each study varies."""


def concat_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Read CSV tables with the same columns (`contract.read_table`) and stack them.

    Returns:
        The rows of every file, in the order of ``paths``, with a fresh index.

    Raises:
        ValueError: no paths, or a file whose columns differ from the first file's.
        FileNotFoundError: a path that does not exist (named in the message).
    """
    if not paths:
        raise ValueError("concat_tables needs at least one CSV path")
    frames = [read_table(path) for path in paths]
    columns = list(frames[0].columns)
    for path, frame in zip(paths, frames, strict=True):
        if list(frame.columns) != columns:
            raise ValueError(
                f"{path}: columns {list(frame.columns)} differ from {paths[0]}'s {columns}"
            )
    return pd.concat(frames, ignore_index=True)


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a ValueError naming the missing columns of ``df`` and the ones it has."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; the table has {list(df.columns)}")


def select_split(df: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Rows of one split (`test` or `calibration`), or all rows when ``split`` is None.

    Raises:
        ValueError: no row has that split (the message lists the splits present).
    """
    if split is None:
        return df
    require_columns(df, ["split"], "selecting a split")
    rows = df[df["split"] == split]
    if rows.empty:
        raise ValueError(
            f"no rows with split {split!r}; splits present: {sorted(df['split'].dropna().unique())}"
        )
    return rows


def default_groups(per_image: pd.DataFrame) -> tuple[str, ...]:
    """The `DEFAULT_GROUPS` of the single study in ``per_image`` (its `study` column)."""
    require_columns(per_image, ["study"], "choosing default groups")
    studies = sorted(per_image["study"].dropna().unique())
    if len(studies) != 1:
        raise ValueError(
            f"default groups need exactly one study in the table, found {studies}; pass `by`"
        )
    study = studies[0]
    if study not in DEFAULT_GROUPS:
        raise ValueError(
            f"no default groups for study {study!r}; allowed: {sorted(DEFAULT_GROUPS)}; pass `by`"
        )
    return DEFAULT_GROUPS[study]


def summarise(
    per_image: pd.DataFrame,
    by: Sequence[str] | None = None,
    *,
    metrics: Sequence[str] = METRICS,
    split: str | None = "test",
) -> pd.DataFrame:
    """Mean, sample sd and n of each metric per group, over images and seeds.

    Args:
        per_image: contract-4 rows.
        by: grouping columns; None uses `DEFAULT_GROUPS` of the table's (single) study.
        metrics: metric columns to summarise.
        split: keep only this split (default `test`: the calibration split is held out for the
            conformal bounds and must not mix into reported performance); None keeps all rows.

    Returns:
        One row per group (missing group values, e.g. an empty `level`, form their own group),
        sorted by the group columns, with columns ``by`` then ``<metric>_mean``, ``<metric>_sd``
        (ddof=1; NaN for a single value) and ``<metric>_n`` (non-missing values) per metric.
    """
    by = list(default_groups(per_image) if by is None else by)
    require_columns(per_image, [*by, *metrics], "summarise")
    rows = select_split(per_image, split)
    grouped = rows.groupby(by, dropna=False, sort=True)[list(metrics)]
    stats = grouped.agg(["mean", "std", "count"])
    stats.columns = [f"{metric}_{STAT_NAMES[stat]}" for metric, stat in stats.columns]
    return stats.reset_index()


def with_named_levels(per_image: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``per_image`` whose clean rows (severity 0 / perturbation `none` / condition
    `clean`) have `level` 'Unperturbed', so the clean baseline takes its place among the levels."""
    require_columns(per_image, ["level", "condition"], "naming levels")
    out = per_image.copy()
    clean = out["condition"] == "clean"
    if "perturbation" in out.columns:
        clean |= out["perturbation"] == "none"
    out["level"] = out["level"].astype("object")
    out.loc[clean, "level"] = CLEAN_LEVEL
    return out


def level_table(
    per_image: pd.DataFrame, *, metric: str = "dice", split: str | None = "test"
) -> pd.DataFrame:
    """The papers' table: mean ``metric`` per (dataset, arch) and named level.

    Returns columns dataset, arch, Hardest, Harder, Unperturbed, Easier, Easiest; one row per
    (dataset, arch), sorted. Rows whose `level` is not one of `LEVEL_ORDER` (perturbations
    without a named level) are left out; clean rows count as 'Unperturbed'. Every level is a
    column (NaN where the table has no rows of that level), so the table keeps the papers' shape
    whatever perturbations a config runs.
    """
    require_columns(per_image, ["dataset", "arch", metric], "level_table")
    rows = with_named_levels(select_split(per_image, split))
    unknown = set(rows["level"].dropna()) - set(LEVEL_ORDER) - {"", "none"}
    if unknown:
        raise ValueError(f"unknown level names {sorted(unknown)}; allowed: {list(LEVEL_ORDER)}")
    rows = rows[rows["level"].isin(LEVEL_ORDER)]
    table = rows.pivot_table(
        index=["dataset", "arch"], columns="level", values=metric, aggfunc="mean", sort=True
    )
    table = table.reindex(columns=list(LEVEL_ORDER))
    table.columns.name = None
    return table.reset_index()
