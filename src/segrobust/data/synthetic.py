"""Dispatch a named synthetic dataset entry of the config to its generator."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segrobust.data.spheres import generate_sphere_dataset
from segrobust.data.textures import SPLIT_COUNT_KEYS, generate_texture_dataset

#: Keys of older configs that the per-split counts replaced.
REPLACED_KEYS = ("n_images", "n_volumes")


def check_no_replaced_keys(spec: Mapping[str, Any], where: str) -> None:
    """Raise if ``spec`` still uses a key the per-split counts replaced, naming the new keys."""
    old = [key for key in REPLACED_KEYS if key in spec]
    if old:
        new = ", ".join(SPLIT_COUNT_KEYS.values())
        raise ValueError(
            f"{where}: {', '.join(old)} was replaced by the per-split counts {new} (the held-out "
            f"sets are sized independently of the training set)"
        )


def generate_named_dataset(out_dir: str | os.PathLike, spec: Mapping[str, Any]) -> None:
    """Generate the dataset described by a ``datasets:`` entry whose source is synthetic into
    ``out_dir`` (named after the entry).

    The entry holds its own split counts (``n_train``, ``n_validation``, ``n_calibration``,
    ``n_test``); the config's top-level ``split`` fractions apply to real datasets only.
    """
    spec = dict(spec)
    source = spec.pop("source")
    check_no_replaced_keys(spec, f"datasets.{Path(out_dir).name}")
    if source == "synthetic_texture":
        generate_texture_dataset(out_dir, **spec)
    elif source == "synthetic_spheres":
        generate_sphere_dataset(out_dir, **spec)
    else:
        raise ValueError(
            f"dataset source {source!r} is not synthetic; allowed: synthetic_texture, "
            "synthetic_spheres"
        )
