"""Issue 11, case 2: NaN or infinite intensities never reach a "finished" model.

One NaN voxel used to turn a percentile-normalised volume all NaN, and training then logged
``loss nan`` and wrote model.pt. Now the import names the file and the count, the dataset
writer names the case, the reader names the file, and a loss that still turns non-finite stops
training with the epoch and batch, keeping the last good checkpoint.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from archives import blob_volume, write_msd_cases
from sandbox import make_sandbox
from schema_defaults import model_kwargs, train_settings

from segrobust.contract import Run
from segrobust.data.dataset import DataError, DatasetWriter
from segrobust.data.prepare import prepare_dataset
from segrobust.training.train import NonFiniteLossError, train_run

SMALL = {"split": {"train": 0.4, "validation": 0.3, "test": 0.3}, "calibration_fraction": 0.0}


def _cases(n=3, poison=None):
    """``n`` volumes; ``poison(image)`` alters the second one."""
    cases = {}
    for i in range(n):
        image, label = blob_volume(seed=i)
        if i == 1 and poison is not None:
            poison(image)
        cases[f"vol_{i}.nii.gz"] = (image, label)
    return cases


def _one_nan(image):
    image[3, 4, 5] = np.nan


def _infinities(image):
    image[0, 0, :3] = np.inf
    image[1, 1, 1] = -np.inf


@pytest.mark.parametrize(
    "poison, count, variant, normalize",
    [
        (_one_nan, 1, "2d", "percentile"),  # the reported case
        (_one_nan, 1, "3d", "percentile"),
        (_infinities, 4, "2d", "window"),
    ],
)
def test_import_refuses_non_finite_voxels_naming_file_and_count(
    tmp_path, poison, count, variant, normalize
):
    sandbox = make_sandbox(tmp_path)
    root = write_msd_cases(sandbox.root / "mine", _cases(poison=poison))
    entry = {"source": "msd_import", "path": str(root), "variant": variant, **SMALL}
    entry.update(normalize=normalize, image_size=16, spacing=[1.0, 1.0, 1.0])
    before = sandbox.snapshot()
    with pytest.raises(DataError) as err:
        prepare_dataset("mine", entry, root, sandbox.target)
    message = str(err.value)
    voxels = 24 * 24 * 8
    assert str(root / "imagesTr" / "vol_1.nii.gz") in message
    assert f"{count} of {voxels} voxels are not finite" in message
    sandbox.assert_untouched(before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_dataset_writer_refuses_non_finite_image_naming_the_case(tmp_path, bad):
    sandbox = make_sandbox(tmp_path)
    before = sandbox.snapshot()
    image = np.zeros((8, 8), np.float32)
    image[2, 3] = bad
    with pytest.raises(DataError, match=r"case c1: 1 of 64 voxels are not finite"):
        with DatasetWriter(sandbox.target, {"source": "test"}) as ds:
            ds.add("c0", np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8), split="test")
            ds.add("c1", image, np.zeros((8, 8), np.uint8), split="test")
    sandbox.assert_untouched(before)


def _two_splits(out, poison_id=None):
    """A small 2D dataset; the image of ``poison_id`` is rewritten on disk with a NaN (as an
    older segrobust or a hand-made dataset could have left it)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    with DatasetWriter(out, {"source": "test"}) as ds:
        for i in range(6):
            label = ((yy - 8) ** 2 + (xx - 4 - i) ** 2 <= 9).astype(np.uint8)
            image = (label + 0.2 * rng.standard_normal(label.shape)).astype(np.float32)
            split = "training" if i < 4 else "validation"
            ds.add(f"c{i}", image, label, split=split)
    if poison_id is not None:
        path = out / "images" / f"{poison_id}.nii.gz"
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, np.float32).copy()
        data[1, 1] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), str(path))
    return out


def _train(data, out, settings):
    return train_run(
        data, run=Run("texture", "discs", "unet", "full", 1), spatial_dims=2,
        model_kwargs=model_kwargs("unet", channels=(4, 8)), settings=settings,
        device=torch.device("cpu"), out_model=out / "model.pt",
        out_log=out / "train_log.csv", out_patches=out / "patches.csv",
        checkpoint_path=out / "ckpt" / "last.pt", log=lambda _m: None,
    )  # fmt: skip


def test_a_nan_in_an_existing_dataset_is_refused_before_training(tmp_path):
    data = _two_splits(tmp_path / "data", poison_id="c2")
    sandbox = make_sandbox(tmp_path / "run")
    before = sandbox.snapshot()
    with pytest.raises(DataError, match=r"images/c2.nii.gz: 1 of 256 voxels are not finite"):
        _train(data, sandbox.target, train_settings(epochs=2, batch_size=2))
    sandbox.assert_untouched(before)


class _DivergingLoss(torch.nn.Module):
    """DiceLoss that turns NaN from its 5th call: a run that diverges mid-training."""

    def __init__(self, **kwargs):
        super().__init__()
        from monai.losses import DiceLoss

        self.inner, self.calls = DiceLoss(**kwargs), 0

    def forward(self, prediction, target):
        self.calls += 1
        loss = self.inner(prediction, target)
        return loss * float("nan") if self.calls >= 5 else loss


def test_a_diverging_loss_stops_training_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    from segrobust.training import train as train_module

    monkeypatch.setattr(train_module, "DiceLoss", _DivergingLoss)
    data = _two_splits(tmp_path / "data")
    sandbox = make_sandbox(tmp_path / "run")
    before = sandbox.snapshot()
    # 4 training images, batch 2: two batches per epoch, the 5th call is epoch 3, batch 0
    with pytest.raises(NonFiniteLossError) as err:
        _train(data, sandbox.target, train_settings(epochs=4, batch_size=2))
    assert "at epoch 3, batch 0" in str(err.value) and "checkpoint of epoch 2" in str(err.value)
    # what exists is the checkpoint of epoch 2, finite, and nothing else
    after = sandbox.snapshot()
    assert sorted(set(after) - set(before)) == ["l1/l2/l3/l4/l5/l6/l7/out", *_ckpt_paths()]
    ckpt = torch.load(sandbox.target / "ckpt" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and all(np.isfinite(r["loss"]) for r in ckpt["log_rows"])
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def _ckpt_paths():
    return ["l1/l2/l3/l4/l5/l6/l7/out/ckpt", "l1/l2/l3/l4/l5/l6/l7/out/ckpt/last.pt"]
