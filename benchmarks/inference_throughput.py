"""Overhead of segrobust's inference and metric wrappers over the MONAI calls they wrap.

(a) Sliding-window inference throughput (voxels/s) of
    ``segrobust.evaluation.infer.predict_probabilities`` (numpy in, sigmoid probabilities out)
    as a ratio to a bare ``monai.inferers.sliding_window_inference`` call on a ready tensor
    with the same settings, same network, same volumes. A ratio near 1 means the wrapper adds
    nothing measurable.
(b) Per-case HD95 time of ``segrobust.evaluation.metrics.hd95`` as a ratio to MONAI's
    ``HausdorffDistanceMetric(percentile=95)`` on the same 96^3 case; the full
    ``segmentation_metrics`` (Dice, HD, HD95, NSD, ASSD, volume) time is printed beside it
    (``benchmarks/metrics_throughput.py`` compares that one against MONAI).

Timings alternate the two contenders and take the median of repeats, so a shared machine's load
affects both alike. Run from the repository root::

    PYTHONPATH=src python benchmarks/inference_throughput.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.metrics import HausdorffDistanceMetric

from segrobust.evaluation.infer import SlidingWindow, predict_probabilities
from segrobust.evaluation.metrics import hd95, segmentation_metrics
from segrobust.networks import build_model

VOLUME_SIZES = (64, 80, 96)
PATCH, OVERLAP, MODE, SW_BATCH = 48, 0.25, "gaussian", 4
SPACING = (0.8, 0.8, 1.5)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_pair(first, second, repeats: int) -> tuple[float, float]:
    """Median seconds of two callables, run alternately after one warm-up call each."""
    first(), second()
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(first))
        b.append(timed(second))
    return statistics.median(a), statistics.median(b)


def inference_ratio(repeats: int) -> None:
    torch.manual_seed(0)
    model = build_model("unet", 3, channels=(8, 16, 32), norm="batch", dropout=0.0).eval()
    rng = np.random.default_rng(0)
    volumes = [rng.random((s, s, s), dtype=np.float32) for s in VOLUME_SIZES]
    voxels = sum(v.size for v in volumes)

    def ours():
        for v in volumes:
            predict_probabilities(
                model, v, patch_size=PATCH, window=SlidingWindow(OVERLAP, MODE, SW_BATCH)
            )

    tensors = [torch.from_numpy(v)[None, None] for v in volumes]

    def monai_direct():
        with torch.inference_mode():
            for t in tensors:
                sliding_window_inference(
                    t, (PATCH,) * 3, SW_BATCH, model, overlap=OVERLAP, mode=MODE
                )

    t_ours, t_monai = median_pair(ours, monai_direct, repeats)
    print(
        f"(a) sliding-window inference, volumes {VOLUME_SIZES}^3, patch {PATCH}, overlap {OVERLAP},"
        f" {MODE}: segrobust {voxels / t_ours / 1e6:.3f} Mvox/s, MONAI direct "
        f"{voxels / t_monai / 1e6:.3f} Mvox/s, throughput ratio {t_monai / t_ours:.3f}"
    )


def sphere(shape, center, radius) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    scaled = [(g - c) * s for g, c, s in zip(grid, center, SPACING, strict=True)]
    return sum(d**2 for d in scaled) <= radius**2


def metric_ratio(repeats: int) -> None:
    shape = (96, 96, 96)
    label = sphere(shape, (48, 48, 40), 30.0)
    rng = np.random.default_rng(1)
    pred = sphere(shape, (50, 46, 42), 28.0) ^ (rng.random(shape) < 0.002)  # shifted, speckled
    metric = HausdorffDistanceMetric(include_background=True, percentile=95)
    y_pred, y = torch.from_numpy(pred)[None, None], torch.from_numpy(label)[None, None]

    def monai_hd95():
        metric.reset()
        metric(y_pred, y, spacing=SPACING)
        return metric.aggregate().item()

    assert np.isclose(hd95(pred, label, SPACING), monai_hd95(), rtol=1e-5)
    t_ours, t_monai = median_pair(lambda: hd95(pred, label, SPACING), monai_hd95, repeats)
    t_all = statistics.median(
        timed(lambda: segmentation_metrics(pred, label, SPACING, 1.0)) for _ in range(repeats)
    )
    print(
        f"(b) HD95 on a 96^3 case: segrobust {t_ours * 1e3:.1f} ms, MONAI HausdorffDistanceMetric "
        f"{t_monai * 1e3:.1f} ms, time ratio {t_ours / t_monai:.3f}; all six metrics "
        f"(segmentation_metrics) {t_all * 1e3:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    inference_ratio(args.repeats)
    metric_ratio(args.repeats)


if __name__ == "__main__":
    main()
