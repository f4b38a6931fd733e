"""Additive Gaussian noise, the generic acquisition-noise model.

``image + n`` with ``n ~ N(0, (std * range)^2)`` where ``range = max - min`` of the clean image:
scikit-image's ``random_noise(mode="gaussian")`` on the image scaled to [0, 1], clipped to [0, 1]
(skimage's and MedMNIST-C's convention), scaled back.

Severity grid (``std``, fraction of the intensity range): 0.04, 0.08, 0.12, 0.16, 0.20 —
MedMNIST-C's gaussian_noise grid for the OrganMNIST (CT) datasets (Di Salvo et al. 2024), whose
images are in [0, 1] so its standard deviations are fractions of the range as here.
"""

from __future__ import annotations

import numpy as np
from skimage.util import random_noise

from segrobust.perturb.base import Perturbation, to_unit_range


def gaussian_noise(
    image: np.ndarray, label: np.ndarray, *, std: float, rng: np.random.Generator
) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``std`` x intensity range
    (severities 1..5: std 0.04, 0.08, 0.12, 0.16, 0.20; MedMNIST-C OrganMNIST grid)."""
    unit, lo, span = to_unit_range(image)
    noisy = random_noise(unit, mode="gaussian", mean=0.0, var=std**2, rng=rng, clip=True)
    return noisy * span + lo


PERTURBATION = Perturbation(
    name="gaussian_noise",
    display_name="Gaussian noise",
    severities=tuple({"std": v} for v in (0.04, 0.08, 0.12, 0.16, 0.20)),
    units={"std": "fraction of the image intensity range (max - min)"},
    reference="MedMNIST-C gaussian_noise (OrganMNIST grid)",
    transform=gaussian_noise,
)
