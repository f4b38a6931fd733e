"""Training throughput of segrobust's epoch loop vs a tight loop on the same tensors.

The baseline is the compute bound: the same model, optimizer and loss stepping over slices of
in-memory tensors with nothing else. ``train_epoch`` (the loop ``train_run`` runs every epoch)
should reach >= 0.9 of it. Both loops alternate over several rounds so machine noise hits both.

    PYTHONPATH=src python benchmarks/train_throughput.py [--threads 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.losses import DiceLoss

from segrobust.networks import build_model
from segrobust.training.train import train_epoch


def tight_loop(model, optimizer, loss_fn, images, labels, batch_size) -> None:
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    images = torch.randn(args.images, 1, args.size, args.size)
    labels = (images > 0.5).float()
    model = build_model("unet", 2, channels=(8, 16, 32, 64), norm="batch", dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = DiceLoss(sigmoid=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    generator = torch.Generator().manual_seed(0)

    def ours() -> None:
        order = torch.randperm(len(images), generator=generator)
        train_epoch(model, optimizer, loss_fn, scaler, images, labels, order, args.batch_size,
                    device, None)  # fmt: skip

    def baseline() -> None:
        model.train()
        tight_loop(model, optimizer, loss_fn, images, labels, args.batch_size)

    ours(), baseline()  # warm-up (allocator, first-call overheads)
    times = {"ours": 0.0, "baseline": 0.0}
    for _ in range(args.rounds):
        for name, fn in (("ours", ours), ("baseline", baseline)):
            t0 = time.perf_counter()
            fn()
            times[name] += time.perf_counter() - t0
    n = args.rounds * args.images
    ours_ips, base_ips = n / times["ours"], n / times["baseline"]
    print(
        f"setting: unet channels (8,16,32,64), {args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.images} images x {args.rounds} rounds, {args.threads} thread(s), CPU"
    )
    print(f"train_epoch: {ours_ips:.1f} images/s")
    print(f"tight loop:  {base_ips:.1f} images/s")
    print(f"ratio ours/baseline: {ours_ips / base_ips:.3f}")


if __name__ == "__main__":
    main()
