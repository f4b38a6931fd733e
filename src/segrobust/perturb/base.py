"""What every perturbation shares: its description, severity checks and intensity handling.

A perturbation maps a clean test image to a degraded copy at one of five severities. Its five
parameter values are fixed and documented (``Perturbation.severities``), so a severity number means
the same damage in every study, and the label is never touched: perturbations change how an image
looks, not what it shows.

Intensities are floats of any range (CT in HU, MRI in arbitrary units, ultrasound in [0, 1]).
Parameters that need a scale (noise levels) are relative to the image's own intensity range
``max - min``; multiplicative ones (bias field, Rician magnitude) act on the image shifted
so that its minimum is 0, and the shift is undone afterwards. A constant image has no range; it is
treated as having range 1 so that the noise levels still mean something. Speckle by default acts on
the fixed range [0, 1] of the 2D data contract instead, as the papers did (its ``scaling`` option).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.utils import convert_to_numpy

#: The severities every perturbation defines, mildest first.
SEVERITIES = (1, 2, 3, 4, 5)

Transform = Callable[..., np.ndarray]


def check_severity(name: str, severity: Any) -> int:
    """Return ``severity`` if it is an integer in 1..5, else raise naming the allowed values."""
    valid = isinstance(severity, (int, np.integer)) and not isinstance(severity, bool)
    if not valid or int(severity) not in SEVERITIES:
        allowed = ", ".join(str(s) for s in SEVERITIES)
        raise ValueError(
            f"perturbation {name!r}: severity {severity!r} invalid; allowed: {allowed}"
        )
    return int(severity)


@dataclass(frozen=True, eq=False)
class Perturbation:
    """One registered perturbation.

    Args:
        name: the registry / config name.
        severities: the parameter values of severities 1..5, one mapping per severity
            (parameter name -> value), mildest first.
        units: unit of each parameter.
        reference: where the grid comes from (ROOD-MRI, MedMNIST-C, the papers).
        transform: ``transform(image, label, rng=rng, **parameters, **options)`` on a float64
            image, returning an array of the same shape. ``label`` is passed read-only.
        random: whether the result depends on ``rng`` (False for blurs, gamma, resolution).
        options: design choices that are not a severity (e.g. speckle's intensity scaling): option
            name -> its allowed values, the first being the default. Every option reaches
            ``transform`` as a keyword, defaulted where the caller does not set it.
    """

    name: str
    severities: tuple[Mapping[str, float], ...]
    units: Mapping[str, str]
    reference: str
    transform: Transform = field(repr=False)
    random: bool = True
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.severities) != len(SEVERITIES):
            raise ValueError(f"perturbation {self.name!r} needs {len(SEVERITIES)} severities")
        # The defining module's docstring documents the model, the grid and its source; expose
        # it as this entry's docstring (help(PERTURBATIONS.get("speckle")) shows it).
        module = inspect.getmodule(self.transform)
        doc = module.__doc__ if module is not None and module.__doc__ else self.transform.__doc__
        object.__setattr__(self, "__doc__", doc)

    def parameters(self, severity: int) -> dict[str, float]:
        """The parameter values of ``severity`` (1..5)."""
        return dict(self.severities[check_severity(self.name, severity) - 1])

    def resolve_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option of this perturbation: the given values, checked, and the defaults.

        Raises:
            ValueError: an unknown option name or value, naming the allowed ones.
        """
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "(none)"
            raise ValueError(
                f"perturbation {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                f"allowed: {allowed}"
            )
        resolved = {}
        for name, allowed in self.options.items():
            value = options.get(name, allowed[0])
            if value not in allowed:
                raise ValueError(
                    f"perturbation {self.name!r}: option {name} = {value!r} invalid; "
                    f"allowed: {', '.join(allowed)}"
                )
            resolved[name] = value
        return resolved

    def apply(
        self,
        image: np.ndarray,
        label: np.ndarray,
        severity: int,
        rng: np.random.Generator,
        options: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        """Perturb ``image`` at ``severity`` with ``options`` (defaults where not given);
        returns float32 of the same shape.

        Neither ``image`` nor ``label`` is modified (the label is handed on read-only).
        """
        params = self.parameters(severity)
        chosen = self.resolve_options(options)
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(
                f"perturbation {self.name!r}: expected a 2D or 3D image, got {image.shape}"
            )
        label = np.asarray(label)
        if label.shape != image.shape:
            raise ValueError(
                f"perturbation {self.name!r}: label shape {label.shape} "
                f"!= image shape {image.shape}"
            )
        label = label.view()
        label.flags.writeable = False
        out = self.transform(image.astype(np.float64), label, rng=rng, **params, **chosen)
        if out.shape != image.shape:
            raise AssertionError(f"perturbation {self.name!r} changed the shape to {out.shape}")
        return np.asarray(out, dtype=np.float32)


def intensity_range(image: np.ndarray) -> tuple[float, float]:
    """``(min, max - min)`` of ``image``; a constant image gets range 1 (see module docstring)."""
    lo, hi = float(image.min()), float(image.max())
    return lo, (hi - lo) if hi > lo else 1.0


def to_unit_range(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Scale ``image`` to [0, 1]; returns the scaled image, its minimum and its range."""
    lo, span = intensity_range(image)
    return (image - lo) / span, lo, span


def on_shifted_image(transform: Any, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply a randomisable MONAI intensity transform (seeded from ``rng``) to ``image`` shifted
    so that its minimum is 0, and undo the shift: multiplicative and magnitude models (bias
    field, Rician noise) scale signal, not the intensity offset (a CT image keeps its air at its
    minimum)."""
    lo, _ = intensity_range(image)
    transform.set_random_state(seed=seed_from(rng))
    return convert_to_numpy(transform(torch.as_tensor(image - lo)[None]))[0] + lo


def seed_from(rng: np.random.Generator) -> int:
    """A 32-bit seed drawn from ``rng`` for libraries that keep their own RandomState (MONAI)."""
    return int(rng.integers(0, 2**32 - 1))
