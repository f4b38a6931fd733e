"""Collects, while evaluation predicts a run's conditions, what the run's ``calibration.json``
needs beyond its tables (the file format: ``segrobust.guarantees.calibration_file``).

``evaluate_run`` predicts the run's in-domain calibration split anyway, so the label-free
statistics of each calibration image (``segrobust.evaluation.label_free``) are computed from the
same probabilities and no image is predicted twice; the preprocessing that reproduces the
model's input comes from the training dataset (``segrobust.evaluation.preprocessing``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segrobust.contract import Run, in_domain
from segrobust.data.dataset import Case
from segrobust.evaluation.label_free import label_free_statistics
from segrobust.evaluation.preprocessing import ImageGrid, dataset_preprocessing
from segrobust.guarantees.calibration_file import (
    CalibrationError,
    build_calibration,
    file_sha256,
)


class CalibrationRecorder:
    """Collects, while ``evaluate_run`` predicts a run's conditions, what ``calibration.json``
    needs beyond the evaluation tables: the label-free statistics of each in-domain calibration
    image (from the probabilities evaluation computed anyway, so no image is predicted twice)
    and the grid of the training dataset's stored images.

    Args:
        run: the model run.
        model_path: its ``model.pt`` (digest and metadata go into the file).
        model_info: ``model.pt``'s metadata (``load_model_file``).
        window: the sliding-window settings of evaluation (None for whole-image models).
    """

    def __init__(
        self,
        run: Run,
        model_path: str | os.PathLike,
        model_info: Mapping[str, Any],
        window: Mapping[str, Any] | None,
    ) -> None:
        self.run, self.model_path, self.model_info = run, Path(model_path), model_info
        self.window = window
        self.dataset_dir: Path | None = None
        self.statistics: dict[str, dict[str, float]] = {}
        self.grids: list[ImageGrid] = []

    def wants(self, condition_name: str, split: str, dataset_dir: str | os.PathLike) -> bool:
        """Whether a condition is the run's in-domain calibration split (whose images the
        guarantees are calibrated on); remembers its dataset, the training dataset."""
        row = {"condition": condition_name, "dataset": self.run.dataset}
        if split != "calibration" or not in_domain(row):
            return False
        self.dataset_dir = Path(dataset_dir)
        return True

    def observe(self, case: Case, prob: np.ndarray) -> None:
        """Record one calibration image and the model's probabilities on it."""
        self.statistics[case.case_id] = label_free_statistics(case.image, prob, case.lbp_codes)
        self.grids.append(ImageGrid.of(case))

    def document(
        self,
        per_image: pd.DataFrame,
        fnr: pd.DataFrame,
        training_grids: Callable[[Path], Sequence[ImageGrid]],
        applicability: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The calibration document, from the run's finished tables.

        Args:
            training_grids: the grids of the training split of a dataset; read only when the
                dataset has no calibration images (``n_calibration`` 0) to define the model grid.
            applicability: the applicability block
                (``segrobust.evaluation.applicability_recorder.ApplicabilityRecorder.finish``).

        Raises:
            CalibrationError: no calibration condition was evaluated, a dataset whose
                preparation cannot be reproduced, or tables that do not match the images.
        """
        if self.dataset_dir is None:
            raise CalibrationError(
                f"{self.model_path}: no in-domain calibration condition was evaluated, so "
                f"there is nothing to calibrate on"
            )
        ndim = int(self.model_info["spatial_dims"])
        grids = self.grids or training_grids(self.dataset_dir)
        return build_calibration(
            per_image,
            fnr,
            run=self.run,
            model_info=self.model_info,
            model_sha256=file_sha256(self.model_path),
            preprocessing=dataset_preprocessing(self.dataset_dir, grids, ndim),
            statistics=self.statistics,
            window=self.window,
            applicability=applicability,
            where=f"evaluation of {self.model_path}",
        )
