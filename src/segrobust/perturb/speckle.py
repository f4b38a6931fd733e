"""Speckle noise: multiplicative Gaussian noise, the papers' "harder" perturbation.

``image * (1 + n)`` with ``n ~ N(0, var)`` per pixel, exactly scikit-image's
``random_noise(mode="speckle")``, applied to the image scaled to [0, 1] and clipped to [0, 1]
(skimage's default), then scaled back, so the result stays within the clean image's range.

Severity grid (``var``, the variance of ``n``; dimensionless): 0.05, 0.1, 0.2, 0.3, 0.5.
The skip-connection study's "Harder" is var 0.1 (severity 2) and "Hardest" var 0.3 (severity 4);
severities 1, 3 and 5 fill in and extend the curve. For comparison MedMNIST-C (Di Salvo et al.
2024) uses speckle standard deviations 0.10..0.30 on BreastMNIST (var 0.01..0.09) and 0.15..0.60 on
OCTMNIST (var 0.02..0.36).
"""

from __future__ import annotations

import numpy as np
from skimage.util import random_noise

from segrobust.perturb.base import Perturbation, to_unit_range


def speckle(
    image: np.ndarray, label: np.ndarray, *, var: float, rng: np.random.Generator
) -> np.ndarray:
    """Speckle noise of variance ``var`` (severities 1..5: var 0.05, 0.1, 0.2, 0.3, 0.5;
    papers: 0.1 = Harder, 0.3 = Hardest; grid from the skip-connection study and MedMNIST-C)."""
    unit, lo, span = to_unit_range(image)
    noisy = random_noise(unit, mode="speckle", var=var, mean=0.0, rng=rng, clip=True)
    return noisy * span + lo


PERTURBATION = Perturbation(
    name="speckle",
    severities=tuple({"var": v} for v in (0.05, 0.1, 0.2, 0.3, 0.5)),
    units={"var": "variance of the multiplicative noise (dimensionless)"},
    reference="skip-connection study (var 0.1 Harder, 0.3 Hardest); MedMNIST-C speckle_noise",
    transform=speckle,
)
