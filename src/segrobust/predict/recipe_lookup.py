"""The recipe's answer for one new image: the regime it falls in and that regime's decision.

The recipe (``results/analysis/recipe.csv``, ``segrobust.analysis.recipe``) decides per regime
which architecture to use; ``regime_ranges.csv`` beside it (``segrobust.analysis.regime_ranges``)
says what a new image must measure to belong to a regime. Only the regimes of the study the
models were trained in are consulted (a perturbation model is never told the texture study's
answer), and, where a study's regimes are per training dataset, only those of the models'
dataset:

* texture study: the complexity bin holding the image's LBP complexity. The bins are of label
  complexity; an unlabelled image's complexity is measured under a predicted mask, and the
  answer says so (``Measured.mask``);
* perturbation study: the regimes (perturbation x severity, and clean) whose test images'
  observed range of every statistic (intensity-noise estimate, how it grows with brightness)
  holds the image's
  values; where several do, the nearest by standardised distance (`standardised_distance`), and
  the answer says how many held it; none: "no regime";
* context study: per patch size, inside or outside the training foreground-ratio range, from the
  image's predicted foreground ratio.

Values are compared with the ranges unrounded and printed with the digits that show where they
stand (`segrobust.digits.apart`). Outside every regime the recipe says nothing about the image,
and the answer says why instead of extrapolating.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from segrobust.analysis.recipe import EQUIVALENT, RECOMMENDED
from segrobust.analysis.regime_ranges import BIN, INSIDE, OBSERVED, OUTSIDE, REGIME_RANGE_COLUMNS
from segrobust.digits import apart
from segrobust.report.readable import readable

#: The mapping table's file name, beside ``recipe.csv`` (both written by rule ``analyze``).
RANGES_FILE = "regime_ranges.csv"

#: Columns of recipe.csv the lookup reads.
NEEDED_COLUMNS: tuple[str, ...] = (
    "study",
    "regime_kind",
    "regime",
    "decision",
    "recommended",
    "equivalent",
    "leader",
    "mean_dice",
    "reason",
    "sentence",
)

#: How each statistic is named where a person reads it.
STATISTIC_NAMES = {
    "complexity": "complexity",
    "noise_sigma": "noise",
    "noise_brightness_ratio": "bright/dark noise ratio",
    "fg_ratio": "predicted foreground ratio",
}
UNITS = {"complexity": " bits"}

#: The regime kinds a new image can be mapped to, per study (``shift`` cannot: its test alpha
#: is not measurable on one image).
MAPPED_KINDS = {"texture": "complexity", "perturbation": "perturbation", "context": "context"}


@dataclass(frozen=True)
class Measured:
    """What predict measured on one new image, without a label.

    ``complexity`` and ``fg_ratio`` are taken under a predicted mask, described by ``mask``
    (e.g. "the mean predicted mask of 2 models"); ``noise_sigma`` and ``noise_brightness_ratio``
    are the image's own.
    """

    complexity: float
    noise_sigma: float
    noise_brightness_ratio: float
    fg_ratio: float
    mask: str

    def value(self, statistic: str) -> float:
        return float(getattr(self, statistic))


@dataclass(frozen=True)
class RegimeDecision:
    """One recipe row: a regime and the study's decision there."""

    kind: str
    label: str
    decision: str
    recommended: str  # empty unless ``decision`` is recommended
    equivalent: tuple[str, ...]  # the equivalent set (empty unless equivalent)
    leader: str
    mean_dice: float  # the leader's mean Dice in the regime
    reason: str
    sentence: str

    @property
    def shown(self) -> str:
        """The regime's label as a person reads it (display names)."""
        return readable(self.label)


@dataclass(frozen=True)
class RecipeAnswer:
    """Where one image falls: the ``regime`` (None: none applies) and ``rule``, how it was
    placed there ("noise 0.21 within 0.18 to 0.35") or why no regime applies."""

    regime: RegimeDecision | None
    rule: str

    @property
    def recommended_arch(self) -> str:
        """The architecture the recipe recommends for the image's regime; empty if none."""
        if self.regime is None or self.regime.decision != RECOMMENDED:
            return ""
        return self.regime.recommended


