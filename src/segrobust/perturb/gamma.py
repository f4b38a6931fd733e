"""Gamma contrast change: a different scanner / protocol contrast.

``((x - min) / range) ** gamma * range + min``: MONAI's ``AdjustContrast``, which keeps the
intensity range. Damage has to grow with severity, so the grid is one-sided: contrast expansion,
gamma > 1, moving further from the identity (gamma = 1) at every step. Gamma on both sides of 1
would mix two different shifts (darkening and brightening mid-tones) under one severity number.

Severity grid (``gamma``, dimensionless exponent): 1.4, 1.8, 2.2, 2.6, 3.0 — ROOD-MRI's
ContrastExpansion grid (Boone et al. 2023). For reference ROOD-MRI's ContrastCompression uses
0.86..0.30 and MedMNIST-C's gamma_corr_up 1.1..1.6 (ChestMNIST) or 1.3..2.0 (OrganMNIST).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import AdjustContrast
from monai.utils import convert_to_numpy

from segrobust.perturb.base import Perturbation


def gamma_contrast(
    image: np.ndarray, label: np.ndarray, *, gamma: float, rng: np.random.Generator
) -> np.ndarray:
    """Gamma contrast expansion, range-preserving (severities 1..5: gamma 1.4, 1.8, 2.2, 2.6,
    3.0; ROOD-MRI ContrastExpansion grid). Deterministic: ``rng`` is not used."""
    return convert_to_numpy(AdjustContrast(gamma=gamma)(torch.as_tensor(image)))


PERTURBATION = Perturbation(
    name="gamma",
    display_name="gamma",
    severities=tuple({"gamma": v} for v in (1.4, 1.8, 2.2, 2.6, 3.0)),
    units={"gamma": "exponent on the range-normalised intensity (dimensionless)"},
    reference="ROOD-MRI ContrastExpansion (MONAI AdjustContrast)",
    transform=gamma_contrast,
    random=False,
)
