"""Perturbed copies of a dataset's test split, one contract dataset per severity.

The models are trained on clean data and tested on these copies. Each copy keeps the source's
ids, labels and geometry; its datalist entries carry the perturbed image's own LBP complexity
(perturbation changes how alike foreground and background look), the clean one as
``source_complexity``, and ``perturbation``, ``severity``, ``source_id``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

import segrobust
from segrobust.atomic import atomic_dir
from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import DatasetWriter, load_case, read_datalist
from segrobust.perturb.base import Perturbation, check_severity
from segrobust.perturb.catalog import PERTURBATIONS
from segrobust.perturb.seeding import perturbation_rng

#: Keys of a source entry that are set anew for the perturbed image, not passed through (a
#: perturbed set can itself be a source).
RECOMPUTED = (
    "id",
    "image",
    "label",
    "complexity",
    "fg_ratio",
    "source_complexity",
    "perturbation",
    "severity",
    "source_id",
)


def check_severities(perturbation: str, severities: Iterable[int]) -> list[int]:
    """Validate a non-empty list of distinct severities in 1..5."""
    severities = list(severities)
    if not severities:
        raise ValueError(f"perturbation {perturbation!r}: no severities given; allowed: 1..5")
    checked = [check_severity(perturbation, s) for s in severities]
    if len(set(checked)) != len(checked):
        raise ValueError(f"perturbation {perturbation!r}: repeated severity in {severities}")
    return checked


def perturb_test_split(
    dataset_dir: str | os.PathLike,
    perturbation: str,
    severities: Iterable[int],
    seed: int,
    out_dir: str | os.PathLike,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Write ``out_dir/s<severity>/`` for each severity: the test split of ``dataset_dir``
    perturbed, as a dataset whose other splits are empty.

    ``options`` are the perturbation's design options (``Perturbation.options``, e.g. speckle's
    ``scaling``); the ones not given take their defaults, and all are recorded in the provenance.

    All or nothing: everything is built in a temporary sibling of ``out_dir`` and renamed into
    place at the end (replacing an old ``out_dir``); on any error the temporary directory is
    removed and an existing ``out_dir`` is left as it was.

    Raises:
        segrobust.registry.UnknownNameError: unknown ``perturbation`` (lists the allowed ones).
        ValueError: a severity outside 1..5, none, or a repeated one; an unknown option.
        segrobust.data.dataset.DataError: an unreadable or inconsistent source image / label.
    """
    spec = PERTURBATIONS.get(perturbation)
    severities = check_severities(perturbation, severities)
    options = spec.resolve_options(options)
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    entries = read_datalist(dataset_dir)["test"]
    with atomic_dir(out_dir) as tmp, ExitStack() as stack:
        writers = {
            s: stack.enter_context(
                DatasetWriter(
                    tmp / f"s{s}", provenance=_provenance(dataset_dir, spec, s, seed, options)
                )
            )
            for s in severities
        }
        # One source case in memory at a time, perturbed at every severity: test volumes
        # (e.g. CT) can be large, so the split is not loaded whole.
        for entry in entries:
            case = load_case(dataset_dir, entry)
            passed = {k: v for k, v in entry.items() if k not in RECOMPUTED}
            for s, writer in writers.items():
                rng = perturbation_rng(case.case_id, perturbation, s, seed)
                image = spec.apply(case.image, case.label, s, rng, options)
                writer.add(
                    case.case_id,
                    image,
                    case.label,
                    split="test",
                    spacing=case.spacing,
                    affine=case.affine,
                    **passed,
                    complexity=lbp_complexity(image, case.label),
                    fg_ratio=float(np.mean(case.label)),
                    source_complexity=entry.get("complexity"),
                    perturbation=perturbation,
                    severity=s,
                    source_id=case.case_id,
                )


def _provenance(
    dataset_dir: Path, spec: Perturbation, severity: int, seed: int, options: Mapping[str, Any]
) -> dict:
    """What a perturbed test set was made from and how."""
    return {
        "source": "perturbation",
        "source_dataset": str(dataset_dir),
        "source_split": "test",
        "perturbation": spec.name,
        "severity": severity,
        "parameters": spec.parameters(severity),
        "units": dict(spec.units),
        "options": dict(options),
        "reference": spec.reference,
        "seed": seed,
        "segrobust_version": segrobust.__version__,
    }
