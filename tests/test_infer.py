"""Inference: whole-image and sliding-window probabilities, and saved prediction geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from schema_defaults import model_kwargs
from torch import nn

from segrobust.evaluation.infer import (
    SlidingWindow,
    _needs_move,
    predict_probabilities,
    save_prediction,
)
from segrobust.networks import build_model

torch.set_num_threads(1)


class ConstantLogit(nn.Module):
    """Returns the same logit everywhere, whatever the input."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.logit)


def local_net(ndim: int) -> nn.Module:
    """Two 3-wide convolutions: translation-equivariant, receptive-field radius 2."""
    conv = nn.Conv2d if ndim == 2 else nn.Conv3d
    torch.manual_seed(0)
    return nn.Sequential(conv(1, 4, 3, padding=1), nn.Tanh(), conv(4, 1, 3, padding=1))


def unet(ndim: int) -> nn.Module:
    torch.manual_seed(0)
    return build_model("unet", ndim, **model_kwargs("unet", channels=(4, 8))).eval()


def direct(model: nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(image)[None, None]))[0, 0].numpy()


@pytest.mark.parametrize("shape", [(16, 12), (8, 12, 8)])
def test_whole_image_is_the_direct_forward_pass(shape):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    model = unet(len(shape))
    prob = predict_probabilities(model, image)
    assert prob.dtype == np.float32 and prob.shape == shape
    np.testing.assert_allclose(prob, direct(model, image), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize("shape", [(16, 12), (8, 12, 8)])
def test_one_window_covering_the_image_equals_direct(shape, mode):
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    model = unet(len(shape))
    prob = predict_probabilities(model, image, patch_size=shape, window=SlidingWindow(0.5, mode, 4))
    np.testing.assert_allclose(prob, direct(model, image), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize("shape, patch", [((21, 13), 8), ((11, 9, 13), 6)])
def test_blending_reproduces_a_constant_model(shape, patch, mode):
    # the window weights are normalised, so any blend of a constant is that constant, including
    # in windows overhanging the border (image sizes not multiples of the window)
    image = np.random.default_rng(2).random(shape, dtype=np.float32)
    prob = predict_probabilities(
        ConstantLogit(0.7), image, patch_size=patch, window=SlidingWindow(0.25, mode, 3)
    )
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-0.7)), rtol=1e-6)


def receptive_field_inside_windows(size: int, patch: int, starts: list[int], radius: int):
    """Per pixel of one axis: does its receptive field (+-radius) fit inside every window covering
    it? Window edges on the image edge do not count: there both passes see the same zero padding."""
    good = np.ones(size, dtype=bool)
    for s in starts:
        low = s + radius if s > 0 else 0
        high = s + patch - 1 - radius if s + patch < size else size - 1
        covered = np.arange(size)[s : s + patch]
        good[covered] &= (covered >= low) & (covered <= high)
    return good


@pytest.mark.parametrize(
    "shape, patch, starts",
    # window starts MONAI uses at overlap 0.5: stride patch / 2, the last window flush with the end
    [((40, 40), 16, [0, 8, 16, 24]), ((24, 24, 24), 12, [0, 6, 12])],
)
def test_overlapping_windows_on_a_local_model(shape, patch, starts):
    # A translation-equivariant network with receptive-field radius 2 gives the whole-image values
    # wherever its receptive field fits inside every window covering the pixel, in either blending
    # mode. Elsewhere a window edge's zero padding leaks in; gaussian blending down-weights window
    # edges, so it stays closer to the whole-image pass than constant blending.
    model = local_net(len(shape))
    image = np.random.default_rng(3).random(shape, dtype=np.float32)
    reference = direct(model, image)
    axis_good = receptive_field_inside_windows(shape[0], patch, starts, radius=2)
    good = np.ix_(*[axis_good] * len(shape))
    mask = np.zeros(shape, dtype=bool)
    mask[good] = True
    errors = {}
    for mode in ("gaussian", "constant"):
        prob = predict_probabilities(
            model, image, patch_size=patch, window=SlidingWindow(0.5, mode, 4)
        )
        np.testing.assert_allclose(prob[mask], reference[mask], rtol=0, atol=1e-6)
        errors[mode] = np.abs(prob - reference)[~mask].mean()
    assert 0 < errors["gaussian"] < errors["constant"] / 2


def test_bad_settings_are_rejected():
    image = np.zeros((8, 8), dtype=np.float32)
    model = ConstantLogit(0.0)
    window = SlidingWindow(0.25, "gaussian", 4)
    with pytest.raises(ValueError, match="blend mode 'linear'.*gaussian, constant"):
        SlidingWindow(0.25, "linear", 4)
    with pytest.raises(ValueError, match="overlap"):
        SlidingWindow(1.0, "gaussian", 4)
    with pytest.raises(ValueError, match="batch size"):
        SlidingWindow(0.25, "gaussian", 0)
    with pytest.raises(ValueError, match="needs sliding-window settings"):
        predict_probabilities(model, image, patch_size=4)
    with pytest.raises(ValueError, match="patch_size"):
        predict_probabilities(model, image, patch_size=(4, 4, 4), window=window)
    with pytest.raises(ValueError, match="2D or 3D"):
        predict_probabilities(model, np.zeros((1, 8, 8, 8), np.float32))


def test_save_prediction_keeps_the_input_geometry(tmp_path):
    affine = np.array(
        [[0.0, -0.8, 0.0, 10.0], [1.5, 0.0, 0.0, -4.0], [0.0, 0.0, 2.5, 3.0], [0, 0, 0, 1]]
    )
    mask = np.zeros((6, 5, 4), dtype=np.uint8)
    mask[1:3, 2:4, 1] = 1
    path = tmp_path / "pred" / "case.nii.gz"
    save_prediction(path, mask, affine)
    saved = nib.load(path)
    np.testing.assert_allclose(saved.affine, affine)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), mask)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_amp_is_a_no_op_on_cpu():
    image = np.random.default_rng(4).random((16, 16), dtype=np.float32)
    model = unet(2)
    np.testing.assert_array_equal(
        predict_probabilities(model, image, amp=True), predict_probabilities(model, image)
    )


def test_a_model_already_on_the_device_is_not_moved_again(monkeypatch):
    """Predicting image after image with one model does not walk its parameters each time;
    a model elsewhere is still moved."""
    model = local_net(2)
    moves = []
    original = nn.Module.to

    def counting_to(self, *args, **kwargs):
        moves.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "to", counting_to)
    predict_probabilities(model, np.zeros((8, 8), np.float32), device="cpu")
    assert moves == []
    assert not _needs_move(model, torch.device("cpu"))
    assert _needs_move(model, torch.device("cuda"))
    assert _needs_move(model, torch.device("cuda", 1))
