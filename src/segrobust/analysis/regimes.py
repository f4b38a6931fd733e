"""The recipe's regimes: which per-image rows answer which question.

Regimes (``regime_kind``):

* ``complexity`` (texture study): quantile bins of the test images' LBP complexity (bits), over
  the in-domain test rows only (models tested on their own training alpha); the bin's edges are
  the numeric columns ``low`` and ``high`` (the first bin includes ``low``, every bin its
  ``high``: ``pandas.qcut``), so an image can be mapped to its regime by its complexity (empty
  for the other regime kinds);
* ``shift`` (texture study): one regime per (blend direction, train alpha -> test alpha) with
  train != test: the models trained at one alpha, tested at another;
* ``perturbation``: one regime per (perturbation, severity) of the perturbation study, with the
  papers' level name where one applies, and the clean test set (``Unperturbed``);
* ``context``: one regime per (dataset, patch size, test image inside / outside the training
  patches' FBR range of that patch size; ``segrobust.analysis.context``).

The decision per regime is ``segrobust.analysis.recipe``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segrobust.analysis.context import label_out_of_range


@dataclass
class Regime:
    """One recipe question: its label and the per-image rows that answer it."""

    study: str
    kind: str
    label: str
    rows: pd.DataFrame
    low: float = np.nan  # numeric bin edges of a complexity regime (NaN for other kinds)
    high: float = np.nan
    dataset: str = ""  # a context regime's dataset and patch size (empty for other kinds)
    patch: str = ""
    outside: bool = False  # a context regime: the test images outside the training range


def _alpha(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def complexity_regimes(texture: pd.DataFrame, n_bins: int) -> list[Regime]:
    """Quantile bins of complexity over the in-domain texture test rows.

    The bin edges are quantiles of the distinct in-domain test images' complexity (each
    (test dataset, image) once, whatever the number of architectures and seeds).
    """
    rows = texture[_alpha(texture["train_alpha"]) == _alpha(texture["test_alpha"])]
    rows = rows.dropna(subset=["complexity"])
    if rows.empty:
        return []
    images = rows.groupby(["test_dataset", "image_id"])["complexity"].mean()
    if images.nunique() > 1:
        codes, edges = pd.qcut(images, q=n_bins, labels=False, retbins=True, duplicates="drop")
    else:
        codes, edges = pd.Series(0, index=images.index), np.repeat(images.iloc[0], 2)
    bin_of = pd.Series(np.asarray(codes, dtype=int), index=images.index)
    keyed = pd.MultiIndex.from_frame(rows[["test_dataset", "image_id"]])
    row_bins = bin_of.reindex(keyed).to_numpy()
    regimes = []
    for code in sorted(set(row_bins)):
        label = f"complexity {edges[code]:.2f}-{edges[code + 1]:.2f} bits"
        low, high = float(edges[code]), float(edges[code + 1])
        regimes.append(Regime("texture", "complexity", label, rows[row_bins == code], low, high))
    return regimes


def shift_regimes(texture: pd.DataFrame) -> list[Regime]:
    """One regime per (direction, train alpha -> test alpha), train != test."""
    train, test = _alpha(texture["train_alpha"]), _alpha(texture["test_alpha"])
    rows = texture[(train != test) & train.notna() & test.notna()]
    rows = rows.assign(_train=train, _test=test)
    regimes = []
    for (direction, a, b), group in rows.groupby(["direction", "_train", "_test"], sort=True):
        harder = "harder" if b > a else "easier"
        label = f"{direction} blend, trained at alpha {a:g}, tested at alpha {b:g} ({harder})"
        regimes.append(Regime("texture", "shift", label, group.drop(columns=["_train", "_test"])))
    return regimes


def perturbation_label(perturbation: str, severity: int, level) -> str:
    """``speckle severity 3 (Harder)``, without the level when the rows have none."""
    if perturbation == "none":
        return "clean test images (Unperturbed)"
    text = f"{perturbation} severity {int(severity)}"
    return f"{text} ({level})" if isinstance(level, str) and level else text


_PERTURBATION_LABEL = re.compile(r"(?P<perturbation>\S+) severity (?P<severity>\d+)(?: \(.*\))?")


def parse_perturbation_label(label: str) -> tuple[str, int] | None:
    """``speckle severity 3 (Harder)`` -> ``("speckle", 3)``: the inverse of
    `perturbation_label` for a perturbed regime; None for the clean one or another text."""
    match = _PERTURBATION_LABEL.fullmatch(str(label))
    if match is None:
        return None
    return match["perturbation"], int(match["severity"])


def perturbation_regimes(perturbation_rows: pd.DataFrame) -> list[Regime]:
    """One regime per (perturbation, severity), the clean test set first."""
    rows = perturbation_rows.assign(_clean=perturbation_rows["perturbation"] != "none")
    regimes = []
    keys = ["_clean", "perturbation", "severity"]
    for (_, perturbation, severity), group in rows.groupby(keys, sort=True):
        levels = group["level"].dropna()
        level = levels.iloc[0] if len(levels) else ""
        label = perturbation_label(perturbation, severity, level)
        regimes.append(Regime("perturbation", "perturbation", label, group.drop(columns="_clean")))
    return regimes


def context_regimes(per_image: pd.DataFrame, fbr_ranges: pd.DataFrame) -> list[Regime]:
    """One regime per (dataset, patch size, inside / outside the training FBR range)."""
    rows = label_out_of_range(per_image, fbr_ranges)
    if rows.empty:
        return []
    rows = rows.assign(_patch=pd.to_numeric(rows["patch"], errors="coerce"))
    regimes = []
    for (dataset, _, patch, outside), group in rows.groupby(
        ["dataset", "_patch", "patch", "outside"], sort=True, dropna=False
    ):
        low, high = group["fbr_low"].iloc[0], group["fbr_high"].iloc[0]
        where = "outside" if outside else "inside"
        label = (
            f"{dataset}, patch {patch}, test foreground ratio {where} the training range "
            f"{low:.3f}-{high:.3f}"
        )
        kept = group.drop(columns="_patch")
        regimes.append(
            Regime(
                "context",
                "context",
                label,
                kept,
                dataset=str(dataset),
                patch=str(patch),
                outside=bool(outside),
            )
        )
    return regimes


def all_regimes(per_image: pd.DataFrame, fbr_ranges, n_bins: int) -> list[Regime]:
    """Every regime of the test split, in report order (kinds, then their natural order)."""
    test = per_image[per_image["split"] == "test"]
    texture = test[test["study"] == "texture"]
    regimes = complexity_regimes(texture, n_bins) + shift_regimes(texture)
    regimes += perturbation_regimes(test[test["study"] == "perturbation"])
    if fbr_ranges is not None and not fbr_ranges.empty:
        regimes += context_regimes(test, fbr_ranges)
    return regimes
