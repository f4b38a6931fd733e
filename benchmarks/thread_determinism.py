"""Does torch's CPU thread count change what a training writes? Same seed, 1 vs 2 threads.

The job runner used to set ``torch.set_num_threads`` to the rule's ``threads``; issue 19 asks
whether that is plumbing (speed only) or decides outputs. torch splits a CPU reduction (a
convolution's weight gradient, a sum over a batch) into per-thread partial sums, so another
thread count may add the same floats in another order. This trains the default study's texture
U-Net (``segrobust.networks.build_model`` with the schema's widths,
``segrobust.training.train.train_epoch``, ``segrobust.training.device.seed_everything``) from
one seed on fixed synthetic images, once per entry of ``--threads``, each in a fresh process,
then compares the weights and the test predictions with the first run's. A repeated thread
count is the control: it must match bit for bit.

    PYTHONPATH=src python benchmarks/thread_determinism.py                 # threads 1, 2, 2
    PYTHONPATH=src python benchmarks/thread_determinism.py --threads 1 2 4 --epochs 10
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_settings() -> tuple[dict, int, int]:
    """The texture study's U-Net keys, batch size and image edge in the default study."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    texture = config["studies"]["texture"]
    return config["models"]["unet"], int(texture["train"]["batch_size"]), int(texture["image_size"])


def train_once(threads: int, args, model_kwargs: dict, batch_size: int, size: int, queue) -> None:
    """Train from seed 0 with ``threads`` threads; put (weights, test probabilities) as numpy."""
    import numpy as np
    import torch
    from monai.losses import DiceLoss

    from segrobust.networks import build_model
    from segrobust.training.device import seed_everything, set_compute_threads
    from segrobust.training.train import train_epoch

    set_compute_threads(threads)
    data = np.random.default_rng(1)
    labels = (data.random((args.images + 8, 1, size, size)) > 0.7).astype(np.float32)
    images = (data.standard_normal(labels.shape) + labels).astype(np.float32)
    train_x, train_y = torch.from_numpy(images[:-8]), torch.from_numpy(labels[:-8])
    seed_everything(0)
    model = build_model("unet", 2, img_size=(size, size), **model_kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss_fn = DiceLoss(sigmoid=True)
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.epochs):
        order = torch.randperm(len(train_x), generator=generator)
        train_epoch(model, optimizer, loss_fn, scaler, train_x, train_y, order, batch_size,
                    torch.device("cpu"), None)  # fmt: skip
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(torch.from_numpy(images[-8:]))).numpy()
    weights = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    queue.put((threads, weights, probs, labels[-8:]))


def dice(pred, label) -> float:
    import numpy as np

    total = pred.sum() + label.sum()
    return float(2 * np.logical_and(pred, label).sum() / total) if total else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--images", type=int, default=28, help="training images (default: 28)")
    args = parser.parse_args()
    import numpy as np
    import torch

    model_kwargs, batch_size, size = default_settings()
    context = mp.get_context("spawn")  # a fresh interpreter per run: nothing carried over
    runs = []
    for threads in args.threads:
        queue = context.Queue()
        proc = context.Process(
            target=train_once, args=(threads, args, model_kwargs, batch_size, size, queue)
        )
        proc.start()
        runs.append(queue.get(timeout=3600))
        proc.join()
    print(f"texture U-Net {size}x{size}, batch {batch_size}, {args.images} images, "
          f"{args.epochs} epochs, seed 0, torch {torch.__version__}")  # fmt: skip
    print(f"{'threads':>8}{'= 1st run':>10}{'max |dw|':>11}{'max |dp|':>11}"
          f"{'mask px differ':>16}{'test Dice':>11}  = earlier run, same threads")  # fmt: skip
    _, weights0, probs0, labels = runs[0]
    for i, (threads, weights, probs, _) in enumerate(runs):
        masks = probs > 0.5
        differ = int((masks != (probs0 > 0.5)).sum())
        mean_dice = np.mean([dice(m, lab > 0.5) for m, lab in zip(masks, labels, strict=True)])
        same = [np.array_equal(weights, w) and np.array_equal(probs, p)
                for t, w, p, _ in runs[:i] if t == threads]  # fmt: skip
        control = ("bit for bit" if all(same) else "DIFFERS") if same else "-"
        print(f"{threads:>8}{str(bool(np.array_equal(weights, weights0))):>10}"
              f"{np.abs(weights - weights0).max():>11.2e}{np.abs(probs - probs0).max():>11.2e}"
              f"{differ:>16}{mean_dice:>11.6f}  {control}")  # fmt: skip
    print(
        f"(weights and test-image probabilities against the first row's run; {probs0.size} "
        "mask pixels)"
    )


if __name__ == "__main__":
    main()
