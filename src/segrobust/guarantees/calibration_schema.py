"""What a ``calibration.json`` may hold, checked whenever one is loaded.

A calibration file travels with a shared model, and ``segrobust predict`` states "Dice >= b with
90% confidence" from its numbers, so it is input like any other: a file edited by hand or made
to mislead must be refused when it is read, naming the file and the field, instead of failing on
every image or stating a bound its numbers cannot support. The checks, in order:

1. size: at most ``MAX_FILE_BYTES`` before it is parsed (:func:`read_calibration_json`);
2. no NaN or infinity anywhere: Python's ``json`` reads the non-standard ``NaN`` / ``Infinity``
   tokens, the writer never emits them (missing values are ``null``), and a JSON schema's bounds
   compare false with NaN, so they would pass the schema;
3. the JSON schema ``SCHEMA`` (jsonschema, Draft 2020-12): keys, types, allowed values, array
   lengths (at most ``MAX_IMAGES`` calibration images), numeric ranges;
4. what a schema cannot express (:func:`consistency_problem`): per-image arrays as long as the
   image list; the conformal scores sorted, as many as ``dice_bound.n``, and each one a possible
   ``quality - dice``: with every Dice in [0, 1], the k-th smallest score lies between the k-th
   smallest calibration quality minus 1 and the (k + images - n)-th smallest quality (all scores
   -1, which would state "Dice >= 1.00" for every image, need every quality to be 0); their mean
   equal to the mean quality minus ``mean_dice`` where every image has a score; the FNR
   thresholds increasing, the mean FNR curve in [0, 1], non-decreasing and complete when
   ``fnr.n`` > 0; the calibrated ranges exactly the min and max of the per-image values; the
   applicability check's reference images (:func:`_applicability_problem`) as many statistics
   rows as embedding rows, every embedding of one width, each statistics row the (stored-digit)
   statistics of a distinct calibration image, its neighbour count the one this segrobust
   computes with (``min(N_NEIGHBOURS, n)``: a count above n would make every image's score
   infinite and pass every image), and the tuning records' lists of one length.

``segrobust.guarantees.calibration_file.Calibration.read`` calls :func:`read_calibration_json` and
:func:`document_problem`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema

from segrobust.contract import STUDIES
from segrobust.guarantees.applicability import (
    FEATURE_STATISTICS,
    N_NEIGHBOURS,
    TUNING_COLUMNS,
    stored_floats,
)
from segrobust.spec.architectures import ARCHITECTURES
from segrobust.spec.config import key_path

#: Largest calibration file read (bytes): one of ``MAX_IMAGES`` images is about 15 MB without
#: the applicability check, whose stored embeddings add about 16.5 bytes per channel per image
#: (1.1 kB at the 64 channels of the default study's bottlenecks, 3.2 kB at Swin UNETR's 192), so
#: with 192 channels about 20,000 calibration images fit.
MAX_FILE_BYTES = 64 * 2**20
#: Most calibration images a file may describe (far above any study's calibration split).
MAX_IMAGES = 100_000
#: Label-free statistics of every calibration image whose range ``predict`` checks.
RANGE_STATISTICS: tuple[str, ...] = ("complexity", "predicted_fg_ratio", "noise_sigma")
#: Tolerance of the checks that compare sums and order statistics of stored floats.
TOLERANCE = 1e-6
#: Widest embedding the applicability check may store (channels of the bottleneck; the
#: networks of segrobust have at most a few hundred).
MAX_EMBEDDING = 4096
#: Largest magnitude of a stored embedding value (a pooled activation; far above any real one,
#: low enough that the check's Gram matrix cannot overflow).
MAX_EMBEDDING_VALUE = 1e9
#: Most tuning images the applicability block may record.
MAX_TUNING = 1_000_000


class CalibrationFileError(ValueError):
    """A calibration file too large to read; the caller names the file."""


def _numbers(low: float | None = None, high: float | None = None, *, null: bool = True) -> dict:
    """A per-image array of numbers (``null`` where undefined) in [low, high]."""
    item: dict[str, Any] = {"type": ["number", "null"] if null else "number"}
    if low is not None:
        item["minimum"] = low
    if high is not None:
        item["maximum"] = high
    return {"type": "array", "maxItems": MAX_IMAGES, "items": item}


_RANGE = {
    "anyOf": [
        {"type": "null"},
        {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
    ]
}
_EDGES = {"type": "integer", "minimum": 1, "maximum": 4096}
_GRID = {
    "anyOf": [{"type": "null"}, {"type": "array", "items": _EDGES, "minItems": 2, "maxItems": 3}]
}
_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
#: Each label-free statistic's allowed values (``calibration_images``), in the order of
#: ``FEATURE_STATISTICS``.
_STATISTIC_BOUNDS = {
    "complexity": (0, 1000),
    "predicted_fg_ratio": (0, 1),
    "noise_sigma": (0, 1e6),
    "quality": (0, 1),
}


def _tuning_numbers(low: float, high: float) -> dict:
    return {
        "type": "array",
        "maxItems": MAX_TUNING,
        "items": {"type": ["number", "null"], "minimum": low, "maximum": high},
    }


#: The applicability block (``segrobust.evaluation.applicability_recorder``): the check's
#: reference images, the hooked module, and the tuning images the flag level is chosen on.
_APPLICABILITY = {
    "anyOf": [
        {"type": "null"},
        {
            "type": "object",
            "required": ["embedding_module", "check", "tuning"],
            "properties": {
                "embedding_module": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*$",
                    "maxLength": 256,
                },
                "reason": {"type": "string", "maxLength": 2000},
                "check": {
                    "anyOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["features", "n_neighbours", "statistics", "embeddings"],
                            "properties": {
                                "features": {"const": [*FEATURE_STATISTICS, "embedding"]},
                                "n_neighbours": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "maximum": N_NEIGHBOURS,
                                },
                                "statistics": {
                                    "type": "array",
                                    "minItems": 2,
                                    "maxItems": MAX_IMAGES,
                                    "items": {
                                        "type": "array",
                                        "minItems": len(FEATURE_STATISTICS),
                                        "maxItems": len(FEATURE_STATISTICS),
                                        "prefixItems": [
                                            {
                                                "type": "number",
                                                "minimum": _STATISTIC_BOUNDS[name][0],
                                                "maximum": _STATISTIC_BOUNDS[name][1],
                                            }
                                            for name in FEATURE_STATISTICS
                                        ],
                                    },
                                },
                                "embeddings": {
                                    "type": "array",
                                    "minItems": 2,
                                    "maxItems": MAX_IMAGES,
                                    "items": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": MAX_EMBEDDING,
                                        "items": {
                                            "type": "number",
                                            "minimum": -MAX_EMBEDDING_VALUE,
                                            "maximum": MAX_EMBEDDING_VALUE,
                                        },
                                    },
                                },
                            },
                        },
                    ]
                },
                "tuning": {
                    "type": "object",
                    "required": list(TUNING_COLUMNS),
                    "properties": {
                        "kind": {
                            "type": "array",
                            "maxItems": MAX_TUNING,
                            "items": {"type": "string", "maxLength": 256},
                        },
                        "in_domain": {
                            "type": "array",
                            "maxItems": MAX_TUNING,
                            "items": {"type": "boolean"},
                        },
                        "p_value": _tuning_numbers(0, 1),
                        "quality": _tuning_numbers(0, 1),
                        "dice": _tuning_numbers(0, 1),
                    },
                },
            },
        },
    ]
}

#: The layout of a calibration file of format version 3
#: (``segrobust.guarantees.calibration_file``).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "format_version",
        "run",
        "model",
        "inference",
        "preprocessing",
        "dice_bound",
        "fnr",
        "calibration_images",
        "ranges",
        "mean_dice",
        "applicability",
    ],
    "properties": {
        "format_version": {"type": "integer"},
        "segrobust_version": {"type": "string", "maxLength": 64},
        "run": {
            "type": "object",
            "required": ["study", "dataset", "arch", "seed", "patch"],
            "properties": {
                "study": {"enum": list(STUDIES)},
                "dataset": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
                "arch": {"enum": list(ARCHITECTURES)},
                "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                "patch": {"type": "string", "pattern": "^(full|[0-9]{1,4})$"},
            },
        },
        "model": {
            "type": "object",
            "required": ["sha256", "arch", "spatial_dims"],
            "properties": {
                "file": {"type": "string", "maxLength": 256},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "arch": {"enum": list(ARCHITECTURES)},
                "spatial_dims": {"enum": [2, 3]},
                "img_size": _GRID,
                "patch_size": _GRID,
            },
        },
        "inference": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["overlap", "mode", "sw_batch_size"],
                    "properties": {
                        "overlap": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                        "mode": {"enum": ["constant", "gaussian"]},
                        "sw_batch_size": {"type": "integer", "minimum": 1, "maximum": 1024},
                    },
                },
            ]
        },
        "preprocessing": {
            "type": "object",
            "required": ["intensity", "size", "spacing"],
            "properties": {
                "orientation": {"const": "closest_canonical"},
                "intensity": {
                    "type": "object",
                    "required": ["method"],
                    "properties": {
                        "method": {"enum": ["none", "window", "percentile", "gray"]},
                        "window": {
                            **_PAIR,
                            "items": {"type": "number", "minimum": -1e6, "maximum": 1e6},
                        },
                        "percentiles": {
                            **_PAIR,
                            "items": {"type": "number", "minimum": 0, "maximum": 100},
                        },
                    },
                    "allOf": [
                        {
                            "if": {"properties": {"method": {"const": "window"}}},
                            "then": {"required": ["window"]},
                        },
                        {
                            "if": {"properties": {"method": {"const": "percentile"}}},
                            "then": {"required": ["percentiles"]},
                        },
                    ],
                },
                "size": {
                    "anyOf": [
                        {"type": "null"},
                        {
                            "type": "array",
                            "items": {**_EDGES, "maximum": 2048},
                            "minItems": 2,
                            "maxItems": 2,
                        },
                    ]
                },
                "spacing": {
                    "anyOf": [
                        {"type": "null"},
                        {
                            "type": "array",
                            "items": {"type": "number", "minimum": 0.001, "maximum": 1000},
                            "minItems": 3,
                            "maxItems": 3,
                        },
                    ]
                },
            },
        },
        "dice_bound": {
            "type": "object",
            "required": ["n", "scores"],
            "properties": {
                "score": {"const": "quality - dice"},
                "n": {"type": "integer", "minimum": 0, "maximum": MAX_IMAGES},
                "scores": _numbers(-1, 1, null=False),
            },
        },
        "fnr": {
            "type": "object",
            "required": ["n", "thresholds", "mean_fnr"],
            "properties": {
                "n": {"type": "integer", "minimum": 0, "maximum": MAX_IMAGES},
                "thresholds": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1000,
                    "items": {"type": "number", "minimum": 0, "maximum": 1},
                },
                "mean_fnr": {
                    "type": "array",
                    "maxItems": 1000,
                    "items": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                },
            },
        },
        "calibration_images": {
            "type": "object",
            "required": ["image_id", *RANGE_STATISTICS, "quality"],
            "properties": {
                "image_id": {
                    "type": "array",
                    "maxItems": MAX_IMAGES,
                    "items": {"type": "string", "maxLength": 256},
                },
                **{name: _numbers(*bounds) for name, bounds in _STATISTIC_BOUNDS.items()},
                "label_complexity": _numbers(0, 1000),
                "label_fg_ratio": _numbers(0, 1),
            },
        },
        "ranges": {
            "type": "object",
            "required": list(RANGE_STATISTICS),
            "properties": {name: _RANGE for name in RANGE_STATISTICS},
        },
        "label_ranges": {
            "type": "object",
            "properties": {"complexity": _RANGE, "fg_ratio": _RANGE},
        },
        "mean_dice": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "applicability": _APPLICABILITY,
    },
}


def read_calibration_json(path: str | os.PathLike) -> Any:
    """The parsed JSON of a calibration file no larger than ``MAX_FILE_BYTES``.

    Raises:
        CalibrationFileError: the file is larger (it is not read).
        OSError / UnicodeDecodeError / json.JSONDecodeError: as reading and parsing raise them.
    """
    size = Path(path).stat().st_size
    if size > MAX_FILE_BYTES:
        raise CalibrationFileError(
            f"{size} bytes, over the {MAX_FILE_BYTES} a calibration file may have "
            f"({MAX_IMAGES} calibration images take about 15 MB, and the applicability check "
            "about 16.5 bytes per embedding channel per image more); it was not read"
        )
    return json.loads(Path(path).read_text(encoding="utf-8"))


def nonfinite_field(document: Any) -> str | None:
    """The first field holding NaN or infinity (walked without recursion), else None."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(((*path, str(key)), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            return (
                f"field {key_path(path)}: {value!r} is not allowed (a calibration file holds "
                "finite numbers, null where a value is undefined)"
            )
    return None


