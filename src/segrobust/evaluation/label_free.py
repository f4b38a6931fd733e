"""What ``predict`` can say about an image nobody has labelled: statistics of the model-space
image and of the model's own prediction on it.

Evaluation records them for every in-domain calibration image (``calibration.json``'s
calibrated range, ``segrobust.guarantees.calibration_file``) and predict computes them for a new
image: a new image outside the calibrated range gets no guarantee.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from segrobust.data.complexity import lbp_complexity
from segrobust.evaluation.metrics import foreground_ratio, soft_quality

#: Threshold of the reported mask (as in evaluation, ``segrobust.evaluation.evaluate``).
MASK_THRESHOLD = 0.5


def noise_sigma(image: np.ndarray) -> float:
    """Robust estimate of the standard deviation of additive Gaussian noise in ``image``.

    The wavelet estimator of Donoho & Johnstone (1994): the median absolute deviation of the
    finest-scale diagonal wavelet coefficients divided by 0.6745 (the MAD of a standard
    normal). The diagonal band (a difference along every axis) holds little of an image's
    structure, so the estimate follows the noise; on fine textures it includes some texture,
    which is why a new image is compared against the same estimate on the calibration images,
    not against a noise level. Measured on the model-space image (after normalisation), so it
    is in the units the model saw; NaN for an image with an axis shorter than 2.

    This is ``skimage.restoration.estimate_sigma`` with the Haar (db1) wavelet, written out
    because that function needs PyWavelets, which segrobust does not depend on: the orthonormal
    Haar diagonal coefficient of a 2 x 2 (x 2) block is its signed sum / 2^(ndim / 2), so pure
    noise of standard deviation sigma gives coefficients of standard deviation sigma.
    """
    detail = np.asarray(image, dtype=np.float64)
    if min(detail.shape) < 2:
        return float("nan")
    for axis in range(detail.ndim):
        even = [slice(None)] * detail.ndim
        odd = [slice(None)] * detail.ndim
        stop = detail.shape[axis] // 2 * 2
        even[axis], odd[axis] = slice(0, stop, 2), slice(1, stop, 2)
        detail = (detail[tuple(even)] - detail[tuple(odd)]) / np.sqrt(2.0)
    return float(np.median(np.abs(detail)) / norm.ppf(0.75))


def label_free_statistics(
    image: np.ndarray, prob: np.ndarray, lbp_codes: np.ndarray | None = None
) -> dict[str, float]:
    """What ``predict`` reports about an image without a label, from the model-space image and
    the model's probabilities on it (``lbp_codes``: the image's
    ``segrobust.data.complexity.analysis_codes`` when its dataset's cache holds them; the same
    statistics, without recomputing the image's LBP).

    Returns:
        ``complexity`` (LBP KL divergence in bits, ``segrobust.data.complexity``, under the
        predicted mask ``prob >= 0.5``; NaN when that mask is empty or full),
        ``predicted_fg_ratio`` (foreground fraction of that mask), ``noise_sigma``
        (:func:`noise_sigma`) and ``quality`` (the soft-Dice self-estimate the Dice bound is
        calibrated on, ``segrobust.evaluation.metrics.soft_quality``).
    """
    mask = np.asarray(prob) >= MASK_THRESHOLD
    return {
        "complexity": lbp_complexity(image, mask, codes=lbp_codes),
        "predicted_fg_ratio": foreground_ratio(mask),
        "noise_sigma": noise_sigma(image),
        "quality": soft_quality(prob),
    }
