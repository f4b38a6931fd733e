"""3D sphere volumes for the context / foreground-ratio study.

Each volume (``volume_size``^3 voxels, spacing 1 mm) holds one sphere and its label is exactly the
sphere, so the boundary has one right answer and the noise alone sets how hard a voxel is. The
study's variable is the foreground ratio: training and validation spheres draw their radius from
``train_radii`` (paper: 25-35 voxels in 96^3), calibration and test spheres from the wider
``test_radii`` (paper: 5-48), so test cases leave the foreground ratios seen in training.

Noise models (``NOISE_MODELS``, parameter in brackets):

- ``gaussian`` (``noise``, a standard deviation): intensity 1 inside, 0 outside, plus Gaussian
  noise of standard deviation ``noise`` on every voxel. Unbounded intensities, the same noise
  inside and outside.
- ``uniform_max`` (``noise_max``): the context study authors' model (MONAI's synthetic test
  images). The sphere gets an intensity ``v ~ U[0.5, 1)``, every voxel a draw ``u ~ U[0,
  noise_max)``; the image ``max(v * label, u)`` is min-max rescaled to [0, 1] and the sphere then
  set to exactly 1. The background is thus ``u / M`` with ``M = max(v, max u)`` (its minimum is
  ~0): about ``U[0, 1)`` when ``v < noise_max``, ``U[0, noise_max / v)`` otherwise; the sphere is
  flat. Paper: ``noise_max`` 0.8.

Radius sampling (``RADIUS_SAMPLINGS``):

- ``continuous``: the radius is a uniform real in ``[low, high]``; the centre a uniform real per
  axis among the positions where the whole sphere fits.
- ``integer`` (the authors', numpy ``randint``): the radius is a uniform integer in ``[low,
  high)`` (``high`` excluded), the centre a uniform integer per axis in ``[radius, volume_size -
  radius)``.

A sphere too large to fit (radius > (volume_size - 1) / 2) is centred in the volume and clipped at
the border; its ``fg_ratio`` is then below ``expected_fg_ratio``.

Splits are explicit counts assigned by index range (``segrobust.data.textures.split_by_index``):
volume ``i`` depends only on ``(seed, i)`` and its split's radius range, so changing only the
held-out counts leaves the training and validation volumes as they were.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from segrobust.data.complexity import lbp_complexity
from segrobust.data.dataset import DatasetWriter, generated_provenance
from segrobust.data.textures import rescale01, split_by_index

#: Splits whose spheres are drawn from ``train_radii``; the others use ``test_radii``.
TRAINING_SPLITS = ("training", "validation")

#: Noise models and the argument / config key of each one's parameter.
NOISE_MODELS = {"gaussian": "noise", "uniform_max": "noise_max"}

#: How radii (and centres) are drawn.
RADIUS_SAMPLINGS = ("continuous", "integer")

#: ``uniform_max``: range of the sphere's intensity before rescaling, ``[0.5, 1)`` as in MONAI's
#: ``create_test_image_3d`` that the authors' generator follows.
SPHERE_INTENSITY = (0.5, 1.0)

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


def check_choice(value: str, key: str, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise naming ``key`` and the choices."""
    if value not in allowed:
        raise ValueError(f"{key} {value!r} unknown; allowed: {', '.join(allowed)}")
    return value


def noise_parameter(noise_model: str, noise: float | None, noise_max: float | None) -> float:
    """The parameter ``noise_model`` uses (``noise`` or ``noise_max``), checked to be >= 0."""
    check_choice(noise_model, "noise_model", tuple(NOISE_MODELS))
    key = NOISE_MODELS[noise_model]
    value = noise if key == "noise" else noise_max
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
        raise ValueError(
            f"{key} must be a number >= 0 with noise_model {noise_model!r}, got {value!r}"
        )
    return float(value)


