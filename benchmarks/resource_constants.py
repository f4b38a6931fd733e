"""Measure the constants of segrobust.spec.resources on this machine's CPU.

Prints each measurement and the values to put into ``segrobust/spec/resources.py`` (per
architecture: its record in ``segrobust/spec/architectures.py``, ``train_s_per_gmac`` and
``infer_s_per_gmac``):

- seconds per training / inference multiply-add of every architecture in 2D and 3D, timed on the
  library's own loops (``train_epoch``; ``predict_probabilities`` on a whole 2D image, or with
  sliding windows of the patch size over a volume of twice its edge in 3D) at the default
  study's sizes, widths and window settings, divided by the voxels the network saw times its
  counted MACs per voxel (``segrobust.spec.network_cost``); the minimum of ``--rounds`` rounds
  after a warm-up round, so other load on a shared machine inflates nothing;
- seconds per voxel of scoring a test image besides the network (reading it, the metrics, the
  false-negative-rate curve), of generating texture images and sphere volumes
  (written to disk as a job does), and of perturbing a test split (the slowest perturbation);
- the start-up time of a job (Python, torch, MONAI and the library imported: a fresh process);
- peak memory: the resident size of a fresh process with the library imported, and the bytes
  per counted activation from training at two batch sizes (the slope of the peak resident size).

Every timing runs on ``--threads`` threads (default 1: the resource formula assumes no speed-up
from more threads, which keeps its estimates conservative).

    PYTHONPATH=src python benchmarks/resource_constants.py [--threads 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

#: (dims, input edge, batch size) of the timing runs: the default study's texture images and
#: context patches (Swin UNETR needs 64^3: at 32^3 its deepest stage is one voxel).
SIZES = {2: (64, 2), 3: (32, 4)}
SWIN_3D_EDGE = 64
TRAIN_SAMPLES = 8


def _best_of(rounds: int, func) -> float:
    func()  # warm-up: allocator, first-call overheads
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def network_constants(rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per training and per inference MAC of every architecture in 2D and 3D."""
    import torch
    from monai.losses import DiceLoss
    from schema_defaults import default_config

    from segrobust.evaluation.infer import SlidingWindow, predict_probabilities
    from segrobust.networks import build_model
    from segrobust.spec.network_cost import macs_per_voxel
    from segrobust.spec.resources import window_count
    from segrobust.training.train import train_epoch

    models = default_config()["models"]
    inference = default_config()["studies"]["context"]["inference"]
    CPU = torch.device("cpu")  # noqa: N806 (a constant of this function)
    out: dict[str, dict[str, float]] = {"train": {}, "infer": {}}
    for dims, (edge, batch) in SIZES.items():
        for arch, kwargs in models.items():
            size = (SWIN_3D_EDGE if arch == "swin_unetr" and dims == 3 else edge,) * dims
            torch.manual_seed(0)
            model = build_model(arch, dims, img_size=size, **kwargs)
            images = torch.rand(TRAIN_SAMPLES, 1, *size)
            labels = (images > 0.5).float()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            scaler = torch.amp.GradScaler("cpu", enabled=False)
            order = torch.arange(TRAIN_SAMPLES)
            loss = DiceLoss(sigmoid=True)

            def epoch(model=model, images=images, labels=labels, optimizer=optimizer,
                      scaler=scaler, order=order, loss=loss, batch=batch) -> None:  # fmt: skip
                train_epoch(model, optimizer, loss, scaler, images, labels, order, batch,
                            CPU, None)  # fmt: skip

            macs = macs_per_voxel(arch, dims, kwargs, size)
            if dims == 2:  # whole images, as the 2D studies predict
                image, window, seen = images[0, 0].numpy(), None, math.prod(size)
            else:  # sliding windows over a volume of twice the patch edge, as the context study
                image = torch.rand(*(2 * e for e in size)).numpy()
                window = SlidingWindow.from_config(inference)
                windows = window_count(image.shape, size[0], window.overlap)
                seen = windows * math.prod(size)

            def infer(model=model, image=image, window=window, size=size) -> None:
                patch = size if window is not None else None
                predict_probabilities(model, image, patch_size=patch, window=window)

            key = f"{arch},{dims}"
            out["train"][key] = (
                _best_of(rounds, epoch) / TRAIN_SAMPLES / (macs * math.prod(size)) * 1e9
            )
            out["infer"][key] = _best_of(rounds, infer) / (macs * seen) * 1e9
            print(f"{key:18s} train {out['train'][key]:.3f} s/GMAC  "
                  f"infer {out['infer'][key]:.3f} s/GMAC", flush=True)  # fmt: skip
    return out


