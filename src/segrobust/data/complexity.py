"""Task complexity: how alike foreground and background textures are, per image.

Following the skip-connection study, complexity is the KL divergence (base 2) between the
histograms of rotation-invariant uniform local binary patterns (P=24 neighbours, radius R=3) of the
foreground pixels and of the background pixels. Textures that differ give a large divergence (an
easy task); alike textures give a divergence near zero (a hard task).

A bin that is empty in the background histogram but not in the foreground one makes the divergence
infinite. ``empty_bins`` chooses how that is handled (``EMPTY_BIN_RULES``):

- ``drop`` (default, the study authors' rule): sum ``p log2(p / q)`` only over the bins where both
  histograms are non-zero, without renormalising. The infinite terms are left out, so a background
  that lacks some of the foreground's patterns does not dominate the score. The partial sum can be
  negative, and two histograms without a common non-empty bin score 0.
- ``smooth``: add ``HISTOGRAM_EPS`` to every bin of both histograms and renormalise. Finite, but an
  empty background bin contributes about ``p * log2(p / 1e-10)``, up to 33 bits per unit of
  foreground mass there, which inflates the score (a noisy checkerboard on a clean one, on the
  native grid: 6.44 bits vs 1.53 with ``drop``; docs/design-differences.md).

**Scale.** LBP compares each pixel with neighbours 3 pixels away, so the score depends on the pixel
grid: the same image scores differently at 64 and at 256 px (on 20 texture images a maximum
difference of 0.41 bits, Spearman 0.81; issue 18). The papers compute it on images resized to 256 x
256 px (``ANALYSIS_SIZE``), and so does ``lbp_complexity`` for every 2D image (texture datasets,
prepared and perturbed test sets, calibration and predict's label-free statistics), so the recipe's
complexity bins are in the papers' bits. ``resize_image_for_lbp`` and ``resize_mask_for_lbp``
are that step, as the authors do it (``skimage.transform.resize``): the image bilinearly (order
1) with Gaussian anti-aliasing (which acts only when shrinking), the label bilinearly (order 1)
without anti-aliasing, a pixel being foreground where the resized label is > 0 (so the
foreground gains the partial pixels of its border), both to ``size`` x ``size`` regardless of
the aspect ratio. ``size=None`` keeps the native
grid. The 256 px grid is the papers' scale for 2D images; a 3D volume's axial slices are scored on
their native grid (``slice_size=None``): no paper reports a volume's complexity, and upsampling the
32 px slices of the default spheres 8x per side cost 1.1 s per volume instead of 14 ms (2D 64 px
images: 56 ms instead of 1.1 ms; both on a machine at 148 ms/step of
``benchmarks/machine_speed.py``).
"""

from __future__ import annotations

import numpy as np
from skimage.feature import local_binary_pattern
from skimage.transform import resize

#: The side (px) of the square grid the papers compute LBP complexity on.
ANALYSIS_SIZE = 256

#: Additive smoothing of the histograms under the ``smooth`` rule.
HISTOGRAM_EPS = 1e-10

#: How empty histogram bins are handled (see the module docstring); the first is the default.
EMPTY_BIN_RULES = ("drop", "smooth")


def check_empty_bins(empty_bins: str) -> str:
    """Return ``empty_bins`` if it names a rule of ``EMPTY_BIN_RULES``, else raise naming them."""
    if empty_bins not in EMPTY_BIN_RULES:
        raise ValueError(
            f"empty_bins {empty_bins!r} unknown; allowed: {', '.join(EMPTY_BIN_RULES)}"
        )
    return empty_bins


def _check_analysis_size(size: int | None) -> None:
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 7:
        raise ValueError(f"LBP analysis size must be None or an integer >= 7 (px), got {size!r}")


def resize_image_for_lbp(image: np.ndarray, size: int | None = ANALYSIS_SIZE) -> np.ndarray:
    """The image on the ``size`` x ``size`` grid of the papers' LBP (module docstring, "Scale"),
    float64; unchanged for ``size=None``.

    Raises:
        ValueError: ``size`` not None and not an integer >= 2 * radius + 1 (= 7 for R = 3)
    """
    _check_analysis_size(size)
    image = np.asarray(image, dtype=np.float64)
    if size is None:
        return image
    return resize(image, (int(size), int(size)), order=1, anti_aliasing=True, mode="reflect")


def resize_mask_for_lbp(label: np.ndarray, size: int | None = ANALYSIS_SIZE) -> np.ndarray:
    """The foreground mask (``label > 0``) on the same grid as :func:`resize_image_for_lbp`
    (bool; unchanged for ``size=None``)."""
    _check_analysis_size(size)
    mask = np.asarray(label) > 0
    if size is None:
        return mask
    shape = (int(size), int(size))
    return resize(mask.astype(np.float64), shape, order=1, anti_aliasing=False) > 0


def lbp_codes(image: np.ndarray, points: int = 24, radius: float = 3) -> np.ndarray:
    """Uniform LBP code per pixel of a 2D image (codes 0..points+1).

    The image is rescaled to 0..255 and rounded to integers first: LBP compares neighbour
    intensities, and skimage warns on (and treats inconsistently) raw floating-point input.
    Rounding, not truncation: a resized flat region holds values like 0.9999999999999999, which
    truncation would split between 254 and 255 and so into different codes.
    """
    image = np.asarray(image, dtype=np.float64)
    lo, hi = float(image.min()), float(image.max())
    scaled = np.zeros_like(image) if hi <= lo else (image - lo) / (hi - lo) * 255.0
    return local_binary_pattern(np.rint(scaled).astype(np.uint8), points, radius, method="uniform")


