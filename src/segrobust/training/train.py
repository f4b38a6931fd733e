"""Train one model run (contract 3): ``model.pt``, ``train_log.csv``, ``patches.csv``.

The datasets of the studies are small (hundreds of 2D images, tens of small volumes), so both
splits are held in memory as tensors: no per-step file reads or DataLoader workers, and the
training loop only slices pre-stacked tensors (see ``benchmarks/train_throughput.py``).

Patch training samples patches with MONAI ``RandCropByPosNegLabel`` at the configured pos/neg
ratio; the foreground ratio of every sampled patch is recorded. Validation Dice (whole-image
forward in 2D, sliding windows for patch training, as ``segrobust.evaluation.infer``
predicts) selects the best weights.

A run is resumable: after every epoch a checkpoint with the model, optimizer, scaler, best
state, log rows and every random state (python, numpy, torch, the sampler's generator and the
cropper's) is written atomically; a re-run resumes from it and ends with the same weights and
metrics as an uninterrupted run on CPU. It is deleted once ``model.pt`` is written.

A non-finite training loss stops the run with :class:`NonFiniteLossError` naming the epoch and
batch: the epoch's weights are not checkpointed (the last good checkpoint stays) and no
``model.pt`` is written, so a diverged run never looks finished.
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.losses import DiceCELoss, DiceLoss
from monai.transforms import RandCropByPosNegLabel

from segrobust import atomic
from segrobust.contract import PATCH_COLUMNS, TRAIN_LOG_COLUMNS, Run
from segrobust.data.dataset import Case, load_split
from segrobust.evaluation.infer import SlidingWindow, predict_probabilities
from segrobust.evaluation.metrics import dice
from segrobust.execution.job import mark
from segrobust.networks import build_model, check_input_size
from segrobust.networks.modelfile import ModelFileError, read_torch_file, save_model_file
from segrobust.training.device import amp_settings, device_name, seed_everything

LOSSES = ("dice", "dice_ce")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; ``batch`` is the first such batch (0-based)."""

    def __init__(self, message: str, batch: int) -> None:
        super().__init__(message)
        self.batch = batch


@dataclass(frozen=True)
class TrainSettings:
    """Training hyper-parameters: the config's ``train`` section of a study, plus the run's patch
    size and sliding-window settings. Every value comes from the config (whose schema states the
    defaults); none is defaulted here.

    Attributes:
        epochs: number of passes over the training split.
        batch_size: images or patches per optimisation step.
        lr: Adam learning rate (constant).
        loss: ``dice`` (MONAI DiceLoss on sigmoid) or ``dice_ce`` (DiceCELoss, BCE term).
        val_interval: validate every this many epochs (and after the last).
        samples_per_volume: patches drawn per training volume per epoch.
        pos_neg_ratio: (pos, neg) weights of patch centres on foreground vs background;
            (1, 0) gives only patches containing foreground.
        patch_size: patch edge(s) for patch training; None trains on whole (2D) images.
        window: sliding-window settings of patch-trained validation (None for whole images).
    """

    epochs: int
    batch_size: int
    lr: float
    loss: str
    val_interval: int
    samples_per_volume: int
    pos_neg_ratio: tuple[float, float]
    patch_size: tuple[int, ...] | None
    window: SlidingWindow | None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"train.loss {self.loss!r} not allowed; allowed: {', '.join(LOSSES)}")
        for key in ("epochs", "batch_size", "samples_per_volume", "val_interval"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)!r}")
        pos, neg = self.pos_neg_ratio
        if pos < 0 or neg < 0 or pos + neg == 0:
            raise ValueError(f"train.pos_neg_ratio must be two non-negative numbers, not both 0; "
                             f"got {self.pos_neg_ratio!r}")  # fmt: skip
        if self.patch_size is not None and self.window is None:
            raise ValueError("patch training needs sliding-window settings for validation")

    @classmethod
    def from_config(
        cls,
        train: Mapping[str, Any],
        patch_size: Sequence[int] | None,
        inference: Mapping[str, Any] | None,
    ) -> TrainSettings:
        """From a study's ``train`` and ``inference`` config sections and the run's patch size."""
        return cls(
            epochs=int(train["epochs"]),
            batch_size=int(train["batch_size"]),
            lr=float(train["lr"]),
            loss=str(train["loss"]),
            val_interval=int(train["val_interval"]),
            samples_per_volume=int(train["samples_per_volume"]),
            pos_neg_ratio=tuple(float(v) for v in train["pos_neg_ratio"]),
            patch_size=tuple(int(s) for s in patch_size) if patch_size else None,
            window=SlidingWindow.from_config(inference) if patch_size else None,
        )


