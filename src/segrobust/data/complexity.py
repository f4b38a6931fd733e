"""Task complexity: how alike foreground and background textures are, per image.

Following the skip-connection study, complexity is the KL divergence (base 2) between the
histograms of rotation-invariant uniform local binary patterns (P=24 neighbours, radius R=3) of the
foreground pixels and of the background pixels. Textures that differ give a large divergence (an
easy task); alike textures give a divergence near zero (a hard task).
"""

from __future__ import annotations

import numpy as np
from skimage.feature import local_binary_pattern

#: Additive smoothing of the histograms so an empty bin does not make the divergence infinite.
HISTOGRAM_EPS = 1e-10


def lbp_codes(image: np.ndarray, points: int = 24, radius: float = 3) -> np.ndarray:
    """Uniform LBP code per pixel of a 2D image (codes 0..points+1).

    The image is rescaled to 0..255 and quantised first: LBP compares neighbour intensities, and
    skimage warns on (and treats inconsistently) raw floating-point input.
    """
    image = np.asarray(image, dtype=np.float64)
    lo, hi = float(image.min()), float(image.max())
    scaled = np.zeros_like(image) if hi <= lo else (image - lo) / (hi - lo) * 255.0
    return local_binary_pattern(scaled.astype(np.uint8), points, radius, method="uniform")


def lbp_histogram(codes: np.ndarray, mask: np.ndarray, points: int = 24) -> np.ndarray:
    """Normalised histogram of the LBP ``codes`` under ``mask`` (``points + 2`` bins)."""
    counts = np.bincount(codes[mask].astype(np.int64), minlength=points + 2).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def kl_divergence_bits(p: np.ndarray, q: np.ndarray, eps: float = HISTOGRAM_EPS) -> float:
    """KL(p || q) in bits of two histograms, smoothed by ``eps`` and renormalised."""
    p = np.asarray(p, dtype=np.float64) + eps
    q = np.asarray(q, dtype=np.float64) + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log2(p / q)))


def lbp_complexity_2d(
    image: np.ndarray, label: np.ndarray, points: int = 24, radius: float = 3
) -> float:
    """KL divergence (bits) of foreground vs background LBP histograms of one 2D image.

    Returns NaN when the label has no foreground or no background pixel (undefined).
    """
    fg = np.asarray(label) > 0
    if fg.all() or not fg.any():
        return float("nan")
    codes = lbp_codes(image, points, radius)
    return kl_divergence_bits(lbp_histogram(codes, fg, points), lbp_histogram(codes, ~fg, points))


def lbp_complexity(
    image: np.ndarray, label: np.ndarray, points: int = 24, radius: float = 3
) -> float:
    """Complexity of a 2D image, or of a 3D volume as the mean over its axial slices (last axis)
    that hold both foreground and background (NaN if none does)."""
    image, label = np.asarray(image), np.asarray(label)
    if image.shape != label.shape:
        raise ValueError(f"image shape {image.shape} != label shape {label.shape}")
    if image.ndim == 2:
        return lbp_complexity_2d(image, label, points, radius)
    if image.ndim != 3:
        raise ValueError(f"expected a 2D or 3D image, got {image.ndim} dimensions")
    scores = [
        lbp_complexity_2d(image[..., k], label[..., k], points, radius)
        for k in range(image.shape[-1])
    ]
    scores = [s for s in scores if np.isfinite(s)]
    return float(np.mean(scores)) if scores else float("nan")