def _text(value) -> str:
    return "" if pd.isna(value) else str(value)


def _within(statistic: str, value: float, low: float, high: float, where: str = "") -> str:
    shown, lo, hi = apart(value, low, high)
    unit = UNITS.get(statistic, "")
    return f"{STATISTIC_NAMES[statistic]} {shown}{unit} within {lo} to {hi}{unit}{where}"


def _outside(statistic: str, value: float, low: float, high: float, what: str) -> str:
    shown, lo, hi = apart(value, low, high)
    unit = UNITS.get(statistic, "")
    return f"{STATISTIC_NAMES[statistic]} {shown}{unit} outside {what} {lo} to {hi}{unit}"


def standardised_distance(values: Mapping[str, float], ranges: pd.DataFrame) -> float:
    """Distance of an image's ``values`` from a perturbation regime's test images: the root of
    the summed squared z-scores ``(value - mean) / sd`` over the regime's ``observed`` rows (a
    diagonal Mahalanobis distance: a statistic that varies little inside a regime weighs more).
    A regime of one image (no sd) is at distance 0 from its own values only."""
    total = 0.0
    for row in ranges.itertuples(index=False):
        gap = float(values[row.statistic]) - float(row.mean)
        spread = float(row.sd) if np.isfinite(row.sd) and row.sd > 0 else 0.0
        if spread:
            total += (gap / spread) ** 2
        elif gap:
            total = math.inf
    return math.sqrt(total)


