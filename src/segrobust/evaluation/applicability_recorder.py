"""What the evaluation of a run records for the applicability check and the per-shift coverage.

While ``evaluate_run`` predicts every image of a run's test conditions once, this recorder keeps
per image its label-free statistics, the model's pooled bottleneck embedding (a forward hook,
``segrobust.evaluation.embeddings``), its Dice and the model's quality estimate. When every
condition is done it fits the applicability check on the in-domain calibration images
(``segrobust.guarantees.applicability``), gives every image its conformal outlier p-value, and
returns

* the run's ``applicability.csv`` (``contract.APPLICABILITY_COLUMNS``): one row per evaluated
  image with its shift kind (``segrobust.spec.shifts.shift_kind``) and its role: ``calibration``,
  or for a test image ``tuning`` (even positions in its condition: the held-out images the flag
  level is chosen on) or ``report`` (odd positions: what the per-shift coverage reports);
* the ``applicability`` block of ``calibration.json``: the fitted check, the hooked module, and
  the tuning images' kind, p-value, quality and Dice, from which the flag level at any
  confidence is chosen (``choose_flag_level``).

Images of shift-only conditions (the second texture generator) are recorded here and nowhere
else: the per-image table of contract 4 and every analysis built on it stay as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from segrobust.contract import APPLICABILITY_COLUMNS, Run
from segrobust.data.dataset import Case
from segrobust.evaluation.embeddings import EmbeddingRecorder, bottleneck_module
from segrobust.evaluation.label_free import label_free_statistics
from segrobust.guarantees.applicability import (
    FEATURE_STATISTICS,
    TUNING_COLUMNS,
    ApplicabilityCheck,
)
from segrobust.spec.shifts import shift_kind

CALIBRATION_ROLE, TUNING_ROLE, REPORT_ROLE = "calibration", "tuning", "report"


def test_role(position: int) -> str:
    """Role of the test image at ``position`` (0-based, load order) in its condition: even
    positions tune the flag level, odd ones are reported."""
    return TUNING_ROLE if position % 2 == 0 else REPORT_ROLE


class ApplicabilityRecorder:
    """Collects one run's per-image evidence during evaluation (module docstring).

    Args:
        run: the model run.
        model: the network, in evaluation mode.
        model_info: ``model.pt``'s metadata (its ``patch_size`` or ``img_size`` is the probe
            input of :func:`bottleneck_module`).
        device: where the network runs.
    """

    def __init__(
        self, run: Run, model: torch.nn.Module, model_info: Mapping[str, Any], device: Any
    ) -> None:
        self.run = run
        dims = int(model_info["spatial_dims"])
        probe = model_info.get("patch_size") or model_info.get("img_size")
        self.module_name = bottleneck_module(model, dims, probe, device)
        self.embeddings = EmbeddingRecorder(model, self.module_name, dims)
        self.rows: list[dict[str, Any]] = []
        self.vectors: list[np.ndarray] = []

    def __enter__(self) -> ApplicabilityRecorder:
        self.embeddings.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.embeddings.__exit__(*exc)

    def observe(
        self,
        condition: str,
        columns: Mapping[str, Any],
        split: str,
        position: int,
        case: Case,
        prob: np.ndarray,
        scores: Mapping[str, float],
    ) -> None:
        """Record one image just predicted (its embedding is taken from the hook).

        Args:
            condition, columns, split: the test condition's name, metadata and split.
            position: the image's 0-based position in the condition's split.
            scores: the image's ``dice``, ``quality`` and label ``fg_ratio``.
        """
        stats = label_free_statistics(case.image, prob, case.lbp_codes)
        kind, in_domain = shift_kind(condition, columns, self.run)
        role = CALIBRATION_ROLE if split == "calibration" else test_role(position)
        self.vectors.append(self.embeddings.take())
        self.rows.append(
            {
                **self.run.columns,
                "condition": condition,
                "kind": kind,
                "in_domain": in_domain,
                "test_dataset": columns.get("test_dataset"),
                "split": split,
                "role": role,
                "image_id": case.case_id,
                "group": str(case.meta.get("group", case.case_id)),
                "dice": scores["dice"],
                "quality": stats["quality"],
                "fg_ratio": scores["fg_ratio"],
                "mask_complexity": stats["complexity"],
                "predicted_fg_ratio": stats["predicted_fg_ratio"],
                "noise_sigma": stats["noise_sigma"],
            }
        )

    def _features(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        renamed = rows.rename(columns={"mask_complexity": "complexity"})
        statistics = renamed[list(FEATURE_STATISTICS)].to_numpy(np.float64)
        return statistics, np.stack([self.vectors[i] for i in rows.index])

    def finish(self) -> tuple[pd.DataFrame, dict[str, Any]]:
        """``(applicability table, calibration block)`` once every condition is evaluated.

        Without usable in-domain calibration images there is no check: every p-value is
        missing and the block says why (``check`` null), so ``predict`` flags every image.
        """
        table = pd.DataFrame(self.rows).reindex(columns=list(APPLICABILITY_COLUMNS))
        reference = table[(table["role"] == CALIBRATION_ROLE) & table["in_domain"].astype(bool)]
        block: dict[str, Any] = {"embedding_module": self.module_name}
        try:
            check = ApplicabilityCheck.fit(*self._features(reference)) if len(reference) else None
        except ValueError as exc:
            check, reason = None, str(exc)
        else:
            reason = "no in-domain calibration images" if check is None else ""
        if check is None:
            table["p_value"] = np.nan
            block.update(check=None, reason=reason)
        else:
            tested = table["role"] != CALIBRATION_ROLE  # the calibration images are the check
            table["p_value"] = np.nan
            if tested.any():
                table.loc[tested, "p_value"] = check.p_values(*self._features(table[tested]))
            block.update(check=check.to_dict(), reason="")
        tuning = table[table["role"] == TUNING_ROLE]
        block["tuning"] = tuning_block(tuning)
        return table, block


def tuning_block(tuning: pd.DataFrame) -> dict[str, list]:
    """The tuning images' columns ``TUNING_COLUMNS`` as JSON lists (NaN as null)."""
    out: dict[str, list] = {}
    for column in TUNING_COLUMNS:
        values = tuning[column].tolist()
        if column == "kind":
            out[column] = [str(v) for v in values]
        elif column == "in_domain":
            out[column] = [bool(v) for v in values]
        else:
            out[column] = [float(v) if np.isfinite(v) else None for v in np.asarray(values, float)]
    return out