def analysis_codes(
    image: np.ndarray, points: int = 24, radius: float = 3, size: int | None = ANALYSIS_SIZE
) -> np.ndarray:
    """The LBP codes (uint8) of a 2D image on the ``size`` x ``size`` analysis grid: the part of
    :func:`lbp_complexity_2d` that depends on the image alone, not on the mask.

    Evaluation scores one image under many models' predicted masks (``segrobust.evaluation.
    label_free``), and at the papers' 256 px this resize and LBP take ~95% of the score's time
    (~19 ms per image on a machine at ~50 ms/step of ``benchmarks/machine_speed.py``); the
    dataset's array cache keeps these codes so that each image pays for them once
    (``segrobust.data.dataset``).
    """
    return lbp_codes(resize_image_for_lbp(image, size), points, radius).astype(np.uint8)


def lbp_histogram(codes: np.ndarray, mask: np.ndarray, points: int = 24) -> np.ndarray:
    """Normalised histogram of the LBP ``codes`` under ``mask`` (``points + 2`` bins)."""
    counts = np.bincount(codes[mask].astype(np.int64), minlength=points + 2).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def kl_divergence_bits(
    p: np.ndarray, q: np.ndarray, empty_bins: str = "drop", eps: float = HISTOGRAM_EPS
) -> float:
    """KL(p || q) in bits of two histograms (each normalised to sum 1 first).

    ``empty_bins="drop"`` sums over the bins where both are non-zero (not renormalised);
    ``"smooth"`` adds ``eps`` to every bin and renormalises. See the module docstring.
    """
    check_empty_bins(empty_bins)
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or not (p.sum() > 0 and q.sum() > 0) or (p < 0).any() or (q < 0).any():
        raise ValueError(
            f"histograms must have the same length, no negative bins and positive mass; got "
            f"p={p.tolist()} and q={q.tolist()}"
        )
    p, q = p / p.sum(), q / q.sum()
    if empty_bins == "drop":
        both = (p > 0) & (q > 0)
        return float(np.sum(p[both] * np.log2(p[both] / q[both])))
    p, q = p + eps, q + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log2(p / q)))


def lbp_complexity_2d(
    image: np.ndarray,
    label: np.ndarray,
    points: int = 24,
    radius: float = 3,
    empty_bins: str = "drop",
    size: int | None = ANALYSIS_SIZE,
    codes: np.ndarray | None = None,
) -> float:
    """KL divergence (bits) of foreground vs background LBP histograms of one 2D image, on the
    ``size`` x ``size`` grid (``resize_image_for_lbp``; None: the native grid).

    ``codes``: the image's :func:`analysis_codes` with the same ``points``, ``radius`` and
    ``size`` when already known (the same result, without recomputing them).

    Returns NaN when the label has no foreground or no background pixel (undefined).
    """
    check_empty_bins(empty_bins)
    if np.asarray(label).all() or not np.asarray(label).any():
        return float("nan")
    fg = resize_mask_for_lbp(label, size)
    if fg.all() or not fg.any():
        return float("nan")
    if codes is None:
        codes = analysis_codes(image, points, radius, size)
    elif codes.shape != fg.shape:
        raise ValueError(f"precomputed LBP codes of shape {codes.shape}, mask {fg.shape}")
    return kl_divergence_bits(
        lbp_histogram(codes, fg, points), lbp_histogram(codes, ~fg, points), empty_bins
    )


# The parameters of lbp_complexity_2d, which it applies per slice (`duplicates` pairs the two
# signatures).
def lbp_complexity(
    image: np.ndarray,
    label: np.ndarray,
    points: int = 24,
    radius: float = 3,
    empty_bins: str = "drop",
    size: int | None = ANALYSIS_SIZE,
    slice_size: int | None = None,
    codes: np.ndarray | None = None,
) -> float:
    """Complexity of a 2D image, or of a 3D volume as the mean over its axial slices (last axis)
    that hold both foreground and background (NaN if none does).

    ``empty_bins``: ``drop`` (the authors' rule, default) or ``smooth``; ``size``: the grid a 2D
    image is resized to first (the papers' 256 px; None: native), ``slice_size`` the same for a
    volume's slices (default: native); module docstring. ``codes``: a 2D image's
    :func:`analysis_codes` when already known (``lbp_complexity_2d``).
    """
    check_empty_bins(empty_bins)
    image, label = np.asarray(image), np.asarray(label)
    if image.shape != label.shape:
        raise ValueError(f"image shape {image.shape} != label shape {label.shape}")
    if image.ndim == 2:
        return lbp_complexity_2d(image, label, points, radius, empty_bins, size, codes)
    if image.ndim != 3:
        raise ValueError(f"expected a 2D or 3D image, got {image.ndim} dimensions")
    if codes is not None:
        raise ValueError("precomputed LBP codes are for 2D images only")
    scores = [
        lbp_complexity_2d(image[..., k], label[..., k], points, radius, empty_bins, slice_size)
        for k in range(image.shape[-1])
    ]
    scores = [s for s in scores if np.isfinite(s)]
    return float(np.mean(scores)) if scores else float("nan")
