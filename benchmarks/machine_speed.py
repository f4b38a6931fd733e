"""Machine speed: a fixed torch CPU workload, so a wall time from one machine reads on another.

Wall times in the docs (the default study's minutes, the reproduction's) depend on the CPU that
ran them, and machines here differ up to 4x. This prints the milliseconds of one training step of
a fixed 4-layer convolutional network on a 4 x 1 x 128 x 128 batch, on one thread, best of 5
rounds (the best round is the least disturbed by other processes). Quote it next to a wall
time: "8.7 min on 2 cores (machine speed 21 ms/step)"; a machine at 42 ms/step would take about
twice as long for CPU-bound stages.

    python benchmarks/machine_speed.py [--rounds 5] [--steps 20]

The workload is plain torch (no segrobust code), so the figure does not move when the project
changes; only torch's version and the machine do, and both are printed beside it.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch import nn

#: the fixed workload: batch, channels, height, width of one step's input
SHAPE = (4, 1, 128, 128)


def network() -> nn.Module:
    """Four 3x3 convolutions (16 channels) with ReLU, a 1x1 head: small, convolution-bound."""
    layers: list[nn.Module] = []
    channels = 1
    for _ in range(4):
        layers += [nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU()]
        channels = 16
    layers.append(nn.Conv2d(channels, 1, 1))
    return nn.Sequential(*layers)


def ms_per_step(rounds: int = 5, steps: int = 20) -> float:
    """Best-of-``rounds`` mean milliseconds of one SGD step (forward, backward, update)."""
    torch.manual_seed(0)
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(*SHAPE)
    y = (x > 0).float()
    loss_fn = nn.BCEWithLogitsLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    for _ in range(3):  # warm-up: allocator and first-call overheads
        step()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps)
    return 1000.0 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        speed = ms_per_step(args.rounds, args.steps)
    finally:
        torch.set_num_threads(threads)
    print(
        f"machine speed: {speed:.1f} ms/step (4-layer conv net, train step on "
        f"{'x'.join(map(str, SHAPE))}, 1 thread, best of {args.rounds}; torch "
        f"{torch.__version__}, {platform.machine()}, {platform.processor() or 'cpu'})"
    )


if __name__ == "__main__":
    main()
