"""Speckle noise: multiplicative Gaussian noise, the papers' "harder" perturbation.

``x * (1 + n)`` with ``n ~ N(0, var)`` per pixel, exactly scikit-image's
``random_noise(mode="speckle")``, clipped to [0, 1] (skimage's default). On which intensity scale
``x`` lives is the ``scaling`` option:

- ``fixed`` (default, the papers' behaviour): ``x`` is the stored image itself, on the fixed
  range [0, 1] of the 2D data contract (BUSI and GlaS divided by 255, textures in [0, 1], CT
  windowed to [0, 1]). The papers passed uint8 images to ``random_noise``, which scales by the
  dtype range (0..255 -> 0..1), so their noise was relative to the full intensity range: a pixel's
  noise standard deviation is ``sqrt(var) * x``. An image outside [0, 1] is rejected (use
  ``minmax``). The papers then stored the result as uint8 again; that quantisation (steps of 1/255)
  is not reproduced.
- ``minmax``: ``x`` is the image min-max scaled to [0, 1]; the result is scaled back, so it stays
  within the clean image's range and the damage is the same for any intensity unit. A pixel's
  noise standard deviation is then ``sqrt(var) * (value - min)``: on an image spanning 30..230 grey
  levels a pixel at 130 gets 0.1 * 100 = 10 grey levels at var 0.01, against 0.1 * 130 = 13 with
  ``fixed``, and the darkest pixels none.

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

#: The ``scaling`` option's values, the default first.
SCALINGS = ("fixed", "minmax")


def speckle(
    image: np.ndarray, label: np.ndarray, *, var: float, rng: np.random.Generator, scaling: str
) -> np.ndarray:
    """Speckle noise of variance ``var`` (severities 1..5: var 0.05, 0.1, 0.2, 0.3, 0.5;
    papers: 0.1 = Harder, 0.3 = Hardest; grid from the skip-connection study and MedMNIST-C) on the
    ``scaling`` intensity scale (``fixed`` [0, 1] or per-image ``minmax``)."""
    if scaling == "minmax":
        unit, lo, span = to_unit_range(image)
        noisy = random_noise(unit, mode="speckle", var=var, mean=0.0, rng=rng, clip=True)
        return noisy * span + lo
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"speckle scaling 'fixed' needs an image in [0, 1] (the 2D data contract), got values "
            f"in [{lo:g}, {hi:g}]; use scaling 'minmax' for other intensity ranges"
        )
    return random_noise(image, mode="speckle", var=var, mean=0.0, rng=rng, clip=True)


PERTURBATION = Perturbation(
    name="speckle",
    display_name="speckle noise",
    severities=tuple({"var": v} for v in (0.05, 0.1, 0.2, 0.3, 0.5)),
    units={"var": "variance of the multiplicative noise (dimensionless)"},
    reference="skip-connection study (var 0.1 Harder, 0.3 Hardest); MedMNIST-C speckle_noise",
    transform=speckle,
    options={"scaling": SCALINGS},
)
