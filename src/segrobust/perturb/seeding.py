"""Random streams for perturbations, reproducible across runs, processes and machines.

Each (image, perturbation, severity, seed) gets its own generator, so a perturbed test image does
not depend on which other images or severities a job happens to process, nor in which order.
The key is hashed with SHA-256 (Python's ``hash()`` of a string is salted per process).
"""

from __future__ import annotations

import hashlib

import numpy as np


def perturbation_rng(
    image_id: str, perturbation: str, severity: int, seed: int
) -> np.random.Generator:
    """The generator perturbing ``image_id`` with ``perturbation`` at ``severity`` for ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    key = f"{image_id}\x00{perturbation}\x00{int(severity)}".encode()
    digest = hashlib.sha256(key).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, len(digest), 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))