def schema_problem(document: Any) -> str | None:
    """The most relevant violation of ``SCHEMA``, naming the field, else None."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is None:
        return None
    shown = repr(error.instance)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    rule = error.message if len(error.message) <= 200 else f"it breaks the {error.validator!r} rule"
    rule = rule if len(rule) <= 200 else f"it breaks the {error.validator!r} rule"
    return f"field {key_path(error.absolute_path)}: {shown} is not allowed ({rule})"


def _finite(values: Sequence[Any]) -> list[float]:
    return sorted(float(v) for v in values if v is not None)


def _images_problem(images: Mapping[str, Any]) -> str | None:
    n = len(images["image_id"])
    for name, values in images.items():
        if len(values) != n:
            return (
                f"field calibration_images.{name}: {len(values)} values for {n} images "
                "(image_id); every per-image list has one value per image"
            )
    return None


def _scores_problem(document: Mapping[str, Any]) -> str | None:
    """The conformal scores: sorted, ``n`` of them, each a possible ``quality - dice``."""
    block, images = document["dice_bound"], document["calibration_images"]
    scores = [float(s) for s in block["scores"]]
    if len(scores) != block["n"]:
        return f"field dice_bound.n: {block['n']}, but dice_bound.scores holds {len(scores)} scores"
    if any(b < a for a, b in zip(scores, scores[1:], strict=False)):
        return "field dice_bound.scores: not sorted ascending (the file stores them sorted)"
    quality = _finite(images["quality"])
    extra = len(quality) - len(scores)
    if extra < 0:
        return (
            f"field dice_bound.scores: {len(scores)} scores, but only {len(quality)} calibration "
            "images have a quality (calibration_images.quality)"
        )
    for k, score in enumerate(scores):
        low, high = quality[k] - 1.0, quality[k + extra]
        if not low - TOLERANCE <= score <= high + TOLERANCE:
            return (
                f"field dice_bound.scores[{k}]: {score:g} is not a possible quality - dice of "
                f"these calibration images: the {k + 1}-th smallest score lies in "
                f"[{low:.6g}, {high:.6g}] given their qualities (calibration_images.quality) "
                "and Dice in [0, 1]"
            )
    mean_dice = document["mean_dice"]
    if scores and extra == 0 and len(images["quality"]) == len(scores) and mean_dice is not None:
        implied = sum(quality) / len(quality) - sum(scores) / len(scores)
        if abs(implied - mean_dice) > TOLERANCE:
            return (
                f"field mean_dice: {mean_dice:g}, but the scores and qualities give a mean Dice "
                f"of {implied:.6g} (mean quality - mean score)"
            )
    return None


def _fnr_problem(document: Mapping[str, Any]) -> str | None:
    block = document["fnr"]
    thresholds, curve = block["thresholds"], block["mean_fnr"]
    if len(curve) != len(thresholds):
        return f"field fnr.mean_fnr: {len(curve)} values for {len(thresholds)} thresholds"
    if any(b <= a for a, b in zip(thresholds, thresholds[1:], strict=False)):
        return "field fnr.thresholds: not strictly increasing"
    n_images = len(document["calibration_images"]["image_id"])
    if block["n"] > n_images:
        return f"field fnr.n: {block['n']}, more than the {n_images} calibration images"
    if block["n"] == 0:
        return None
    if any(v is None for v in curve):
        return (
            f"field fnr.mean_fnr: null values with fnr.n = {block['n']} images (a curve of "
            "n > 0 images is complete)"
        )
    for i, (a, b) in enumerate(zip(curve, curve[1:], strict=False)):
        if b < a - TOLERANCE:
            return (
                f"field fnr.mean_fnr[{i + 1}]: {b:g} below {a:g} at a lower threshold; a false-"
                "negative rate never falls as the threshold rises"
            )
    return None


def _ranges_problem(document: Mapping[str, Any]) -> str | None:
    images = document["calibration_images"]
    for name in RANGE_STATISTICS:
        values = _finite(images[name])
        expected = [values[0], values[-1]] if values else None
        stored = document["ranges"][name]
        if stored is not None:
            stored = [float(v) for v in stored]
        if stored != expected:
            return (
                f"field ranges.{name}: {stored}, but the calibration images' values span "
                f"{expected} (calibration_images.{name}); the range is their min and max"
            )
    return None


def _check_problem(check: Mapping[str, Any], images: Mapping[str, Any]) -> str | None:
    """The applicability check's reference images against the calibration images."""
    statistics, embeddings = check["statistics"], check["embeddings"]
    if len(statistics) != len(embeddings):
        return (
            f"field applicability.check.embeddings: {len(embeddings)} rows for "
            f"{len(statistics)} statistics rows (one per reference image)"
        )
    width = len(embeddings[0])
    for i, row in enumerate(embeddings):
        if len(row) != width:
            return (
                f"field applicability.check.embeddings[{i}]: {len(row)} values, the first row "
                f"has {width}; every embedding has the bottleneck's width"
            )
    n = len(statistics)
    if check["n_neighbours"] != min(N_NEIGHBOURS, n):
        return (
            f"field applicability.check.n_neighbours: {check['n_neighbours']}, but the check of "
            f"{n} reference images averages over min({N_NEIGHBOURS}, n) = {min(N_NEIGHBOURS, n)} "
            "neighbours"
        )
    available: dict[tuple, int] = {}
    for values in zip(*(images[name] for name in FEATURE_STATISTICS), strict=True):
        if all(v is not None for v in values):
            key = tuple(stored_floats(values))
            available[key] = available.get(key, 0) + 1
    for i, row in enumerate(statistics):
        key = tuple(float(v) for v in row)
        if available.get(key, 0) == 0:
            return (
                f"field applicability.check.statistics[{i}]: {list(key)} is not the statistics "
                "of a calibration image (calibration_images, each used once); the check's "
                "reference images are the calibration images"
            )
        available[key] -= 1
    return None


def _applicability_problem(document: Mapping[str, Any]) -> str | None:
    """The applicability block: its check (:func:`_check_problem`) and its tuning records."""
    block = document["applicability"]
    if block is None:
        return None
    tuning = block["tuning"]
    n = len(tuning["kind"])
    for name in TUNING_COLUMNS:
        if len(tuning[name]) != n:
            return (
                f"field applicability.tuning.{name}: {len(tuning[name])} values for {n} tuning "
                "images (applicability.tuning.kind); every tuning list has one value per image"
            )
    if block["check"] is None:
        return None
    return _check_problem(block["check"], document["calibration_images"])


def consistency_problem(document: Mapping[str, Any]) -> str | None:
    """What the schema cannot check (module docstring, point 4), on a schema-valid document."""
    checks = (
        _images_problem,
        _scores_problem,
        _fnr_problem,
        _ranges_problem,
        _applicability_problem,
    )
    for check in checks:
        problem = check(document["calibration_images"] if check is _images_problem else document)
        if problem:
            return problem
    return None


def document_problem(document: Any) -> str | None:
    """Why a parsed calibration document cannot be used (naming the field), else None."""
    return nonfinite_field(document) or schema_problem(document) or consistency_problem(document)
