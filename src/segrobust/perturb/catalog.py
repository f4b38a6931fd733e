"""The perturbation registry and the papers' named difficulty levels.

Every perturbation module defines one ``PERTURBATION``; this module registers them all under
their config names, so adding a perturbation is one module plus one line here plus its tests.
"""

from __future__ import annotations

from segrobust.perturb import (
    background_blur,
    bias_field,
    blur,
    gamma,
    gaussian_noise,
    ghosting,
    motion,
    resolution,
    rician_noise,
    speckle,
)
from segrobust.perturb.base import Perturbation
from segrobust.registry import Registry

PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")

for _module in (
    speckle,
    background_blur,
    gaussian_noise,
    rician_noise,
    bias_field,
    ghosting,
    motion,
    gamma,
    blur,
    resolution,
):
    PERTURBATIONS.register(_module.PERTURBATION.name)(_module.PERTURBATION)

#: The skip-connection study's five named test levels, hardest first, as (perturbation, severity);
#: ``None`` is the clean test set. Speckle var 0.1 / 0.3 and background blur sigma 3 / 7.
PAPER_LEVELS: dict[str, tuple[str, int] | None] = {
    "Hardest": ("speckle", 4),
    "Harder": ("speckle", 2),
    "Unperturbed": None,
    "Easier": ("background_blur", 2),
    "Easiest": ("background_blur", 4),
}


def paper_level(perturbation: str, severity: int) -> str | None:
    """The papers' level name of a (perturbation, severity) test condition, or None if it has
    none; ``("none", 0)`` (the clean test set) is "Unperturbed"."""
    if perturbation == "none" and severity == 0:
        return "Unperturbed"
    for level, condition in PAPER_LEVELS.items():
        if condition == (perturbation, severity):
            return level
    return None
