"""Dispatch a named synthetic dataset entry of the config to its generator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segrobust.data.spheres import generate_sphere_dataset
from segrobust.data.textures import generate_texture_dataset


def generate_named_dataset(
    out_dir: str, spec: Mapping[str, Any], split: Mapping[str, float]
) -> None:
    """Generate the dataset described by a ``datasets:`` entry whose source is synthetic.

    ``split`` is the config's ``split`` section (train/validation/test fractions plus
    ``calibration_fraction``).
    """
    spec = dict(spec)
    source = spec.pop("source")
    fractions = {k: split[k] for k in ("train", "validation", "test")}
    common = {"split": fractions, "calibration_fraction": split["calibration_fraction"]}
    if source == "synthetic_texture":
        generate_texture_dataset(out_dir, **spec, **common)
    elif source == "synthetic_spheres":
        generate_sphere_dataset(
            out_dir,
            volume_size=spec["volume_size"],
            n_volumes=spec["n_volumes"],
            train_radii=tuple(spec["train_radii"]),
            test_radii=tuple(spec["test_radii"]),
            noise=spec["noise"],
            seed=spec["seed"],
            **common,
        )
    else:
        raise ValueError(
            f"dataset source {source!r} is not synthetic; allowed: synthetic_texture, "
            "synthetic_spheres"
        )