def scoring_constants(rounds: int) -> dict[int, float]:
    """Seconds per voxel of scoring one test image besides the network, as ``evaluate_run``
    does: reading the image and label (NIfTI), the per-image metrics, the false-negative-rate
    curve and the soft quality, on a sphere-like prediction / label pair."""
    import numpy as np

    from segrobust.data.dataset import DatasetWriter, load_split
    from segrobust.evaluation.metrics import fnr_curve, segmentation_metrics, soft_quality

    out = {}
    for dims, edge in ((2, 256), (3, 64)):
        grid = np.indices((edge,) * dims).astype(float)
        radius = np.sqrt(((grid - edge / 2) ** 2).sum(axis=0))
        label = radius < edge / 4
        prob = np.clip(1.0 - (radius - edge / 4) / 4, 0, 1).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            with DatasetWriter(Path(tmp) / "d", provenance={}) as writer:
                writer.add("case", prob, label.astype(np.uint8), split="test",
                           spacing=(1.0,) * dims)  # fmt: skip

            def score(directory=Path(tmp) / "d", d=dims) -> None:
                case = load_split(directory, "test")[0]
                pred, truth = case.image >= 0.5, case.label.astype(bool)
                segmentation_metrics(pred, truth, case.spacing, 5.0, nsd_unit="px")
                fnr_curve(case.image, truth)
                soft_quality(case.image)

            seconds = _best_of(rounds, score)
        out[dims] = seconds / label.size
        print(f"scoring {dims}D {edge}^{dims}: {out[dims] * 1e6:.3f} us/voxel", flush=True)
    return out


def data_constants() -> dict[str, float]:
    """Seconds per image voxel of generating texture images and sphere volumes (the default
    config's entries, fewer images), per voxel and severity of perturbing a test split (the
    slowest perturbation), and per source voxel of preparing an MSD-layout directory."""
    from archives import write_msd_dir
    from schema_defaults import default_config

    from segrobust.data.prepare import prepare_dataset
    from segrobust.data.synthetic import generate_named_dataset
    from segrobust.perturb.catalog import PERTURBATIONS
    from segrobust.perturb.testset import perturb_test_split

    datasets = default_config()["datasets"]
    counts = {"n_train": 4, "n_validation": 2, "n_test": 6, "n_calibration": 2}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for key, name, edge, dims in (("texture", "texture_demo", 64, 2),
                                      ("spheres", "spheres", 32, 3)):  # fmt: skip
            spec = {**datasets[name], **counts}
            spec["image_size" if dims == 2 else "volume_size"] = edge
            start = time.perf_counter()
            generate_named_dataset(tmp / key, spec)
            out[key] = (time.perf_counter() - start) / (sum(counts.values()) * edge**dims)
        worst = 0.0
        for name in PERTURBATIONS.names():
            start = time.perf_counter()
            perturb_test_split(tmp / "texture", name, [1, 3, 5], 0, tmp / f"p-{name}")
            per_voxel = (time.perf_counter() - start) / (counts["n_test"] * 3 * 64**2)
            print(f"perturbation {name}: {per_voxel * 1e6:.2f} us/voxel/severity", flush=True)
            worst = max(worst, per_voxel)
        out["perturb"] = worst
        shape, n_cases = (160, 160, 40), 10  # at least 9 volumes for non-empty splits
        raw = write_msd_dir(tmp / "msd", n_cases=n_cases, shape=shape)
        worst = 0.0
        for variant in ("3d", "2d"):
            entry = {"source": "msd_import", "path": str(raw), "variant": variant}
            start = time.perf_counter()
            prepare_dataset(f"mine{variant}", entry, raw, tmp / f"mine{variant}")
            worst = max(worst, (time.perf_counter() - start) / (n_cases * math.prod(shape)))
        out["prepare"] = worst
    for key, value in out.items():
        print(f"data {key}: {value * 1e6:.3f} us/voxel", flush=True)
    return out


