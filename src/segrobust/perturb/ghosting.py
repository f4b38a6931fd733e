"""Ghosting: faint shifted copies of the object along the phase-encoding direction (MRI).

Periodic errors between k-space lines (e.g. from breathing or a pulsing vessel) scale every
``num_ghosts``-th line of k-space along the phase-encoding axis by ``1 - intensity``; the image
then holds ``num_ghosts`` copies of itself shifted by ``1 / num_ghosts`` of the field of view.
This is TorchIO's ``Ghosting`` model, which ROOD-MRI uses. TorchIO is not a dependency of this
project, so the few lines of k-space arithmetic are written here with numpy's FFT. The zero
frequency line is kept (TorchIO's ``restore`` of the k-space centre) so the mean intensity
profile is unchanged, and the real part of the inverse FFT is the result (the input is real).
The phase-encoding axis is one of the first two (in-plane) axes, drawn from ``rng``.

Severity grid (``num_ghosts``, count; ``intensity``, dimensionless k-space line attenuation):
(3, 0.5), (5, 1.0), (7, 1.5), (9, 2.0), (11, 2.5) — ROOD-MRI's Ghosting grid (Boone et al.
2023). The artefact energy ``intensity^2 / num_ghosts`` grows with severity (0.08 .. 0.57).
"""

from __future__ import annotations

import numpy as np

from segrobust.perturb.base import Perturbation


def ghosting(
    image: np.ndarray,
    label: np.ndarray,
    *,
    num_ghosts: int,
    intensity: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """k-space ghosting (severities 1..5: (num_ghosts, intensity) (3, 0.5), (5, 1.0),
    (7, 1.5), (9, 2.0), (11, 2.5); ROOD-MRI grid)."""
    axis = int(rng.integers(0, 2))
    n = image.shape[axis]
    line_gain = np.ones(n)
    line_gain[::num_ghosts] = 1.0 - intensity  # unshifted FFT order: index 0 is frequency 0
    line_gain[0] = 1.0  # keep the k-space centre
    shape = [1] * image.ndim
    shape[axis] = n
    kspace = np.fft.fftn(image) * line_gain.reshape(shape)
    return np.real(np.fft.ifftn(kspace))


PERTURBATION = Perturbation(
    name="ghosting",
    severities=tuple(
        {"num_ghosts": g, "intensity": i}
        for g, i in ((3, 0.5), (5, 1.0), (7, 1.5), (9, 2.0), (11, 2.5))
    ),
    units={
        "num_ghosts": "number of ghost copies (count)",
        "intensity": "attenuation of the affected k-space lines (dimensionless)",
    },
    reference="ROOD-MRI Ghosting (TorchIO RandomGhosting)",
    transform=ghosting,
)
