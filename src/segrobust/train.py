"""Training of one model run (contract 3): best-validation-Dice weights, per-epoch log, every
sampled patch's foreground ratio, and an epoch checkpoint to resume a killed job from.

The datasets of the studies are small (tens to hundreds of images or volumes), so a run holds its
training and validation cases in memory as stacked tensors, on the training device: batches are
index slices, and the data path adds almost nothing to the compute (see
``benchmarks/train_throughput.py``). Patch training draws random crops with MONAI's
``RandCropByPosNegLabel`` each epoch.

Determinism: every random draw (batch order, crop positions, weight init) comes from generators
seeded by the run's seed and saved in the checkpoint, so a run killed after epoch k and resumed
ends with the same weights and metrics on the CPU as an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss, DiceLoss
from monai.transforms import RandCropByPosNegLabel

from segrobust.device import amp_settings, seed_everything
from segrobust.infer import predict_probabilities
from segrobust.io import load_split
from segrobust.metrics import dice
from segrobust.modelfile import save_model_file
from segrobust.models import build_model

LOG_COLUMNS = [
    "epoch", "loss", "val_dice", "seconds", "fg_ratio_mean", "fg_ratio_min", "fg_ratio_max",
    "lr", "device", "amp",
]  # fmt: skip
PATCH_COLUMNS = ["epoch", "batch", "index", "fg_ratio"]
LOSSES = {"dice": DiceLoss, "dice_ce": DiceCELoss}


@dataclass
class TrainSettings:
    """Training settings of a study (config ``studies.<study>.train`` plus the patch size)."""

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    loss: str = "dice"
    val_interval: int = 1
    patch_size: Sequence[int] | None = None  # None: whole images
    samples_per_volume: int = 4
    pos_neg_ratio: Sequence[float] = (1.0, 1.0)
    sw_overlap: float = 0.25
    sw_mode: str = "gaussian"
    sw_batch_size: int = 4

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(
                f"train.loss: {self.loss!r} is not allowed; allowed: {', '.join(LOSSES)}"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.val_interval < 1:
            raise ValueError("train.epochs, train.batch_size and train.val_interval must be >= 1")


def stack_cases(cases: Sequence[Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of equally shaped cases as (N, 1, ...) float tensors on ``device``."""
    shapes = {c.image.shape for c in cases}
    if len(shapes) != 1:
        raise ValueError(
            f"whole-image training needs equally sized images, found shapes {sorted(shapes)}; "
            "set a patch size or resize the dataset"
        )
    images = torch.from_numpy(np.stack([c.image for c in cases])[:, None]).float()
    labels = torch.from_numpy(np.stack([c.label for c in cases])[:, None]).float()
    return to_device(images, device), to_device(labels, device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device``; on CUDA through pinned memory without blocking."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches over ``n`` items (the last one may be smaller)."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class PatchSampler:
    """Random training patches of 3D volumes, centred on foreground or background voxels at the
    configured ratio (MONAI ``RandCropByPosNegLabel``), with a restorable random state."""

    def __init__(self, cases: Sequence[Any], settings: TrainSettings, seed: int) -> None:
        self.cases = cases
        pos, neg = settings.pos_neg_ratio
        self.crop = RandCropByPosNegLabel(
            spatial_size=tuple(settings.patch_size),
            pos=pos,
            neg=neg,
            num_samples=settings.samples_per_volume,
            allow_smaller=False,
        )
        self.crop.set_random_state(seed)

    def epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch's patches: (N * samples_per_volume, 1, *patch) images and labels."""
        images, labels = [], []
        for case in self.cases:
            image, label = case.image[None], case.label[None]
            self.crop.randomize(label=label)
            images += [np.asarray(p) for p in self.crop(image, label=label, randomize=False)]
            labels += [np.asarray(p) for p in self.crop(label, label=label, randomize=False)]
        return torch.from_numpy(np.stack(images)).float(), torch.from_numpy(
            np.stack(labels)
        ).float()

    def state(self) -> Any:
        return self.crop.R.get_state()

    def restore(self, state: Any) -> None:
        self.crop.R.set_state(state)


class Stepper:
    """One optimisation step with optional autocast and gradient scaling (fp16 on CUDA)."""

    def __init__(self, model: torch.nn.Module, lr: float, loss: str, device: torch.device) -> None:
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.loss_fn = LOSSES[loss](sigmoid=True)
        self.amp, self.amp_dtype = amp_settings(device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.device = device

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast("cuda", dtype=self.amp_dtype) if self.amp else nullcontext()
        with autocast:
            out = self.model(x)
            if isinstance(out, (list, tuple)):  # UNet++ returns a list of heads
                out = out[0]
            loss = self.loss_fn(out.float(), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


def validation_dice(
    model: torch.nn.Module, cases: Sequence[Any], settings: TrainSettings, device: torch.device
) -> float:
    """Mean Dice at threshold 0.5 over the validation cases, predicted as at test time (sliding
    windows at the patch size for patch training)."""
    model.eval()
    scores = [
        dice(
            predict_probabilities(
                model, case.image, patch_size=settings.patch_size, overlap=settings.sw_overlap,
                mode=settings.sw_mode, sw_batch_size=settings.sw_batch_size, device=device,
                amp=device.type == "cuda",
            ) >= 0.5,
            case.label.astype(bool),
        )
        for case in cases
    ]  # fmt: skip
    model.train()
    return float(np.mean(scores))


def _rng_state(generator: torch.Generator, sampler: PatchSampler | None) -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "batches": generator.get_state(),
        "patches": sampler.state() if sampler else None,
    }


def _restore_rng(state: dict, generator: torch.Generator, sampler: PatchSampler | None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["batches"])
    if sampler is not None:
        sampler.restore(state["patches"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_csv_atomic(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    os.replace(tmp, path)


def train_run(
    dataset_dir: str | os.PathLike,
    *,
    arch: str,
    spatial_dims: int,
    model_kwargs: dict,
    settings: TrainSettings,
    seed: int,
    device: torch.device,
    out_model: str | os.PathLike,
    out_log: str | os.PathLike,
    out_patches: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    log: Callable[[str], Any] = print,
) -> None:
    """Train ``arch`` on a dataset's training split, select on its validation split, write the
    run's three outputs; resume from ``checkpoint_path`` if a killed run left one."""
    checkpoint_path = Path(checkpoint_path)
    train_cases = load_split(dataset_dir, "training")
    val_cases = load_split(dataset_dir, "validation")
    if not train_cases or not val_cases:
        raise ValueError(f"{dataset_dir}: training and validation splits must not be empty")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    seed_everything(seed)
    img_size = settings.patch_size or train_cases[0].image.shape
    model = build_model(arch, spatial_dims, img_size=list(img_size), **model_kwargs).to(device)
    stepper = Stepper(model, settings.lr, settings.loss, device)
    generator = torch.Generator().manual_seed(seed)
    sampler = PatchSampler(train_cases, settings, seed) if settings.patch_size else None
    if sampler is None:
        images, labels = stack_cases(train_cases, device)
        whole_fg = labels.flatten(1).mean(1).cpu()

    start_epoch, best = 1, {"val_dice": -1.0, "epoch": 0, "state": None}
    log_rows: list[list[Any]] = []
    patch_rows: list[list[Any]] = []
    if checkpoint_path.exists():
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        stepper.optimizer.load_state_dict(ckpt["optimizer"])
        stepper.scaler.load_state_dict(ckpt["scaler"])
        best, log_rows, patch_rows = ckpt["best"], ckpt["log_rows"], ckpt["patch_rows"]
        _restore_rng(ckpt["rng"], generator, sampler)
        start_epoch = ckpt["epoch"] + 1
        log(f"resuming from {checkpoint_path} after epoch {ckpt['epoch']}")

    model.train()
    for epoch in range(start_epoch, settings.epochs + 1):
        tic = time.perf_counter()
        if sampler is not None:
            patch_images, patch_labels = sampler.epoch()
            images, labels = to_device(patch_images, device), to_device(patch_labels, device)
            fg = patch_labels.flatten(1).mean(1)
        else:
            fg = whole_fg
        total, steps = torch.zeros((), device=device), 0
        for b, index in enumerate(batches(len(images), settings.batch_size, generator)):
            total += stepper(images[index], labels[index])
            steps += 1
            patch_rows += [[epoch, b, int(i), float(fg[i])] for i in index]
        val = (
            validation_dice(model, val_cases, settings, device)
            if epoch % settings.val_interval == 0 or epoch == settings.epochs
            else float("nan")
        )
        if val > best["val_dice"]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best = {"val_dice": val, "epoch": epoch, "state": state}
        seconds = time.perf_counter() - tic
        loss = float(total) / steps
        log_rows.append([
            epoch, loss, val, seconds, float(fg.mean()), float(fg.min()), float(fg.max()),
            settings.lr, device.type, stepper.amp_dtype is not None,
        ])  # fmt: skip
        log(f"epoch {epoch}/{settings.epochs} loss {loss:.4f} val_dice {val:.4f} ({seconds:.1f} s)")
        _atomic_torch_save(
            {
                "epoch": epoch, "model": model.state_dict(),
                "optimizer": stepper.optimizer.state_dict(), "scaler": stepper.scaler.state_dict(),
                "best": best, "log_rows": log_rows, "patch_rows": patch_rows,
                "rng": _rng_state(generator, sampler),
            },
            checkpoint_path,
        )  # fmt: skip

    model.load_state_dict(best["state"])
    _write_csv_atomic(Path(out_log), LOG_COLUMNS, log_rows)
    _write_csv_atomic(Path(out_patches), PATCH_COLUMNS, patch_rows)
    save_model_file(
        out_model, model, arch=arch, spatial_dims=spatial_dims, model_kwargs=model_kwargs,
        img_size=list(img_size), patch_size=settings.patch_size, best_epoch=best["epoch"],
        best_val_dice=best["val_dice"], device=device.type, amp=stepper.amp_dtype is not None,
    )  # fmt: skip
    checkpoint_path.unlink(missing_ok=True)
    log(f"best validation Dice {best['val_dice']:.4f} at epoch {best['epoch']}")