def _check_radii(
    radii: Sequence[float], key: str, volume_size: int, sampling: str
) -> tuple[float, float]:
    """Validate a ``[low, high]`` radius range; errors name ``key`` and the allowed range.

    ``integer`` sampling draws from ``low .. high - 1``, so it needs whole numbers with
    ``low < high``; ``continuous`` draws from ``[low, high]``.
    """
    try:
        low, high = (float(r) for r in radii)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a pair [low, high] of numbers, got {radii!r}") from None
    # A centred sphere covers every voxel once its radius reaches the corner distance, which
    # would leave no background (and an infinite foreground/background ratio).
    corner = math.sqrt(3.0) * (volume_size - 1) / 2.0
    if sampling == "integer":
        if not (low.is_integer() and high.is_integer()):
            raise ValueError(
                f"{key} = {[low, high]} must be whole numbers with radius_sampling 'integer' "
                f"(radii are drawn from low .. high - 1)"
            )
        if not (MIN_RADIUS <= low < high and high - 1 < corner):
            raise ValueError(
                f"{key} = {[low, high]} is not a valid range for a {volume_size}^3 volume with "
                f"radius_sampling 'integer'; allowed: {MIN_RADIUS:g} <= low < high, largest "
                f"radius high - 1 < {corner:.2f} voxels"
            )
        return low, high
    if not MIN_RADIUS <= low <= high < corner:
        raise ValueError(
            f"{key} = {[low, high]} is not a valid range for a {volume_size}^3 volume; allowed: "
            f"{MIN_RADIUS:g} <= low <= high < {corner:.2f} voxels"
        )
    return low, high


def draw_radius(rng: np.random.Generator, radii: tuple[float, float], sampling: str) -> float:
    """A radius from ``radii``: uniform real in [low, high], or uniform integer in [low, high)."""
    low, high = radii
    if sampling == "integer":
        return float(rng.integers(int(low), int(high)))
    return float(rng.uniform(low, high))


def draw_centre(
    rng: np.random.Generator, radius: float, volume_size: int, sampling: str
) -> np.ndarray:
    """A centre where the sphere fits (real, or integer in [radius, volume_size - radius) per
    axis); the volume centre when it cannot fit."""
    if not fits(radius, volume_size):
        return np.full(3, (volume_size - 1) / 2.0)
    if sampling == "integer":
        r = int(radius)
        return rng.integers(r, volume_size - r, size=3).astype(np.float64)
    return rng.uniform(radius, volume_size - 1 - radius, size=3)


