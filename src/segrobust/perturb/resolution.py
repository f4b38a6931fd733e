"""Lower resolution: the image is downsampled by a factor and upsampled back to its shape.

Downsampling uses ``skimage.transform.resize`` with anti-aliasing (a Gaussian prefilter, as a
scanner's larger voxels average the signal) and linear interpolation; upsampling back to the
original shape is cubic-spline: linear interpolation from the coarse grid leaves kinks whose
spurious high frequencies make the loss of detail non-monotone at non-integer factors. All axes
are downsampled by the same factor (isotropic), each to at least one pixel.

Severity grid (``factor``, downsampling factor per axis; dimensionless): 1.6, 2.2, 2.8, 3.4, 4.0
— ROOD-MRI's isotropic downsampling grid (Boone et al. 2023, ``linspace(1, 4, 6)[1:]``);
MedMNIST-C's pixelate scales 0.8..0.25 (factors 1.25..4) span a similar range.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from segrobust.perturb.base import Perturbation


def resolution(
    image: np.ndarray, label: np.ndarray, *, factor: float, rng: np.random.Generator
) -> np.ndarray:
    """Downsample by ``factor`` then upsample back (severities 1..5: factor 1.6, 2.2, 2.8,
    3.4, 4.0; ROOD-MRI grid). Deterministic: ``rng`` is not used."""
    small_shape = tuple(max(1, int(round(n / factor))) for n in image.shape)
    small = resize(image, small_shape, order=1, anti_aliasing=True, preserve_range=True)
    return resize(small, image.shape, order=3, anti_aliasing=False, preserve_range=True)


PERTURBATION = Perturbation(
    name="resolution",
    display_name="low resolution",
    severities=tuple({"factor": v} for v in (1.6, 2.2, 2.8, 3.4, 4.0)),
    units={"factor": "downsampling factor per axis (dimensionless)"},
    reference="ROOD-MRI isotropic downsampling",
    transform=resolution,
    random=False,
)