def _stack(cases: Sequence[Case], what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of equally sized cases as (N, 1, *spatial) float tensors."""
    shapes = {c.image.shape for c in cases}
    if len(shapes) != 1:
        raise ValueError(f"{what}: whole-image training needs equally sized images, got {shapes}")
    images = torch.from_numpy(np.stack([c.image for c in cases])[:, None].astype(np.float32))
    labels = torch.from_numpy(np.stack([c.label for c in cases])[:, None].astype(np.float32))
    return images, labels


class PatchSampler:
    """Draws each epoch's training patches with MONAI ``RandCropByPosNegLabel``.

    Its random state (the cropper's numpy RandomState and the volume order) is part of the
    checkpoint, so a resumed run draws the same patches as an uninterrupted one.
    """

    def __init__(self, cases: Sequence[Case], settings: TrainSettings, seed: int) -> None:
        self.cases = cases
        pos, neg = settings.pos_neg_ratio
        self.crop = RandCropByPosNegLabel(
            spatial_size=settings.patch_size, pos=pos, neg=neg,
            num_samples=settings.samples_per_volume, allow_smaller=False,
        )  # fmt: skip
        self.crop.set_random_state(seed=seed)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All patches of one epoch, as (N, 1, *patch) images and labels."""
        images, labels = [], []
        for case in self.cases:
            img, lab = case.image[None], case.label[None]
            # one call per volume: the same centres for image and label
            self.crop.randomize(label=lab, image=img)
            for crop in self.crop(lab, label=lab, image=img, randomize=False):
                labels.append(torch.as_tensor(np.asarray(crop), dtype=torch.float32))
            for crop in self.crop(img, label=lab, image=img, randomize=False):
                images.append(torch.as_tensor(np.asarray(crop), dtype=torch.float32))
        return torch.stack(images), torch.stack(labels)

    def state(self) -> Any:
        return self.crop.R.get_state()

    def load_state(self, state: Any) -> None:
        self.crop.R.set_state(state)


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> float:
    """One pass over ``images[order]`` in batches; returns the mean batch loss.

    ``images``/``labels`` are pre-stacked (pinned on CUDA); each step is one slice, one
    non-blocking copy and the optimisation step, so the data path adds next to nothing. The
    first batch with a non-finite loss is tracked on the device (no per-step synchronisation)
    and reported once, at the end of the pass.

    Raises:
        NonFiniteLossError: a batch's loss was NaN or infinite (naming the first such batch).
    """
    model.train()
    total = torch.zeros((), device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    n_batches = 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = images[idx].to(device, non_blocking=True)
        y = labels[idx].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = loss.detach().float()
        bad = (first_bad < 0) & ~torch.isfinite(value)
        first_bad = torch.where(bad, torch.full_like(first_bad, n_batches), first_bad)
        total += value
        n_batches += 1
    if int(first_bad) >= 0:
        raise NonFiniteLossError(
            f"training loss is not finite at batch {int(first_bad)}", batch=int(first_bad)
        )
    return float(total) / n_batches


def validation_dice(
    model: torch.nn.Module,
    cases: Sequence[Case],
    settings: TrainSettings,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> float:
    """Mean Dice over the validation cases at threshold 0.5 (both empty counts as 1), predicted
    exactly as evaluation predicts (``segrobust.evaluation.infer``: sliding windows for patch
    training)."""
    model.eval()
    scores = [
        dice(
            predict_probabilities(
                model,
                case.image,
                patch_size=settings.patch_size,
                window=settings.window,
                device=device,
                amp=amp_dtype is not None,
            )
            >= 0.5,
            case.label.astype(bool),
        )
        for case in cases
    ]
    return float(np.mean(scores))


def _plain_numpy_state(state: tuple) -> tuple:
    """A numpy ``RandomState`` state with its key array as a tensor: the checkpoint then holds
    only what the weights-only unpickler reads (``networks.modelfile``)."""
    name, keys, position, has_gauss, cached = state
    return (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position),
            int(has_gauss), float(cached))  # fmt: skip


def _numpy_state(plain: tuple) -> tuple:
    """The inverse of :func:`_plain_numpy_state`."""
    name, keys, position, has_gauss, cached = plain
    return name, keys.numpy().astype(np.uint32), position, has_gauss, cached


def _rng_state(generator: torch.Generator, sampler: PatchSampler | None) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": _plain_numpy_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "order": generator.get_state(),
        "sampler": _plain_numpy_state(sampler.state()) if sampler is not None else None,
    }


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, sampler) -> None:
    random.setstate(state["python"])
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["order"])
    if sampler is not None:
        sampler.load_state(_numpy_state(state["sampler"]))


