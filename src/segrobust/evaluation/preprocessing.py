"""The preprocessing that brings a raw image to a model's input, as its training dataset's
preparation did (docs/ARCHITECTURE.md, contract 1): orientation, intensity normalisation, and the
size (2D) or spacing (3D) of the stored images. Written into ``calibration.json`` by evaluation
(``segrobust.evaluation.calibration``), applied to new images by ``segrobust.predict.inputs``.

The intensity normalisation is the one the preparation recorded in the dataset's
``provenance.json`` (``intensity``): this module keeps no list of sources or preparers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrobust.data.dataset import INTENSITY_METHODS, PROVENANCE, Case
from segrobust.guarantees.calibration_file import CalibrationError


def _read_provenance(dataset_dir: Path) -> dict[str, Any]:
    path = dataset_dir / PROVENANCE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{path}: not found; the dataset's preparation is unknown") from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}: not valid JSON ({exc})") from exc


def intensity_normalisation(provenance: Mapping[str, Any], where: str | os.PathLike) -> dict:
    """How the dataset's preparation mapped raw intensities to the stored ones: the
    ``intensity`` its provenance records (``method`` one of ``INTENSITY_METHODS``, with its
    parameters).

    Raises:
        CalibrationError: naming ``where`` when the provenance records none, or a method
            segrobust cannot reproduce on new images.
    """
    intensity = provenance.get("intensity")
    method = intensity.get("method") if isinstance(intensity, Mapping) else None
    if method not in INTENSITY_METHODS:
        raise CalibrationError(
            f"{where}: records no intensity normalisation segrobust can reproduce on new images "
            f"(key 'intensity' with a method, one of: {', '.join(INTENSITY_METHODS)}; got "
            f"{intensity!r}); prepare the dataset again with this segrobust"
        )
    return dict(intensity)


def _common(values: Sequence[tuple], what: str, where: Path) -> list:
    distinct = sorted(set(values))
    if len(distinct) != 1:
        raise CalibrationError(
            f"{where}: the calibration images differ in {what} ({distinct[:5]}); a new image "
            f"cannot be brought to one model input {what}"
        )
    return list(distinct[0])


@dataclass(frozen=True)
class ImageGrid:
    """The voxel grid of one stored image: its shape and spacing (what the model saw)."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]

    @classmethod
    def of(cls, case: Case) -> ImageGrid:
        return cls(tuple(int(n) for n in case.image.shape), tuple(map(float, case.spacing)))


def dataset_preprocessing(
    dataset_dir: str | os.PathLike, grids: Sequence[ImageGrid], ndim: int
) -> dict:
    """The preprocessing that brings a raw image to the model's input, as the dataset's
    preparation did (docs/ARCHITECTURE.md, contract 1).

    Every stored dataset is in the closest canonical (RAS+) orientation: generated arrays and
    photos are written with diagonal positive affines, MSD volumes are reoriented. 2D images
    are resized to the common size of the stored images (the preparation's ``image_size``,
    or the generator's); 3D volumes are resampled to their common spacing.

    Args:
        dataset_dir: the training dataset (its ``provenance.json`` is read).
        grids: the grids of stored images of the dataset (they define the model grid).
        ndim: the model's spatial dimensionality.
    """
    dataset_dir = Path(dataset_dir)
    provenance = _read_provenance(dataset_dir)
    if not grids:
        raise CalibrationError(f"{dataset_dir}: no images to read the model's input grid from")
    size = spacing = None
    if ndim == 2:
        size = [int(n) for n in _common([g.shape for g in grids], "size", dataset_dir)]
    else:
        rounded = [tuple(round(float(s), 6) for s in g.spacing) for g in grids]
        spacing = [float(s) for s in _common(rounded, "spacing", dataset_dir)]
    return {
        "dataset": provenance.get("dataset", dataset_dir.name),
        "source": provenance.get("source"),
        "orientation": "closest_canonical",
        "intensity": intensity_normalisation(provenance, dataset_dir / PROVENANCE),
        "size": size,
        "spacing": spacing,
    }
