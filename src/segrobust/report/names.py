"""What a person reads instead of an internal id: architectures and perturbations by name.

Every figure, legend and report line that names an architecture or a perturbation calls
`display_name` / `perturbation_display_name`; the ids (``noskip_unet``, ``background_blur``) stay
in the tables and file names, where programs read them. An architecture's name is spelled in its
torch-free record (``segrobust.spec.architectures``); a perturbation's here, because its record
(``segrobust.perturb``) imports torch and MONAI, which the figure jobs do not load.

Names not listed (a user's own architecture) are shown as their id with underscores as spaces:
a readable fallback, never an error, so a new registry entry cannot break a figure.
"""

from __future__ import annotations

from segrobust.spec.architectures import ARCHITECTURES

PERTURBATION_NAMES: dict[str, str] = {
    "none": "clean",
    "speckle": "speckle noise",
    "background_blur": "background blur",
    "gaussian_noise": "Gaussian noise",
    "rician_noise": "Rician noise",
    "bias_field": "bias field",
    "ghosting": "ghosting",
    "motion": "motion",
    "gamma": "gamma",
    "blur": "blur",
    "resolution": "low resolution",
}
"""Display name of every registered perturbation (``perturb.catalog.PERTURBATIONS``), and of
the clean test set (``perturbation = none``)."""


def _fallback(name: str) -> str:
    return str(name).replace("_", " ")


def display_name(arch: str) -> str:
    """``noskip_unet`` -> ``No-skip U-Net`` (its record's ``display_name``); a name without a
    record -> the id, underscores as spaces."""
    return ARCHITECTURES.get(arch).display_name if arch in ARCHITECTURES else _fallback(arch)


def perturbation_display_name(name: str) -> str:
    """``background_blur`` -> ``background blur``; ``none`` -> ``clean``."""
    return PERTURBATION_NAMES.get(name, _fallback(name))