def _read_checkpoint(path: Path, run_key: str, log: Callable[[str], None]) -> dict | None:
    """The checkpoint at ``path`` if it resumes this run (same settings), else None (logged).

    Read like a model file (weights only): one holding other objects, e.g. written by an older
    segrobust with numpy arrays in it, or one that cannot be read is ignored, and training
    starts from its first epoch.
    """
    try:
        ckpt = read_torch_file(path, what="training checkpoint")
    except ModelFileError as exc:
        log(f"ignoring {exc}; training starts from its first epoch")
        return None
    if not isinstance(ckpt, dict) or ckpt.get("run_key") != run_key:
        log(f"ignoring {path}: it was written by a run with other settings")
        return None
    return ckpt


def _diverged(
    exc: NonFiniteLossError,
    epoch: int,
    dataset_dir: str | os.PathLike,
    arch: str,
    settings: TrainSettings,
    checkpoint_path: Path,
) -> NonFiniteLossError:
    """The error for a non-finite loss, saying where and what was kept."""
    kept = (
        f"the checkpoint of epoch {epoch - 1} ({checkpoint_path}) is kept"
        if epoch > 1 and checkpoint_path.exists()
        else "no checkpoint was written"
    )
    return NonFiniteLossError(
        f"{arch} on {dataset_dir}: the training loss is not finite (NaN or infinite) at epoch "
        f"{epoch}, batch {exc.batch} (0-based, batch size {settings.batch_size}); training "
        f"stopped without writing model.pt and {kept}. Usual causes: a learning rate too high "
        f"(train.lr = {settings.lr:g}) or non-finite values in the data",
        batch=exc.batch,
    )