def table_constants(rounds: int) -> dict[str, float]:
    """Seconds and peak bytes (tracemalloc) per per-image row of joining per-run tables as
    aggregate_study does (the per-image table and the FNR table with its 51 thresholds per
    image, 40 runs), and seconds per row and bootstrap resample of the analysis
    (``run_analysis`` on the analysis tests' synthetic tables, replicated over seeds)."""
    import tracemalloc

    import pandas as pd
    from schema_defaults import default_config
    from test_analysis_run import synthetic_tables

    from segrobust import atomic
    from segrobust.analysis.aggregate import concat_tables
    from segrobust.analysis.run import run_analysis
    from segrobust.evaluation.metrics import FNR_THRESHOLDS

    per_image, fnr, patches = synthetic_tables()
    keys = fnr.drop(columns=["threshold", "fnr"]).drop_duplicates()
    thresholds = pd.DataFrame({"threshold": FNR_THRESHOLDS})
    fnr51 = keys.merge(thresholds, how="cross").assign(fnr=0.5)[list(fnr.columns)]
    runs, out = 40, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {"per_image": [], "fnr": []}
        for i in range(runs):
            for name, table in (("per_image", per_image), ("fnr", fnr51)):
                path = tmp / f"{name}{i}.csv"
                table.assign(seed=i).to_csv(path, index=False)
                paths[name].append(path)

        def join() -> None:
            for name in paths:
                atomic.write_csv(tmp / f"{name}.csv", concat_tables(paths[name]))

        rows = runs * len(per_image)
        out["table_s_per_row"] = _best_of(rounds, join) / rows
        tracemalloc.start()
        join()
        out["table_bytes_per_row"] = tracemalloc.get_traced_memory()[1] / rows
        tracemalloc.stop()
        settings = default_config()["analysis"]
        copies = 4
        big = [
            pd.concat([t.assign(seed=t["seed"] + 10 * k) for k in range(copies)], ignore_index=True)
            for t in (per_image, fnr51, patches)
        ]
        seconds = _best_of(1, lambda: run_analysis(*big, settings, tmp / "analysis"))
        out["analysis_s_per_row_resample"] = seconds / (len(big[0]) * settings["n_bootstrap"])
    print(f"tables: {out}", flush=True)
    return out


_CHILD = """
import json, resource, time
start = time.perf_counter()
import torch, monai
import segrobust.training.train, segrobust.evaluation.evaluate
print(json.dumps({"start_s": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_TRAIN_CHILD = """
import json, resource, sys, torch
from monai.losses import DiceLoss
from segrobust.networks import build_model
from segrobust.training.train import train_epoch
arch, dims, edge, batch, kwargs = json.loads(sys.argv[1])
torch.set_num_threads(1)
size = (edge,) * dims
model = build_model(arch, dims, img_size=size, **kwargs)
images = torch.rand(batch, 1, *size)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
scaler = torch.amp.GradScaler("cpu", enabled=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
train_epoch(model, opt, DiceLoss(sigmoid=True), scaler, images, (images > 0.5).float(),
            torch.arange(batch), batch, torch.device("cpu"), None)
print(json.dumps({"before_mb": before,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str) -> dict:
    env = {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True, env=env)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def process_constants(rounds: int) -> dict[str, float]:
    """Start-up seconds and resident MB of a fresh process with the library imported."""
    runs = [_child(_CHILD) for _ in range(rounds)]
    out = {"start_s": min(r["start_s"] for r in runs), "base_mb": max(r["rss_mb"] for r in runs)}
    print(f"process: start {out['start_s']:.2f} s, resident {out['base_mb']:.0f} MB", flush=True)
    return out


def activation_bytes() -> dict[str, float]:
    """Bytes per counted activation: the slope of the peak resident size over the batch size,
    divided by the activations per sample (``network_cost.activations_per_voxel`` x voxels)."""
    from schema_defaults import default_config

    from segrobust.spec.network_cost import activations_per_voxel

    models = default_config()["models"]
    out = {}
    for arch, dims, edge in (("unet", 2, 256), ("unet", 3, 64), ("unetr", 3, 64)):
        peaks = {}
        for batch in (2, 8):
            run = _child(_TRAIN_CHILD, json.dumps([arch, dims, edge, batch, models[arch]]))
            peaks[batch] = run["peak_mb"] - run["before_mb"]
        per_sample = activations_per_voxel(arch, dims, models[arch], (edge,) * dims) * edge**dims
        out[f"{arch},{dims}"] = (peaks[8] - peaks[2]) / 6 * 2**20 / per_sample
        print(f"activations {arch} {dims}D {edge}: {peaks} MB above start -> "
              f"{out[f'{arch},{dims}']:.1f} bytes per activation", flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", choices=["networks", "scoring", "data", "tables", "process", "memory"]
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    steps = {
        "process": lambda: process_constants(args.rounds),
        "memory": activation_bytes,
        "scoring": lambda: scoring_constants(args.rounds),
        "data": data_constants,
        "tables": lambda: table_constants(args.rounds),
        "networks": lambda: network_constants(args.rounds),
    }
    results = {name: step() for name, step in steps.items() if args.only in (None, name)}
    print(json.dumps(results, indent=1, default=float))
    print(f"peak resident size of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
