"""Motion: the patient moves during acquisition, so k-space mixes several poses (MRI).

k-space is filled line by line along the phase-encoding axis; ``num_transforms`` movements at
random times split the lines into segments, each acquired with the object in another rigid pose
(rotation up to ``degrees`` about every axis, translation up to ``translation`` voxels along
every axis, uniformly drawn). The image is the real part of the inverse FFT of that mixed
k-space. This follows TorchIO's ``Motion`` model (Shaw et al. 2019), which ROOD-MRI uses; TorchIO
is not a dependency, so it is written here with numpy's FFT and ``scipy.ndimage.affine_transform``.
One deliberate difference: the segment holding the k-space centre keeps the original pose, so the
object stays where the (unchanged) label says it is and only the artefact is added. The
phase-encoding axis is one of the first two (in-plane) axes, drawn from ``rng``.

Severity grid (``num_transforms``, count; ``degrees``, max rotation in degrees; ``translation``,
max shift in voxels): (2, 1, 2), (4, 2, 4), (6, 3, 6), (8, 4, 8), (10, 5, 10) — ROOD-MRI's
RandomMotion grid (Boone et al. 2023; translation in mm there, 1 mm voxels).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import affine_transform
from scipy.spatial.transform import Rotation

from segrobust.perturb.base import Perturbation


def random_rotation(ndim: int, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """A rotation with angles uniform in [-degrees, degrees] (one angle in 2D, three in 3D)."""
    if ndim == 2:
        theta = np.deg2rad(rng.uniform(-degrees, degrees))
        return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return Rotation.from_euler("xyz", rng.uniform(-degrees, degrees, 3), degrees=True).as_matrix()


def moved(image: np.ndarray, rotation: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``image`` rotated about its centre and shifted (linear interpolation, edge values beyond)."""
    centre = (np.asarray(image.shape) - 1) / 2.0
    offset = centre - rotation @ centre - shift
    return affine_transform(image, rotation, offset=offset, order=1, mode="nearest")


def motion(
    image: np.ndarray,
    label: np.ndarray,
    *,
    num_transforms: int,
    degrees: float,
    translation: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """k-space rigid-motion artefact (severities 1..5: (num_transforms, degrees, translation
    voxels) (2, 1, 2), (4, 2, 4), (6, 3, 6), (8, 4, 8), (10, 5, 10); ROOD-MRI grid)."""
    axis = int(rng.integers(0, 2))
    n = image.shape[axis]
    # Lines in acquisition order (centred k-space, lowest frequency first); movement times cut it.
    cuts = np.sort(rng.integers(1, n, size=num_transforms))
    segment = np.searchsorted(cuts, np.arange(n), side="right")  # segment index of each line
    centre_segment = segment[n // 2]
    kspace = np.fft.fftshift(np.fft.fftn(image))
    mixed = kspace.copy()
    for index in range(num_transforms + 1):
        rotation = random_rotation(image.ndim, degrees, rng)
        shift = rng.uniform(-translation, translation, image.ndim)
        lines = np.flatnonzero(segment == index)
        if index == centre_segment or lines.size == 0:
            continue
        moved_kspace = np.fft.fftshift(np.fft.fftn(moved(image, rotation, shift)))
        index_lines = tuple(lines if a == axis else slice(None) for a in range(image.ndim))
        mixed[index_lines] = moved_kspace[index_lines]
    return np.real(np.fft.ifftn(np.fft.ifftshift(mixed)))


PERTURBATION = Perturbation(
    name="motion",
    display_name="motion",
    severities=tuple(
        {"num_transforms": m, "degrees": d, "translation": t}
        for m, d, t in ((2, 1, 2), (4, 2, 4), (6, 3, 6), (8, 4, 8), (10, 5, 10))
    ),
    units={
        "num_transforms": "number of movements during acquisition (count)",
        "degrees": "maximum rotation about each axis (degrees)",
        "translation": "maximum translation along each axis (voxels)",
    },
    reference="ROOD-MRI RandomMotion (TorchIO RandomMotion)",
    transform=motion,
)