def gaussian_image(label: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``gaussian`` model: the binary label plus Gaussian noise of standard deviation ``noise``."""
    return label + noise * rng.standard_normal(label.shape)


def uniform_max_image(label: np.ndarray, noise_max: float, rng: np.random.Generator) -> np.ndarray:
    """``uniform_max`` model: ``max(v * label, U[0, noise_max))`` with ``v ~ U[0.5, 1)``, min-max
    rescaled to [0, 1], sphere set to 1 (see the module docstring)."""
    sphere = np.asarray(label).astype(bool)
    intensity = rng.uniform(*SPHERE_INTENSITY)
    raw = np.maximum(sphere * intensity, rng.uniform(0.0, noise_max, size=sphere.shape))
    image = rescale01(raw)
    image[sphere] = 1.0
    return image


def sphere_case(
    index: int,
    *,
    volume_size: int,
    radii: tuple[float, float],
    seed: int,
    noise_model: str = "gaussian",
    noise: float | None = None,
    noise_max: float | None = None,
    radius_sampling: str = "continuous",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Volume ``index``: ``(image, label, radius)``, fixed by ``(seed, index)``, ``radii`` and the
    model options (module docstring); ``noise`` / ``noise_max`` as ``noise_model`` needs."""
    parameter = noise_parameter(noise_model, noise, noise_max)
    check_choice(radius_sampling, "radius_sampling", RADIUS_SAMPLINGS)
    rng = np.random.default_rng([seed, index])
    radius = draw_radius(rng, radii, radius_sampling)
    centre = draw_centre(rng, radius, volume_size, radius_sampling)
    label = sphere_mask((volume_size,) * 3, centre, radius)
    if noise_model == "gaussian":
        image = gaussian_image(label, parameter, rng)
    else:
        image = uniform_max_image(label, parameter, rng)
    return image.astype(np.float32), label.astype(np.uint8), radius


def generate_sphere_dataset(
    out_dir: str | os.PathLike,
    *,
    volume_size: int,
    n_train: int,
    n_validation: int,
    n_calibration: int,
    n_test: int,
    train_radii: Sequence[float],
    test_radii: Sequence[float],
    seed: int,
    noise_model: str = "gaussian",
    noise: float | None = None,
    noise_max: float | None = None,
    radius_sampling: str = "continuous",
) -> None:
    """Write the spheres dataset in the dataset contract (atomically).

    Each datalist entry carries ``radius`` (voxels), ``fg_ratio`` (foreground / all voxels),
    ``fbr`` (foreground / background voxels) and ``complexity`` (LBP KL divergence, mean over
    axial slices). The provenance records every argument the model uses.

    Args:
        volume_size: cube edge N in voxels (spacing 1 mm).
        n_train, n_validation, n_calibration, n_test: volumes per split, assigned by index.
        train_radii: [low, high] radius range of training and validation spheres.
        test_radii: [low, high] radius range of calibration and test spheres.
        seed: with the volume index, fixes each volume.
        noise_model: ``gaussian`` (uses ``noise``, a standard deviation) or ``uniform_max``
            (uses ``noise_max``); the other parameter is ignored.
        radius_sampling: ``continuous`` or ``integer`` (``high`` excluded).
    """
    if not isinstance(volume_size, (int, np.integer)) or volume_size < MIN_VOLUME_SIZE:
        raise ValueError(
            f"volume_size must be an integer >= {MIN_VOLUME_SIZE}, got {volume_size!r}"
        )
    counts = dict(
        n_train=n_train, n_validation=n_validation, n_calibration=n_calibration, n_test=n_test
    )
    splits = split_by_index(counts)
    parameter = noise_parameter(noise_model, noise, noise_max)
    check_choice(radius_sampling, "radius_sampling", RADIUS_SAMPLINGS)
    ranges = {
        "training": _check_radii(train_radii, "train_radii", volume_size, radius_sampling),
        "test": _check_radii(test_radii, "test_radii", volume_size, radius_sampling),
    }
    model = {"noise_model": noise_model, NOISE_MODELS[noise_model]: parameter}

    provenance = generated_provenance(
        "synthetic-spheres",
        "segrobust.data.spheres.generate_sphere_dataset",
        {
            "volume_size": int(volume_size),
            **{key: int(value) for key, value in counts.items()},
            "train_radii": list(ranges["training"]),
            "test_radii": list(ranges["test"]),
            **model,
            "radius_sampling": radius_sampling,
            "seed": int(seed),
        },
    )
    # one case per index, written as data.textures writes its images (`duplicates` pairs the
    # loops); the cases themselves have nothing in common
    with DatasetWriter(out_dir, provenance) as writer:
        for index, split in enumerate(splits):
            radii = ranges["training" if split in TRAINING_SPLITS else "test"]
            image, label, radius = sphere_case(
                index,
                volume_size=volume_size,
                radii=radii,
                seed=seed,
                radius_sampling=radius_sampling,
                **model,
            )
            n_fg = int(label.sum())
            writer.add(
                f"sphere_{index:04d}",
                image,
                label,
                split=split,
                spacing=(1.0, 1.0, 1.0),
                radius=radius,
                fg_ratio=n_fg / label.size,
                fbr=n_fg / (label.size - n_fg),
                complexity=lbp_complexity(image, label),
            )
