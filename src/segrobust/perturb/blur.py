"""Gaussian blur of the whole image: lost sharpness (defocus, partial volume, smoothing filters).

``scipy.ndimage.gaussian_filter`` with the same ``sigma`` along every axis and mirrored borders.
(MONAI's ``GaussianSmooth`` pads with zeros, which darkens the image border; scipy's reflecting
border does not.)

Severity grid (``sigma``, Gaussian standard deviation in pixels / voxels): 0.8, 1.6, 2.4, 3.2,
4.0 — ROOD-MRI's Smoothing grid (Boone et al. 2023), given in mm for 1 mm isotropic brain MRI and
applied here in voxels, since a perturbation sees no spacing. MedMNIST-C's gaussian_blur kernel
sizes (3..13 px on ChestMNIST) cover a similar range.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from segrobust.perturb.base import Perturbation


def blur(
    image: np.ndarray, label: np.ndarray, *, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Whole-image Gaussian blur (severities 1..5: sigma 0.8, 1.6, 2.4, 3.2, 4.0 pixels;
    ROOD-MRI Smoothing grid). Deterministic: ``rng`` is not used."""
    return gaussian_filter(image, sigma=sigma, mode="reflect")


PERTURBATION = Perturbation(
    name="blur",
    display_name="blur",
    severities=tuple({"sigma": v} for v in (0.8, 1.6, 2.4, 3.2, 4.0)),
    units={"sigma": "Gaussian standard deviation in pixels (voxels)"},
    reference="ROOD-MRI Smoothing",
    transform=blur,
    random=False,
)
