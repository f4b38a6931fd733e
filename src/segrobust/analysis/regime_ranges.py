"""How a new, unlabelled image is mapped to a recipe regime: ``regime_ranges.csv``.

``segrobust predict`` follows the recipe: it measures on each new image what the study's
regimes are defined by and segments it with the architecture recommended there. A regime is
defined by the test images that answered it (``segrobust.analysis.regimes``); this table says,
per regime, which label-free statistic a new image is measured on and the range it must fall in.
One row per (regime, training dataset, statistic):

* ``complexity`` regimes (texture study): ``statistic = complexity``, ``rule = bin``, ``low`` /
  ``high`` the bin edges of the recipe (``pandas.qcut`` bins: the first closed on the left, each
  closed on the right). The bins are of label complexity; a new image's complexity can only be
  measured under a predicted mask, which predict says.
* ``perturbation`` regimes: a perturbation and its severity are not observable on one image, so
  a regime is described by what its test images measure, per training dataset (the models of
  one dataset were tested on its perturbed copies): ``rule = observed``, ``low`` / ``high`` the
  minimum and maximum of the regime's test images, ``mean`` / ``sd`` their mean and standard
  deviation, one row per statistic of ``PERTURBATION_STATISTICS``: ``noise_sigma`` (the
  intensity-noise estimate of ``segrobust.evaluation.calibration``) and
  ``noise_brightness_ratio`` (how that noise grows with brightness: speckle or additive noise,
  ``segrobust.evaluation.noise_level``), both measured on the image alone (contract 4). A new
  image maps to a regime when every statistic lies inside the regime's observed range; where
  several regimes hold it, the nearest by standardised distance
  (``segrobust.predict.recipe_lookup``). Complexity is not used: a new image's can only be
  measured under a predicted mask, which on strongly perturbed images (where a network fails)
  differs from the label the regime's complexity was measured under, and on the validation
  images of tests/test_predict_recipe.py it changed no mapping's recommendation (98.9% of
  mapped copies with their own recommendation with it or without it) while leaving more
  images in no regime (13% instead of 10%).
* ``context`` regimes: ``statistic = fg_ratio``, ``rule = inside`` or ``outside`` the training
  patches' foreground-ratio range ``low`` to ``high`` of the regime's dataset and patch size
  (``segrobust.analysis.context``); a new image is measured by its predicted foreground ratio.

The ``shift`` regimes (texture models tested on another alpha) have no row: the alpha a new image
was blended with cannot be measured on it (its complexity, which can, is the complexity bins').
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from segrobust.analysis.regimes import Regime

REGIME_RANGE_COLUMNS = [
    "study",
    "regime_kind",
    "regime",
    "dataset",
    "patch",
    "statistic",
    "rule",
    "low",
    "high",
    "mean",
    "sd",
    "n_images",
]

#: How a statistic's value places an image in a regime (the module docstring).
BIN, OBSERVED, INSIDE, OUTSIDE = "bin", "observed", "inside", "outside"

#: The label-free statistics a perturbation regime is described by (contract-4 columns).
PERTURBATION_STATISTICS: tuple[str, ...] = ("noise_sigma", "noise_brightness_ratio")


def _row(regime: Regime, **values) -> dict:
    head = dict(study=regime.study, regime_kind=regime.kind, regime=regime.label)
    return {**dict.fromkeys(REGIME_RANGE_COLUMNS, np.nan), **head, **values}


def _complexity_rows(regime: Regime) -> list[dict]:
    images = regime.rows.groupby(["test_dataset", "image_id"], dropna=False)["complexity"].first()
    return [
        _row(
            regime,
            dataset="",
            patch="",
            statistic="complexity",
            rule=BIN,
            low=regime.low,
            high=regime.high,
            mean=images.mean(),
            sd=images.std(ddof=1),
            n_images=len(images),
        )
    ]


def _perturbation_rows(regime: Regime) -> list[dict]:
    rows = []
    for dataset, group in regime.rows.groupby("dataset", sort=True):
        # one value per test image: the statistics are the image's, whichever run scored it
        images = group.groupby("image_id")[list(PERTURBATION_STATISTICS)].first()
        for statistic in PERTURBATION_STATISTICS:
            values = pd.to_numeric(images[statistic], errors="coerce").dropna()
            if values.empty:
                continue
            rows.append(
                _row(
                    regime,
                    dataset=str(dataset),
                    patch="",
                    statistic=statistic,
                    rule=OBSERVED,
                    low=values.min(),
                    high=values.max(),
                    mean=values.mean(),
                    sd=values.std(ddof=1),
                    n_images=len(values),
                )
            )
    return rows


def _context_rows(regime: Regime) -> list[dict]:
    first = regime.rows.iloc[0]
    n_images = regime.rows.groupby(["test_dataset", "image_id"], dropna=False).ngroups
    return [
        _row(
            regime,
            dataset=regime.dataset,
            patch=regime.patch,
            statistic="fg_ratio",
            rule=OUTSIDE if regime.outside else INSIDE,
            low=first["fbr_low"],
            high=first["fbr_high"],
            n_images=n_images,
        )
    ]


_ROWS = {
    "complexity": _complexity_rows,
    "perturbation": _perturbation_rows,
    "context": _context_rows,
}


def regime_ranges(regimes: Sequence[Regime]) -> pd.DataFrame:
    """The mapping table of ``regimes`` (``segrobust.analysis.regimes.all_regimes``)."""
    rows = []
    for regime in regimes:
        if regime.kind in _ROWS and not regime.rows.empty:
            rows += _ROWS[regime.kind](regime)
    table = pd.DataFrame(rows, columns=REGIME_RANGE_COLUMNS)
    return table.astype({"dataset": str, "patch": str})
