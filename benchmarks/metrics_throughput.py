"""Time of segrobust's one-pass surface metrics against MONAI's calls, and a check that they agree.

For a 96^3 pair and a 512x512x100 pair (a sphere-ish label of about 5 % of the volume with a bumpy
surface; a prediction that is shifted, slightly shrunk, with its own bumps and one false-positive
blob) it times

* segrobust: ``segrobust.evaluation.metrics.segmentation_metrics`` (Dice, HD, HD95, NSD, ASSD,
  volume error from one surface extraction and one nearest-surface search per direction);
* MONAI as segrobust called it before: ``compute_hausdorff_distance(percentile=95)``,
  ``compute_surface_dice`` and ``compute_average_surface_distance`` (the three distance calls),
  and the same plus ``compute_dice`` (everything the old ``segmentation_metrics`` called);

and prints the medians and the ratios MONAI time / segrobust time (target >= 3 for the three
distance calls). Timings alternate the contenders after one warm-up call each and take the median
of the repeats, so a shared machine's load affects both alike. The values are checked against
MONAI's (relative and absolute 1e-6); a disagreement ends the run with an error. Run from the
repository root::

    PYTHONPATH=src python benchmarks/metrics_throughput.py [--repeats 5] [--threads 1]

Measured on a shared 2-core AMD EPYC virtual machine (load average about 4 from other users;
torch 2.13.0+cpu, MONAI 1.6.1, scipy 1.17.1, numpy 2.4.6) with
``PYTHONPATH=src python3 benchmarks/metrics_throughput.py --repeats 7`` (median ms; ratio = MONAI
time / segrobust time; largest relative difference to MONAI 5.1e-08 and 9.2e-09):

============  =========  ====================  =====  =======================  =====
pair          segrobust  MONAI hd95+nsd+assd   ratio  MONAI with compute_dice  ratio
============  =========  ====================  =====  =======================  =====
96^3          12.1       71.7                  5.9    82.3                     6.8
512x512x100   336.8      2540.3                7.5    3291.1                   9.8
============  =========  ====================  =====  =======================  =====

Three such runs at different loads gave ratios (three distance calls) of 5.9-8.0 for 96^3 and
7.5-10.2 for 512x512x100; the absolute times moved with the load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)
from scipy import ndimage

from segrobust.evaluation.metrics import segmentation_metrics

#: (name, shape, spacing in mm) of the benchmarked pairs.
CASES = (
    ("96^3", (96, 96, 96), (0.8, 0.8, 1.5)),
    ("512x512x100", (512, 512, 100), (0.7, 0.7, 2.5)),
)
#: The NSD tolerance segrobust's configuration used (mm).
NSD_TOLERANCE_MM = 1.0
#: Fraction of the volume the label object fills.
FOREGROUND_FRACTION = 0.05


def bumpy_sphere(
    shape, spacing, center, radius: float, rng: np.random.Generator, bumps: float = 0.08
) -> np.ndarray:
    """A ball of ``radius`` mm around ``center`` (voxel coordinates) whose radius varies smoothly
    by about ``bumps`` of itself: low-resolution noise, smoothed and upsampled to the image."""
    coarse = ndimage.gaussian_filter(rng.standard_normal([max(s // 8, 2) for s in shape]), 1.0)
    coarse /= coarse.std()
    factors = [s / c for s, c in zip(shape, coarse.shape, strict=True)]
    field = ndimage.zoom(coarse, factors, order=1, grid_mode=True, mode="nearest")
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, center, spacing, strict=True))
    return squared <= (radius * (1.0 + bumps * field)) ** 2


def realistic_pair(shape, spacing, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A label ball filling ``FOREGROUND_FRACTION`` of the volume and an imperfect prediction."""
    rng = np.random.default_rng(seed)
    volume_mm3 = float(np.prod(np.asarray(shape) * np.asarray(spacing)))
    radius = (FOREGROUND_FRACTION * volume_mm3 * 3.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    center = np.asarray(shape) / 2.0
    label = bumpy_sphere(shape, spacing, center, radius, rng)
    pred = bumpy_sphere(shape, spacing, center + (2.0, -2.0, 1.0), 0.97 * radius, rng)
    false_positive = center + np.asarray(shape) * (0.35, 0.3, 0.0)
    pred |= bumpy_sphere(shape, spacing, false_positive, 0.08 * radius, rng)
    return pred, label


def median_times(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, run in turn after one warm-up call each."""
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def monai_calls(pred: np.ndarray, label: np.ndarray, spacing) -> dict[str, Callable[[], float]]:
    """MONAI's calls as segrobust made them before the one-pass core, one callable per metric."""
    y_pred, y = torch.from_numpy(pred)[None, None], torch.from_numpy(label)[None, None]
    return {
        "dice": lambda: float(compute_dice(y_pred, y, ignore_empty=False)[0, 0]),
        "hd95": lambda: float(
            compute_hausdorff_distance(
                y_pred, y, include_background=True, percentile=95, spacing=spacing
            )[0, 0]
        ),
        "nsd": lambda: float(
            compute_surface_dice(
                y_pred,
                y,
                class_thresholds=[NSD_TOLERANCE_MM],
                include_background=True,
                spacing=spacing,
            )[0, 0]
        ),
        "assd": lambda: float(
            compute_average_surface_distance(
                y_pred, y, include_background=True, symmetric=True, spacing=spacing
            )[0, 0]
        ),
    }


def check_agreement(ours: dict[str, float], monai: dict[str, float], case: str) -> float:
    """The largest relative difference to MONAI; exits with an error above 1e-6."""
    worst = 0.0
    for name, expected in monai.items():
        difference = abs(ours[name] - expected)
        if difference > 1e-6 + 1e-6 * abs(expected):
            sys.exit(f"{case}: {name} is {ours[name]!r} here but {expected!r} by MONAI")
        worst = max(worst, difference / max(abs(expected), 1e-12))
    return worst


def benchmark(case: str, shape, spacing, repeats: int) -> None:
    pred, label = realistic_pair(shape, spacing)
    calls = monai_calls(pred, label, spacing)

    def ours():
        return segmentation_metrics(pred, label, spacing, NSD_TOLERANCE_MM)

    def monai_distances():
        return [calls[name]() for name in ("hd95", "nsd", "assd")]

    def monai_all():
        return [call() for call in calls.values()]

    worst = check_agreement(ours(), {name: call() for name, call in calls.items()}, case)
    times = median_times(
        {"ours": ours, "monai_distances": monai_distances, "monai_all": monai_all}, repeats
    )
    print(
        f"{case} (foreground {label.mean():.3f}, prediction {pred.mean():.3f}, spacing {spacing}):"
        f" segmentation_metrics {times['ours'] * 1e3:.1f} ms;"
        f" MONAI hd95+nsd+assd {times['monai_distances'] * 1e3:.1f} ms,"
        f" ratio {times['monai_distances'] / times['ours']:.2f}x;"
        f" MONAI with dice {times['monai_all'] * 1e3:.1f} ms,"
        f" ratio {times['monai_all'] / times['ours']:.2f}x;"
        f" largest relative difference to MONAI {worst:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    for case, shape, spacing in CASES:
        benchmark(case, shape, spacing, args.repeats)


if __name__ == "__main__":
    main()
