"""Rician noise: the noise of a magnitude MR image.

``sqrt((x + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, (std * sd(x))^2)``, MONAI's ``RandRicianNoise``
with ``relative=True`` (noise relative to the image's standard deviation) and ``sample_std=False``
(the standard deviation is the severity's, not sampled below it), as ROOD-MRI uses it. The model
is for non-negative magnitudes, so it acts on the image shifted to minimum 0 and the shift is
undone afterwards (a CT image in HU keeps its air at its minimum).

Severity grid (``std``, fraction of the image's intensity standard deviation): 0.16, 0.32, 0.48,
0.64, 0.80 — ROOD-MRI's RicianNoise grid (Boone et al. 2023).
"""

from __future__ import annotations

import numpy as np
from monai.transforms import RandRicianNoise

from segrobust.perturb.base import Perturbation, on_shifted_image


def rician_noise(
    image: np.ndarray, label: np.ndarray, *, std: float, rng: np.random.Generator
) -> np.ndarray:
    """Rician noise of standard deviation ``std`` x the image's standard deviation
    (severities 1..5: std 0.16, 0.32, 0.48, 0.64, 0.80; ROOD-MRI grid)."""
    noise = RandRicianNoise(
        prob=1.0, mean=0.0, std=std, relative=True, sample_std=False, dtype=np.float64
    )
    return on_shifted_image(noise, image, rng)


PERTURBATION = Perturbation(
    name="rician_noise",
    severities=tuple({"std": v} for v in (0.16, 0.32, 0.48, 0.64, 0.80)),
    units={"std": "fraction of the image intensity standard deviation"},
    reference="ROOD-MRI RicianNoise (MONAI RandRicianNoise, relative=True)",
    transform=rician_noise,
)
