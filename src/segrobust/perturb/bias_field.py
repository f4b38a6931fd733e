"""Bias field: a smooth multiplicative intensity inhomogeneity, as from an MR receive coil.

``x * exp(p(r))`` where ``p`` is a Legendre polynomial of degree 3 over the image normalised to
[-1, 1] per axis, with coefficients drawn uniformly in ``[-c, c]``: MONAI's ``RandBiasField``,
the same model as TorchIO's ``RandomBiasField`` that ROOD-MRI uses. It acts on the image shifted to
minimum 0 (the shift is undone afterwards) so the field scales signal, not the intensity offset.
Because MONAI draws ``-c + 2c u`` from one uniform ``u``, the same generator state gives the same
field shape at every severity, scaled by ``c``: damage grows monotonically with severity.

Severity grid (``coefficient``, the bound ``c`` on the polynomial coefficients; dimensionless,
degree 3): 0.3, 0.6, 0.9, 1.2, 1.5 — ROOD-MRI's BiasField grid (Boone et al. 2023).
"""

from __future__ import annotations

import numpy as np
from monai.transforms import RandBiasField

from segrobust.perturb.base import Perturbation, on_shifted_image

#: Polynomial degree of the field (TorchIO's and ROOD-MRI's default).
DEGREE = 3


def bias_field(
    image: np.ndarray, label: np.ndarray, *, coefficient: float, rng: np.random.Generator
) -> np.ndarray:
    """Multiplicative degree-3 polynomial bias field, coefficients in [-c, c]
    (severities 1..5: c 0.3, 0.6, 0.9, 1.2, 1.5; ROOD-MRI grid)."""
    field = RandBiasField(
        degree=DEGREE, coeff_range=(-coefficient, coefficient), prob=1.0, dtype=np.float64
    )
    return on_shifted_image(field, image, rng)


PERTURBATION = Perturbation(
    name="bias_field",
    severities=tuple({"coefficient": v} for v in (0.3, 0.6, 0.9, 1.2, 1.5)),
    units={"coefficient": "bound on the log-field polynomial coefficients (dimensionless)"},
    reference="ROOD-MRI BiasField (TorchIO RandomBiasField coefficients); MONAI RandBiasField",
    transform=bias_field,
)