@dataclass
class TrainingState:
    """One run's training between epochs: the network and its optimiser, the data, and what
    the run has produced so far (the best weights, the log and patch rows). The checkpoint is
    this state after an epoch."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator: torch.Generator
    sampler: PatchSampler | None
    images: torch.Tensor | None  # whole-image training: every image; else sampled per epoch
    labels: torch.Tensor | None
    val_cases: Sequence[Case]
    input_size: tuple[int, ...]
    device: torch.device
    amp_dtype: torch.dtype | None
    amp_name: str
    run_key: str  # the settings a checkpoint must have been written with to be resumed
    start_epoch: int = 1
    best: dict[str, Any] = field(default_factory=lambda: {"dice": -1.0, "epoch": 0, "state": None})
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    patch_rows: list[dict[str, Any]] = field(default_factory=list)


def setup_training(
    dataset_dir: str | os.PathLike,
    *,
    arch: str,
    seed: int,
    spatial_dims: int,
    model_kwargs: dict[str, Any],
    settings: TrainSettings,
    device: torch.device,
) -> TrainingState:
    """Seed everything, load the training and validation splits, and build the network, its
    optimiser and loss (in this order: the network's initial weights come from the seeded
    generators)."""
    seed_everything(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick fast kernels
        torch.backends.cudnn.deterministic = False
    amp_enabled, amp_dtype = amp_settings(device)
    amp_name = str(amp_dtype).removeprefix("torch.") if amp_enabled else "off"

    train_cases = load_split(dataset_dir, "training")
    val_cases = load_split(dataset_dir, "validation")
    if not train_cases or not val_cases:
        raise ValueError(f"{dataset_dir}: training and validation splits must not be empty")
    images = labels = sampler = None
    if settings.patch_size is None:
        if spatial_dims != 2:
            raise ValueError("train.patch_size is required for 3D training (None = whole 2D image)")
        images, labels = _stack(train_cases, f"{dataset_dir} training")
        input_size = tuple(images.shape[2:])
        if device.type == "cuda":  # page-locked so batch copies can be non-blocking
            images, labels = images.pin_memory(), labels.pin_memory()
    else:
        input_size = tuple(int(s) for s in settings.patch_size)
        sampler = PatchSampler(train_cases, settings, seed)
    why = check_input_size(arch, spatial_dims, input_size, **model_kwargs)
    if why:
        raise ValueError(f"{arch} cannot train on inputs of size {list(input_size)}: {why}")

    model = build_model(arch, spatial_dims, img_size=input_size, **model_kwargs).to(device)
    return TrainingState(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=settings.lr),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        loss_fn=DiceLoss(sigmoid=True) if settings.loss == "dice" else DiceCELoss(sigmoid=True),
        generator=torch.Generator().manual_seed(seed),
        sampler=sampler,
        images=images,
        labels=labels,
        val_cases=val_cases,
        input_size=input_size,
        device=device,
        amp_dtype=amp_dtype,
        amp_name=amp_name,
        run_key=repr((arch, spatial_dims, model_kwargs, asdict(settings), seed)),
    )


def resume(state: TrainingState, checkpoint_path: Path, log: Callable[[str], None]) -> None:
    """Continue from ``checkpoint_path`` if it exists and was written by a run of the same
    settings (a config edit since the kill must not be resumed): weights, optimiser, scaler,
    best state, rows and every random state. The checkpoint is read weights-only
    (:func:`_read_checkpoint`)."""
    if not checkpoint_path.exists():
        return
    ckpt = _read_checkpoint(checkpoint_path, state.run_key, log)
    if ckpt is None:
        return
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scaler.load_state_dict(ckpt["scaler"])
    state.best, state.log_rows, state.patch_rows = (
        ckpt["best"],
        ckpt["log_rows"],
        ckpt["patch_rows"],
    )
    _set_rng_state(ckpt["rng"], state.generator, state.sampler)
    state.start_epoch = ckpt["epoch"] + 1
    log(f"resuming from {checkpoint_path} after epoch {ckpt['epoch']}")


def run_epoch(state: TrainingState, epoch: int, settings: TrainSettings) -> dict[str, Any]:
    """One epoch: this epoch's samples (fresh patches, or every image), one pass in a seeded
    order, validation when due (keeping the best weights); returns the epoch's log row.

    Raises:
        NonFiniteLossError: a batch's loss was NaN or infinite (naming the first such batch).
    """
    t0 = time.perf_counter()
    device = state.device
    images, labels = state.images, state.labels
    if state.sampler is not None:
        images, labels = state.sampler.sample()
        if device.type == "cuda":  # fresh patches each epoch; whole images were pinned once
            images, labels = images.pin_memory(), labels.pin_memory()
    fg = labels.flatten(1).mean(1)
    order = torch.randperm(len(images), generator=state.generator)
    loss = train_epoch(
        state.model, state.optimizer, state.loss_fn, state.scaler, images, labels, order,
        settings.batch_size, device, state.amp_dtype,
    )  # fmt: skip
    state.patch_rows.extend(
        {"epoch": epoch, "batch": i // settings.batch_size, "index": i % settings.batch_size,
         "fg_ratio": float(r)}
        for i, r in enumerate(fg[order].tolist())
    )  # fmt: skip
    val = float("nan")
    if epoch % settings.val_interval == 0 or epoch == settings.epochs:
        val = validation_dice(state.model, state.val_cases, settings, device, state.amp_dtype)
        if val > state.best["dice"]:
            weights = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
            state.best = {"dice": val, "epoch": epoch, "state": weights}
    row = {
        "epoch": epoch, "loss": loss, "val_dice": val, "seconds": time.perf_counter() - t0,
        "fg_ratio_mean": float(fg.mean()), "fg_ratio_min": float(fg.min()),
        "fg_ratio_max": float(fg.max()), "lr": settings.lr, "device": str(device),
        "amp": state.amp_name,
    }  # fmt: skip
    state.log_rows.append(row)
    return row


def save_checkpoint(state: TrainingState, epoch: int, checkpoint_path: Path) -> None:
    """The state after ``epoch``, written atomically (a killed job resumes from it)."""
    ckpt = {
        "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict(), "epoch": epoch, "best": state.best,
        "log_rows": state.log_rows, "patch_rows": state.patch_rows,
        "rng": _rng_state(state.generator, state.sampler), "run_key": state.run_key,
    }  # fmt: skip
    atomic.write_torch(checkpoint_path, ckpt)


def finalise(
    state: TrainingState,
    *,
    run: Run,
    spatial_dims: int,
    model_kwargs: dict[str, Any],
    settings: TrainSettings,
    out_model: str | os.PathLike,
    out_log: str | os.PathLike,
    out_patches: str | os.PathLike,
) -> None:
    """Write the outputs of contract 3: the two tables with the run's columns, then
    ``model.pt`` holding the best validation weights."""
    final = copy.deepcopy(state.model).cpu()
    final.load_state_dict(state.best["state"])
    for path, rows, columns in (
        (out_log, state.log_rows, TRAIN_LOG_COLUMNS),
        (out_patches, state.patch_rows, PATCH_COLUMNS),
    ):
        table = pd.DataFrame([{**run.columns, **row} for row in rows], columns=list(columns))
        atomic.write_csv(path, table)
    save_model_file(
        out_model, final, arch=run.arch, spatial_dims=spatial_dims, model_kwargs=model_kwargs,
        img_size=state.input_size, patch_size=settings.patch_size,
        best_epoch=state.best["epoch"], best_val_dice=state.best["dice"], device=str(state.device),
        device_name=device_name(state.device), amp=state.amp_name, run=run.columns,
    )  # fmt: skip


def _progress_line(state: TrainingState, row: Mapping[str, Any], epochs: int, seconds: float):
    best = state.best
    best_so_far = (
        f"best validation Dice {best['dice']:.3f} (epoch {best['epoch']})"
        if best["epoch"]
        else "not validated yet"
    )
    return f"epoch {row['epoch']}/{epochs}, loss {row['loss']:.4f}, {best_so_far}, {seconds:.0f} s"


def train_run(
    dataset_dir: str | os.PathLike,
    *,
    run: Run,
    spatial_dims: int,
    model_kwargs: dict[str, Any],
    settings: TrainSettings,
    device: torch.device,
    out_model: str | os.PathLike,
    out_log: str | os.PathLike,
    out_patches: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    log: Callable[[str], None] = print,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``run.arch`` (seeded by ``run.seed``) on ``dataset_dir`` and write the three
    outputs of contract 3; both tables carry the run's columns.

    The steps: set up (:func:`setup_training`), resume from ``checkpoint_path`` when it exists
    (:func:`resume`), run and checkpoint each remaining epoch (:func:`run_epoch`,
    :func:`save_checkpoint`), write the outputs (:func:`finalise`) and delete the checkpoint.
    ``log`` gets one line per epoch (the job's log file); ``progress``, if given, a shorter one
    per epoch with the best validation Dice so far (a job throttles it for the console).
    ``model.pt`` records the device as ``str(device)`` (e.g. ``cuda:1``) and its hardware
    (``device_name``, e.g. the GPU's name). Returns ``{"best_epoch", "best_val_dice"}``.
    """
    checkpoint_path = Path(checkpoint_path)
    state = setup_training(
        dataset_dir, arch=run.arch, seed=int(run.seed), spatial_dims=spatial_dims,
        model_kwargs=model_kwargs, settings=settings, device=device,
    )  # fmt: skip
    resume(state, checkpoint_path, log)
    started = time.perf_counter()
    mark("first_step")
    for epoch in range(state.start_epoch, settings.epochs + 1):
        try:
            row = run_epoch(state, epoch, settings)
        except NonFiniteLossError as exc:
            raise _diverged(exc, epoch, dataset_dir, run.arch, settings, checkpoint_path) from None
        log(
            f"epoch {epoch}/{settings.epochs} loss {row['loss']:.4f} val_dice "
            f"{row['val_dice']:.4f} fg {row['fg_ratio_mean']:.3f} {row['seconds']:.1f}s on "
            f"{device} (amp {state.amp_name})"
        )
        if progress is not None:
            elapsed = time.perf_counter() - started
            progress(_progress_line(state, row, settings.epochs, elapsed))
        save_checkpoint(state, epoch, checkpoint_path)
    mark("last_step")
    finalise(
        state, run=run, spatial_dims=spatial_dims, model_kwargs=model_kwargs, settings=settings,
        out_model=out_model, out_log=out_log, out_patches=out_patches,
    )  # fmt: skip
    atomic.remove(checkpoint_path)
    return {"best_epoch": state.best["epoch"], "best_val_dice": state.best["dice"]}
