"""3D sphere volumes for the context / foreground-ratio study.

Each volume (``volume_size``^3 voxels, spacing 1 mm) holds one sphere: intensity 1 inside, 0
outside, plus Gaussian noise of standard deviation ``noise``. The volume is not smoothed: the label
is exactly the sphere, so the boundary has one right answer and the noise alone sets how hard a
voxel is. The study's variable is the foreground ratio: training and validation spheres draw their
radius from ``train_radii`` (paper: 25-35 voxels in 96^3), calibration and test spheres from the
wider ``test_radii`` (paper: 5-48), so test cases leave the foreground ratios seen in training.

The centre is uniformly random among the positions where the whole sphere fits. A sphere too large
to fit (radius > (volume_size - 1) / 2) is centred in the volume and clipped at the border; its
``fg_ratio`` is then below ``expected_fg_ratio``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

import segrobust
from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import SPLITS, DatasetWriter, split_ids
from segrobust.data.textures import check_split_sizes

#: Splits whose spheres are drawn from ``train_radii``; the others use ``test_radii``.
TRAINING_SPLITS = ("training", "validation")

#: Smallest sphere radius in voxels: any ball of radius >= 1 contains a voxel centre (the farthest
#: a point lies from its nearest voxel centre is sqrt(3)/2), so no label comes out empty.
MIN_RADIUS = 1.0

#: Smallest volume edge (LBP complexity on axial slices needs some room).
MIN_VOLUME_SIZE = 8


def sphere_mask(shape: Sequence[int], centre: Sequence[float], radius: float) -> np.ndarray:
    """Mask of the voxels whose centres lie within ``radius`` of ``centre`` (voxel units)."""
    if len(shape) != len(centre):
        raise ValueError(f"centre {tuple(centre)} does not match shape {tuple(shape)}")
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return dist2 <= radius**2


def expected_fg_ratio(radius: float, volume_size: int) -> float:
    """Foreground-to-total voxel ratio of an unclipped sphere: (4/3 pi r^3) / N^3."""
    return (4.0 / 3.0) * math.pi * radius**3 / volume_size**3


def fits(radius: float, volume_size: int) -> bool:
    """Whether a sphere of ``radius`` fits in the volume without clipping."""
    return radius <= (volume_size - 1) / 2.0


def _check_radii(radii: Sequence[float], key: str, volume_size: int) -> tuple[float, float]:
    """Validate a ``[low, high]`` radius range; errors name ``key`` and the allowed range."""
    try:
        low, high = (float(r) for r in radii)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a pair [low, high] of numbers, got {radii!r}") from None
    # A centred sphere covers every voxel once its radius reaches the corner distance, which
    # would leave no background (and an infinite foreground/background ratio).
    corner = math.sqrt(3.0) * (volume_size - 1) / 2.0
    if not MIN_RADIUS <= low <= high < corner:
        raise ValueError(
            f"{key} = {[low, high]} is not a valid range for a {volume_size}^3 volume; allowed: "
            f"{MIN_RADIUS:g} <= low <= high < {corner:.2f} voxels"
        )
    return low, high


def sphere_case(
    index: int, *, volume_size: int, radii: tuple[float, float], noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Volume ``index``: ``(image, label, radius)``, fixed by ``(seed, index)`` and ``radii``."""
    rng = np.random.default_rng([seed, index])
    radius = float(rng.uniform(*radii))
    if fits(radius, volume_size):
        centre = rng.uniform(radius, volume_size - 1 - radius, size=3)
    else:
        centre = np.full(3, (volume_size - 1) / 2.0)
    label = sphere_mask((volume_size,) * 3, centre, radius)
    image = label + noise * rng.standard_normal(label.shape)
    return image.astype(np.float32), label.astype(np.uint8), radius


def generate_sphere_dataset(
    out_dir: str | os.PathLike,
    *,
    volume_size: int,
    n_volumes: int,
    train_radii: Sequence[float],
    test_radii: Sequence[float],
    noise: float,
    split: Mapping[str, float],
    calibration_fraction: float,
    seed: int,
) -> None:
    """Write the spheres dataset in the dataset contract (atomically).

    Each datalist entry carries ``radius`` (voxels), ``fg_ratio`` (foreground / all voxels),
    ``fbr`` (foreground / background voxels) and ``complexity`` (LBP KL divergence, mean over
    axial slices). The provenance records every argument.

    Args:
        volume_size: cube edge N in voxels (spacing 1 mm).
        n_volumes: number of volumes, split by ``split`` fractions (train / validation / test).
        train_radii: [low, high] radius range of training and validation spheres.
        test_radii: [low, high] radius range of calibration and test spheres.
        noise: standard deviation of the additive Gaussian noise (>= 0).
        calibration_fraction: share of the held-out volumes set aside for calibration.
        seed: fixes the split and, with the volume index, each volume.
    """
    if not isinstance(volume_size, (int, np.integer)) or volume_size < MIN_VOLUME_SIZE:
        raise ValueError(
            f"volume_size must be an integer >= {MIN_VOLUME_SIZE}, got {volume_size!r}"
        )
    if not isinstance(n_volumes, (int, np.integer)) or n_volumes < 1:
        raise ValueError(f"n_volumes must be a positive integer, got {n_volumes!r}")
    if not noise >= 0.0:
        raise ValueError(f"noise must be >= 0 (a standard deviation), got {noise!r}")
    ranges = {
        "training": _check_radii(train_radii, "train_radii", volume_size),
        "test": _check_radii(test_radii, "test_radii", volume_size),
    }

    ids = [f"sphere_{i:04d}" for i in range(n_volumes)]
    assignment = split_ids(ids, split, calibration_fraction, seed)
    check_split_sizes(n_volumes, assignment, "n_volumes")
    split_of = {case_id: name for name in SPLITS for case_id in assignment[name]}

    provenance = {
        "source": "synthetic-spheres",
        "generator": "segrobust.data.spheres.generate_sphere_dataset",
        "segrobust_version": segrobust.__version__,
        "parameters": {
            "volume_size": int(volume_size),
            "n_volumes": int(n_volumes),
            "train_radii": list(ranges["training"]),
            "test_radii": list(ranges["test"]),
            "noise": float(noise),
            "split": {k: float(v) for k, v in split.items()},
            "calibration_fraction": float(calibration_fraction),
            "seed": int(seed),
        },
    }
    with DatasetWriter(out_dir, provenance) as writer:
        for index, case_id in enumerate(ids):
            split_name = split_of[case_id]
            radii = ranges["training" if split_name in TRAINING_SPLITS else "test"]
            image, label, radius = sphere_case(
                index, volume_size=volume_size, radii=radii, noise=noise, seed=seed
            )
            n_fg = int(label.sum())
            writer.add(
                case_id,
                image,
                label,
                split=split_name,
                spacing=(1.0, 1.0, 1.0),
                radius=radius,
                fg_ratio=n_fg / label.size,
                fbr=n_fg / (label.size - n_fg),
                complexity=lbp_complexity(image, label),
            )
