"""Perturbations of test images at five graded severities, and perturbed test sets.

``PERTURBATIONS`` maps config names to ``Perturbation`` entries (one module each: speckle,
background_blur, gaussian_noise, rician_noise, bias_field, ghosting, motion, gamma, blur,
resolution). ``entry.apply(image, label, severity, rng)`` returns a float32 image of the same
shape; ``entry.severities`` holds the documented parameter values of severities 1..5 and
``entry.units`` their units. ``perturbation_rng`` makes each perturbed image reproducible, and
``perturb_test_split`` writes the perturbed test sets of the perturbation study.
"""

from segrobust.perturb.base import SEVERITIES, Perturbation, check_severity
from segrobust.perturb.catalog import PAPER_LEVELS, PERTURBATIONS, paper_level
from segrobust.perturb.seeding import perturbation_rng
from segrobust.perturb.testset import perturb_test_split

__all__ = [
    "PAPER_LEVELS",
    "PERTURBATIONS",
    "SEVERITIES",
    "Perturbation",
    "check_severity",
    "paper_level",
    "perturb_test_split",
    "perturbation_rng",
]
