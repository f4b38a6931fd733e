"""A tiny trained and calibrated 2D model run, and images to segment with it: what a user who
was sent a model gets (model.pt and calibration.json in a folder), for the predict probes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from schema_defaults import model_kwargs, train_settings

from segrobust.contract import Run
from segrobust.data.dataset import DatasetWriter
from segrobust.evaluation.evaluate import TestCondition, evaluate_run
from segrobust.guarantees.calibration_file import CALIBRATION_FILE
from segrobust.training.train import train_run

SIZE = (16, 16)
SPLITS = {"training": 8, "validation": 2, "test": 2, "calibration": 12}


def square_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A bright square on noise and its label."""
    label = np.zeros(SIZE, np.uint8)
    corner = rng.integers(2, 8, size=2)
    label[corner[0] : corner[0] + 6, corner[1] : corner[1] + 6] = 1
    return (label + 0.2 * rng.standard_normal(SIZE)).astype(np.float32), label


def calibrated_run(root: Path) -> Path:
    """Train (2 epochs) and evaluate a tiny U-Net; the run folder holds model.pt and
    calibration.json."""
    rng = np.random.default_rng(0)
    data = root / "squares"
    provenance = {"source": "synthetic-texture", "intensity": {"method": "none"}}
    with DatasetWriter(data, provenance=provenance) as ds:
        for split, n in SPLITS.items():
            for i in range(n):
                image, label = square_image(rng)
                ds.add(f"{split}{i}", image, label, split=split, complexity=0.0,
                       fg_ratio=float(label.mean()))  # fmt: skip
    run = Run("perturbation", "squares", "unet", "full", 1)
    folder = root / "run"
    train_run(
        data, run=run, spatial_dims=2, model_kwargs=model_kwargs("unet", channels=(4, 8)),
        settings=train_settings(epochs=2, batch_size=4, lr=0.02), device=torch.device("cpu"),
        out_model=folder / "model.pt", out_log=folder / "train_log.csv",
        out_patches=folder / "patches.csv", checkpoint_path=root / "ckpt" / "last.pt",
        log=lambda line: None,
    )  # fmt: skip
    conditions = [TestCondition("clean", data, "test"), TestCondition("clean", data, "calibration")]
    evaluate_run(
        folder / "model.pt", conditions, run=run, nsd_tolerance=1.0, nsd_unit="px",
        out_per_image=folder / "per_image.csv", out_fnr=folder / "fnr.csv",
        out_calibration=folder / CALIBRATION_FILE,
        out_applicability=folder / "applicability.csv", log=lambda line: None,
    )  # fmt: skip
    return folder


def good_images(folder: Path, n: int, seed: int = 10) -> Path:
    """``n`` NIfTI images like the training data."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, _ = square_image(rng)
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"img{i}.nii.gz")
    return folder


def rehash_calibration(run: Path) -> None:
    """Make calibration.json name the current model.pt's SHA-256 (the two travel together)."""
    path = run / CALIBRATION_FILE
    document = json.loads(path.read_text())
    document["model"]["sha256"] = hashlib.sha256((run / "model.pt").read_bytes()).hexdigest()
    path.write_text(json.dumps(document))
