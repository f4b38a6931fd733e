"""Ghosting: faint shifted copies of the object along the phase-encoding direction (MRI).

Periodic errors between k-space lines (e.g. from breathing or a pulsing vessel) scale every
``num_ghosts``-th line of k-space along the phase-encoding axis by ``1 - intensity``; the image
then holds ``num_ghosts`` copies of itself shifted by ``1 / num_ghosts`` of the field of view.
This is TorchIO's ``Ghosting`` model, which ROOD-MRI uses. TorchIO is not a dependency of this
project, so the few lines of k-space arithmetic are written here with numpy's FFT. The zero
frequency line is kept (TorchIO's ``restore`` of the k-space centre) so the mean intensity
profile is unchanged, and the real part of the inverse FFT is the result (the input is real).
The phase-encoding axis is one of the first two (in-plane) axes, drawn from ``rng``.

Severity grid (``intensity``, dimensionless attenuation of the affected k-space lines):
0.5, 1.0, 1.5, 2.0, 2.5 with ``num_ghosts`` 7 (count) at every severity. The intensities are
ROOD-MRI's Ghosting grid (Boone et al. 2023). ROOD-MRI also raises num_ghosts 3, 5, 7, 9, 11 with
severity, but the artefact energy, ``intensity^2`` times the k-space energy on every
``num_ghosts``-th line, then depends on where the image's spectrum peaks and is not monotone in
severity (it fell from severity 4 to 5 on a test image); with num_ghosts fixed at ROOD-MRI's
middle value the energy grows as ``intensity^2`` for every image.
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
    """k-space ghosting (severities 1..5: intensity 0.5, 1.0, 1.5, 2.0, 2.5 with num_ghosts 7;
    ROOD-MRI intensity grid)."""
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
    display_name="ghosting",
    severities=tuple({"num_ghosts": 7, "intensity": i} for i in (0.5, 1.0, 1.5, 2.0, 2.5)),
    units={
        "num_ghosts": "number of ghost copies (count)",
        "intensity": "attenuation of the affected k-space lines (dimensionless)",
    },
    reference="ROOD-MRI Ghosting (TorchIO RandomGhosting)",
    transform=ghosting,
)
