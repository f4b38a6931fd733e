"""Background-only Gaussian blur, the papers' "easier" perturbation.

Blurring the background texture while the foreground stays intact makes foreground and
background less alike, so the task gets easier. Foreground pixels are returned bit-identical.

The background is blurred by normalised convolution, ``G*(x * b) / G*(b)`` with ``b`` the
background mask and ``G`` a Gaussian (``scipy.ndimage.gaussian_filter``, mirrored borders): a plain
blur followed by pasting the foreground back would smear foreground intensity into a halo around
the object, changing the boundary the model has to find. Every background pixel has positive
weight in its own average, so the division is always defined.

Severity grid (``sigma``, Gaussian standard deviation in pixels / voxels): 1, 3, 5, 7, 9.
The skip-connection study's "Easier" is sigma 3 (severity 2) and "Easiest" sigma 7
(severity 4), mirroring speckle's Harder / Hardest at severities 2 and 4.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from segrobust.perturb.base import Perturbation


def background_blur(
    image: np.ndarray, label: np.ndarray, *, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian blur of the background only (severities 1..5: sigma 1, 3, 5, 7, 9 pixels;
    papers: 3 = Easier, 7 = Easiest). Deterministic: ``rng`` is not used."""
    background = (np.asarray(label) == 0).astype(np.float64)
    if not background.any():
        return image.copy()
    weight = gaussian_filter(background, sigma=sigma, mode="reflect")
    blurred = gaussian_filter(image * background, sigma=sigma, mode="reflect")
    out = image.copy()
    is_bg = background > 0
    out[is_bg] = blurred[is_bg] / weight[is_bg]
    return out


PERTURBATION = Perturbation(
    name="background_blur",
    display_name="background blur",
    severities=tuple({"sigma": v} for v in (1.0, 3.0, 5.0, 7.0, 9.0)),
    units={"sigma": "Gaussian standard deviation in pixels (voxels)"},
    reference="skip-connection study (sigma 3 Easier, sigma 7 Easiest)",
    transform=background_blur,
    random=False,
)
