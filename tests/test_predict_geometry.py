"""Acceptance (issue 14): a geometry round trip. An input in a non-canonical orientation with
anisotropic voxels gets a mask with exactly the input's affine and shape, whose foreground
overlaps the true label (Dice > 0.9), from models trained to near-perfection on easy synthetic
tasks: bright spheres in 3D (patch training, sliding windows, resampled to the training
spacing and back) and bright squares in 2D (resized to the training size and back).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from schema_defaults import default_config, model_kwargs, train_settings

from segrobust.contract import Run
from segrobust.data.dataset import DatasetWriter
from segrobust.data.spheres import generate_sphere_dataset
from segrobust.evaluation.evaluate import TestCondition, evaluate_run
from segrobust.evaluation.infer import SlidingWindow
from segrobust.evaluation.metrics import dice
from segrobust.guarantees.calibration_file import CALIBRATION_FILE
from segrobust.predict.batch import predict_folder
from segrobust.spec.runs import window_settings
from segrobust.training.train import train_run

torch.set_num_threads(1)

#: File axes -> canonical axes: axis 0 runs along -z, axis 1 along +x, axis 2 along -y.
ORIENTATION = np.array([[2, -1], [0, 1], [1, -1]])


def _trained_run(root, data, run, spatial_dims, settings, window):
    """Train, evaluate on the calibration split (which writes calibration.json): a run folder
    predict can use."""
    folder = root / "run"
    train_run(
        data, run=run, spatial_dims=spatial_dims,
        model_kwargs=model_kwargs("unet", channels=(4, 8, 16)), settings=settings,
        device=torch.device("cpu"), out_model=folder / "model.pt",
        out_log=folder / "train_log.csv", out_patches=folder / "patches.csv",
        checkpoint_path=root / "last.pt", log=lambda line: None,
    )  # fmt: skip
    evaluate_run(
        folder / "model.pt", [TestCondition("clean", data, "calibration")], run=run,
        nsd_tolerance=1.0, nsd_unit="px", out_per_image=root / "per_image.csv",
        out_fnr=root / "fnr.csv", out_calibration=folder / CALIBRATION_FILE,
        out_applicability=root / "applicability.csv",
        window=SlidingWindow.from_config(window) if window else None, log=lambda line: None,
    )  # fmt: skip
    return folder


def _non_canonical(canonical_image, canonical_label, spacing, origin):
    """The canonical arrays as files whose axes are permuted and flipped (``ORIENTATION``)."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    image = nib.Nifti1Image(canonical_image.astype(np.float32), affine)
    label = nib.Nifti1Image(canonical_label.astype(np.uint8), affine)
    inverse = nib.orientations.ornt_transform(ORIENTATION, [[0, 1], [1, 1], [2, 1]])
    return image.as_reoriented(inverse), label.as_reoriented(inverse)


def _round_trip(tmp_path, run_folder, image, label):
    images = tmp_path / "images"
    images.mkdir()
    nib.save(image, images / "case.nii.gz")
    out = tmp_path / "out"
    predict_folder(images, out, model_paths=[run_folder], log=lambda line: None)
    mask = nib.load(out / "masks" / "case.nii.gz")
    source = nib.load(images / "case.nii.gz")
    return mask, source


def test_3d_volume_in_another_orientation_and_spacing_comes_back_in_its_own_geometry(tmp_path):
    data = tmp_path / "spheres"
    generate_sphere_dataset(data, volume_size=24, n_train=8, n_validation=2, n_calibration=10,
                            n_test=1, train_radii=[5, 8], test_radii=[5, 8], seed=0,
                            noise_model="gaussian", noise=0.15)  # fmt: skip
    window = window_settings(default_config(), "context")
    settings = train_settings([16, 16, 16], epochs=8, batch_size=4, lr=0.01, samples_per_volume=4)
    run = Run("context", "spheres", "unet", "16", 1)
    folder = _trained_run(tmp_path, data, run, 3, settings, window)

    spacing = (0.75, 1.0, 1.6)  # mm; the model was trained at 1 mm
    shape = (32, 24, 15)
    centres = np.meshgrid(
        *[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    radius = sum((c - m) ** 2 for c, m in zip(centres, (11.5, 12.2, 11.3), strict=True)) ** 0.5
    label = radius <= 6.5
    noisy = label + 0.15 * np.random.default_rng(1).standard_normal(shape)
    image, truth = _non_canonical(noisy, label, spacing, origin=(-40.0, 12.0, 7.5))
    assert nib.aff2axcodes(image.affine) != ("R", "A", "S")

    mask, source = _round_trip(tmp_path, folder, image, truth)
    assert np.array_equal(mask.affine, source.affine)
    assert mask.shape == source.shape == truth.shape
    predicted = np.asarray(mask.dataobj).astype(bool)
    overlap = dice(predicted, np.asarray(truth.dataobj).astype(bool))
    print(f"3D round trip Dice {overlap:.3f}")
    assert overlap > 0.9


def _squares(path, seed=0):
    rng = np.random.default_rng(seed)
    with DatasetWriter(
        path, provenance={"source": "synthetic-texture", "intensity": {"method": "none"}}
    ) as ds:
        for split, n in {"training": 24, "validation": 4, "calibration": 12}.items():
            for i in range(n):
                label = np.zeros((16, 16), np.uint8)
                corner = rng.integers(2, 7, size=2)
                label[corner[0] : corner[0] + 7, corner[1] : corner[1] + 7] = 1
                image = label + 0.15 * rng.standard_normal(label.shape)
                ds.add(f"{split}{i}", image.astype(np.float32), label, split=split,
                       complexity=0.0, fg_ratio=float(label.mean()))  # fmt: skip
    return path


@pytest.mark.parametrize("shape", [(16, 16), (28, 20)])
def test_2d_image_in_another_orientation_and_size_comes_back_in_its_own_geometry(tmp_path, shape):
    data = _squares(tmp_path / "squares")
    run = Run("perturbation", "squares", "unet", "full", 1)
    settings = train_settings(epochs=16, batch_size=4, lr=0.01)
    folder = _trained_run(tmp_path, data, run, 2, settings, None)

    rows, cols = shape
    label = np.zeros(shape, bool)
    label[rows // 4 : rows // 4 + rows // 2, cols // 3 : cols // 3 + cols // 2] = True
    noisy = label + 0.15 * np.random.default_rng(2).standard_normal(shape)
    # a 2D slice whose array axes run along -y and +x, pixels 1.3 x 0.7 mm
    affine = np.array([[0.0, 0.7, 0.0, 5.0], [-1.3, 0.0, 0.0, 9.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(noisy.astype(np.float32), affine)
    assert nib.aff2axcodes(affine)[:2] != ("R", "A")

    mask, source = _round_trip(tmp_path, folder, image, None)
    assert np.array_equal(mask.affine, source.affine) and mask.shape == shape
    overlap = dice(np.asarray(mask.dataobj).astype(bool), label)
    print(f"2D round trip {shape}: Dice {overlap:.3f}")
    assert overlap > 0.9
