"""GPU packing: training images per second of k = 1, 2, 4 concurrent texture trainings on one GPU.

The 2D texture trainings (64-256 px, small networks) may leave most of a modern GPU idle. The
pipeline runs one job per GPU: letting k jobs share one was built once (issue 15.3) and removed
unmeasured (issue 19, docs/decisions.md), because nobody had shown it pays. This is the
measurement that would justify bringing it back: k processes, each one training job as the
pipeline runs it (the default study's network for ``--arch``, batch size and image size,
``segrobust.training.train.train_epoch``, mixed precision as
``segrobust.training.device.amp_settings`` chooses, GPU memory capped at 1/k), start together and
train for ``--seconds``; the summed images/s of the k jobs is compared with one job alone. Pick
the k where the sum stops growing; sharing pays only where that sum is well above k = 1.

    PYTHONPATH=src python benchmarks/gpu_packing.py                       # k = 1, 2, 4 on cuda:0
    PYTHONPATH=src python benchmarks/gpu_packing.py --ks 1 2 4 8 --size 128 --seconds 60
    PYTHONPATH=src python benchmarks/gpu_packing.py --device cpu --seconds 5   # smoke test only

Needs a CUDA GPU for meaningful numbers; ``--device cpu`` only checks that the script runs (k
CPU processes share the cores, which says nothing about a GPU).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_settings(arch: str) -> tuple[dict, int]:
    """The architecture's model keys and the texture study's batch size in the default study
    (``config/config.yaml`` with the schema's defaults filled in)."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config["models"][arch], int(config["studies"]["texture"]["train"]["batch_size"])


def worker(rank, k, args, model_kwargs, batch_size, barrier, results) -> None:
    """One training job: warm up, wait for the others, train for ``args.seconds``."""
    import torch
    from monai.losses import DiceLoss

    from segrobust.networks import build_model
    from segrobust.training.device import amp_settings
    from segrobust.training.train import train_epoch

    torch.manual_seed(rank)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.set_per_process_memory_fraction(1.0 / k, device)
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(1)
    _, amp_dtype = amp_settings(device)
    n = args.images
    labels = (torch.rand(n, 1, args.size, args.size) > 0.7).float()
    images = torch.randn(n, 1, args.size, args.size) + labels
    if device.type == "cuda":
        images, labels = images.pin_memory(), labels.pin_memory()
    model = build_model(args.arch, 2, img_size=(args.size, args.size), **model_kwargs).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_fn = DiceLoss(sigmoid=True)
    generator = torch.Generator().manual_seed(rank)

    def epoch() -> None:
        order = torch.randperm(n, generator=generator)
        train_epoch(model, optimizer, loss_fn, scaler, images, labels, order, batch_size,
                    device, amp_dtype)  # fmt: skip

    epoch()  # warm-up: cuDNN autotuning, allocator
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    barrier.wait()
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        epoch()  # train_epoch reads the loss back at its end: the epoch has run
        done += n
    results.put((rank, done, time.perf_counter() - start))


def measure(k: int, args, model_kwargs: dict, batch_size: int) -> list[tuple[int, int, float]]:
    """Run k workers at once; their (rank, images, seconds)."""
    context = mp.get_context("spawn")  # CUDA cannot be used in forked children
    barrier, results = context.Barrier(k), context.Queue()
    procs = [
        context.Process(
            target=worker, args=(r, k, args, model_kwargs, batch_size, barrier, results)
        )
        for r in range(k)
    ]
    for proc in procs:
        proc.start()
    out = [results.get(timeout=args.seconds + 600) for _ in range(k)]
    for proc in procs:
        proc.join()
        if proc.exitcode:
            sys.exit(f"a worker of k={k} failed with exit code {proc.exitcode}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--size", type=int, default=64, help="image edge (default study: 64)")
    parser.add_argument("--images", type=int, default=28, help="training images (default: 28)")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(
            "no CUDA GPU here: this benchmark measures GPU sharing and is left to be run where "
            "a GPU is available (--device cpu runs it as a smoke test only)"
        )
    model_kwargs, batch_size = default_settings(args.arch)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"{args.arch}, {args.size}x{args.size} px, batch {batch_size}, {args.images} images per "
          f"epoch, {args.seconds:g} s per measurement on {args.device} ({name})")  # fmt: skip
    print(f"{'k':>3}{'images/s (sum)':>16}{'per job':>10}{'vs k=1':>8}")
    single = None
    for k in args.ks:
        runs = measure(k, args, model_kwargs, batch_size)
        rates = [images / seconds for _, images, seconds in runs]
        total = sum(rates)
        single = single or (total if k == 1 else None)
        ratio = f"{total / single:8.2f}" if single else f"{'-':>8}"
        print(f"{k:>3}{total:16.1f}{total / k:10.1f}{ratio}")
    if args.device == "cpu":
        print("(CPU smoke test: these numbers say nothing about sharing a GPU)")


if __name__ == "__main__":
    main()
