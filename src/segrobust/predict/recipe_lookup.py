"""The recipe's answer for one image: its complexity regime and that regime's decision.

The recipe (``results/analysis/recipe.csv``, ``segrobust.analysis.recipe``) bins the texture
study's in-domain test images by LBP complexity; its ``complexity`` rows carry the numeric bin
edges ``low`` and ``high`` (``pandas.qcut`` bins: the first includes ``low``, each includes its
``high``). An image is mapped to the bin holding its complexity. Outside the binned range the
recipe says nothing about the image, and the lookup says so instead of extrapolating.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segrobust.analysis.recipe import RECOMMENDED

#: Columns of recipe.csv the lookup reads.
NEEDED_COLUMNS: tuple[str, ...] = (
    "regime_kind", "regime", "low", "high", "decision", "recommended", "sentence",
)  # fmt: skip


@dataclass(frozen=True)
class ComplexityRegime:
    """One complexity row of the recipe."""

    label: str
    low: float
    high: float
    decision: str
    recommended: str  # empty unless decision is ``recommended``
    sentence: str

    def holds(self, complexity: float, first: bool) -> bool:
        """Whether ``complexity`` falls in this bin (the first bin is closed on the left)."""
        above = complexity >= self.low if first else complexity > self.low
        return above and complexity <= self.high


@dataclass(frozen=True)
class RecipeAnswer:
    """What the recipe says for one image (``regime`` None: outside every bin, see ``note``)."""

    regime: ComplexityRegime | None
    note: str

    @property
    def recommended_arch(self) -> str:
        """The architecture the recipe recommends for the image's regime; empty if none."""
        if self.regime is None or self.regime.decision != RECOMMENDED:
            return ""
        return self.regime.recommended


class ComplexityRecipe:
    """The complexity regimes of a recipe table, ordered by their lower edge."""

    def __init__(self, regimes: list[ComplexityRegime], source: str) -> None:
        self.regimes = sorted(regimes, key=lambda r: r.low)
        self.source = source

    @classmethod
    def read(cls, path: str | os.PathLike) -> ComplexityRecipe:
        """Read the complexity rows of ``recipe.csv``.

        Raises:
            FileNotFoundError / ValueError: naming ``path``, when it is missing or lacks the
                numeric bin edges (a recipe written before they were added: re-run the analysis).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recipe table not found: {path}")
        table = pd.read_csv(path, dtype={"recommended": str, "regime": str, "sentence": str})
        missing = [c for c in NEEDED_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(
                f"{path}: recipe table lacks column(s) {', '.join(missing)}; re-run the analysis "
                "(rule analyze) to write the complexity bins' numeric edges"
            )
        rows = table[table["regime_kind"] == "complexity"]
        regimes = [
            ComplexityRegime(
                label=str(r.regime),
                low=float(r.low),
                high=float(r.high),
                decision=str(r.decision),
                recommended="" if pd.isna(r.recommended) else str(r.recommended),
                sentence="" if pd.isna(r.sentence) else str(r.sentence),
            )
            for r in rows.itertuples(index=False)
        ]
        return cls(regimes, str(path))

    def answer(self, complexity: float) -> RecipeAnswer:
        """The regime holding ``complexity`` (bits), or why there is none."""
        if not self.regimes:
            return RecipeAnswer(None, "the recipe has no complexity regimes (texture study off)")
        if not math.isfinite(complexity):
            return RecipeAnswer(None, "complexity undefined: no regime")
        for i, regime in enumerate(self.regimes):
            if regime.holds(complexity, first=i == 0):
                return RecipeAnswer(regime, regime.sentence)
        low, high = self.regimes[0].low, self.regimes[-1].high
        return RecipeAnswer(
            None,
            f"complexity {complexity:.3g} bits is outside the recipe's range {low:.3g} to "
            f"{high:.3g} bits: no recommendation",
        )