class StudyRecipe:
    """The regimes of one study (and training dataset) and how a new image maps to them."""

    def __init__(
        self,
        study: str,
        dataset: str,
        decisions: Mapping[str, RegimeDecision],
        ranges: pd.DataFrame,
        source: str,
    ) -> None:
        self.study, self.dataset, self.source = study, dataset, source
        self.decisions = dict(decisions)
        self.ranges = ranges

    @classmethod
    def read(cls, path: str | os.PathLike, study: str, dataset: str) -> StudyRecipe:
        """The regimes of ``study`` from ``recipe.csv`` and ``regime_ranges.csv`` beside it.

        Raises:
            FileNotFoundError / ValueError: naming the file, when one is missing or lacks
                columns (a recipe written before they were added: re-run rule analyze).
        """
        path = Path(path)
        table = _read(path, NEEDED_COLUMNS)
        ranges = _read(path.with_name(RANGES_FILE), REGIME_RANGE_COLUMNS)
        kind = MAPPED_KINDS.get(study)
        rows = table[(table["study"] == study) & (table["regime_kind"] == kind)]
        decisions = {
            str(r.regime): RegimeDecision(
                kind=str(r.regime_kind),
                label=str(r.regime),
                decision=str(r.decision),
                recommended=_text(r.recommended),
                equivalent=tuple(a.strip() for a in _text(r.equivalent).split(",") if a.strip()),
                leader=_text(r.leader),
                mean_dice=float(r.mean_dice),
                reason=_text(r.reason),
                sentence=_text(r.sentence),
            )
            for r in rows.itertuples(index=False)
        }
        ranges = ranges[(ranges["study"] == study) & ranges["regime"].isin(list(decisions))]
        return cls(study, dataset, decisions, ranges, str(path))

    def answer(self, measured: Measured, patch: str | None = None) -> RecipeAnswer:
        """The regime of an image measuring ``measured`` (``patch``: the models' patch size,
        for the context study), or why there is none."""
        if not self.decisions:
            return RecipeAnswer(
                None, f"the recipe has no {self.study} regime a new image can be mapped to"
            )
        if self.study == "texture":
            return self._complexity(measured)
        if self.study == "perturbation":
            return self._perturbation(measured)
        return self._context(measured, patch)

    def _regime(self, label: str, rule: str) -> RecipeAnswer:
        return RecipeAnswer(self.decisions[label], rule)

    def _complexity(self, measured: Measured) -> RecipeAnswer:
        bins = self.ranges[self.ranges["rule"] == BIN].sort_values("low")
        value = measured.complexity
        where = f" under {measured.mask}"
        if not math.isfinite(value):
            return RecipeAnswer(
                None, f"complexity undefined under {measured.mask} (empty or full): no regime"
            )
        for i, row in enumerate(bins.itertuples(index=False)):
            above = value >= row.low if i == 0 else value > row.low
            if above and value <= row.high:
                return self._regime(
                    row.regime, _within("complexity", value, row.low, row.high, where)
                )
        low, high = float(bins["low"].min()), float(bins["high"].max())
        return RecipeAnswer(
            None, _outside("complexity", value, low, high, "the bins'") + f"{where}: no regime"
        )

    def _perturbation(self, measured: Measured) -> RecipeAnswer:
        observed = self.ranges[
            (self.ranges["rule"] == OBSERVED) & (self.ranges["dataset"] == self.dataset)
        ]
        if observed.empty:
            return RecipeAnswer(
                None,
                f"the recipe has no perturbation regime measured on "
                f"dataset {self.dataset}: no regime",
            )
        values = {s: measured.value(s) for s in observed["statistic"].unique()}
        undefined = [STATISTIC_NAMES[s] for s, v in values.items() if not math.isfinite(v)]
        if undefined:
            return RecipeAnswer(
                None, f"{', '.join(undefined)} undefined under {measured.mask}: no regime"
            )
        holding = []
        for label, rows in observed.groupby("regime", sort=False):
            inside = all(
                r.low <= values[r.statistic] <= r.high for r in rows.itertuples(index=False)
            )
            if inside:
                holding.append((standardised_distance(values, rows), label, rows))
        if not holding:
            bounds = {
                s: rows[["low", "high"]].to_numpy().ravel()
                for s, rows in observed.groupby("statistic")
            }
            measured_text = ", ".join(
                f"{STATISTIC_NAMES[s]} {apart(v, *bounds[s])[0]}{UNITS.get(s, '')}"
                for s, v in values.items()
            )
            return RecipeAnswer(
                None,
                f"{measured_text}: outside every regime's observed range "
                f"on {self.dataset}: no regime",
            )
        distance, label, rows = min(holding, key=lambda item: item[0])
        rule = ", ".join(
            _within(r.statistic, values[r.statistic], r.low, r.high)
            for r in rows.itertuples(index=False)
        )
        if len(holding) > 1:
            rule += f" (nearest by standardised distance of {len(holding)} regimes holding it)"
        return self._regime(label, rule)

    def _context(self, measured: Measured, patch: str | None) -> RecipeAnswer:
        rows = self.ranges[
            (self.ranges["dataset"] == self.dataset) & (self.ranges["patch"] == str(patch))
        ]
        if rows.empty:
            return RecipeAnswer(
                None,
                f"the recipe has no context regime of dataset "
                f"{self.dataset} at patch {patch}: no regime",
            )
        value = measured.fg_ratio
        if not math.isfinite(value):
            return RecipeAnswer(None, "predicted foreground ratio undefined: no regime")
        low, high = float(rows["low"].iloc[0]), float(rows["high"].iloc[0])
        side = INSIDE if low <= value <= high else OUTSIDE
        match = rows[rows["rule"] == side]
        training = f"the training range of patch {patch}"
        if side == INSIDE:
            rule = _within("fg_ratio", value, low, high, f", {training}")
        else:
            rule = _outside("fg_ratio", value, low, high, training)
        if match.empty:
            return RecipeAnswer(None, f"{rule}; no test image was there: no regime")
        return self._regime(match["regime"].iloc[0], rule)


def _read(path: Path, columns) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(
            f"recipe table not found: {path} (rule analyze writes it with recipe.csv)"
        )
    header = pd.read_csv(path, nrows=0).columns
    numbers = ("low", "high", "mean", "sd", "mean_dice", "n_images")
    # names stay text ("NA" is a dataset name, not a missing value): only empty cells are NaN
    table = pd.read_csv(
        path,
        dtype={c: str for c in header if c not in numbers},
        keep_default_na=False,
        na_values=[""],
    )
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: lacks column(s) {', '.join(missing)}; re-run the analysis (rule analyze)"
        )
    return table


def is_usable(answer: RecipeAnswer) -> bool:
    """Whether the answer names architectures to use (recommended or an equivalent set)."""
    return answer.regime is not None and answer.regime.decision in (RECOMMENDED, EQUIVALENT)
