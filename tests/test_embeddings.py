"""The model's pooled bottleneck embedding: found for every architecture, pooled over windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from schema_defaults import window
from test_models import TINY

from segrobust.evaluation.embeddings import (
    EmbeddingError,
    EmbeddingRecorder,
    bottleneck_module,
)
from segrobust.evaluation.infer import predict_probabilities
from segrobust.networks import build_model

torch.set_num_threads(1)


def _model(name, dims):
    kwargs, edge = TINY[name]
    size = (edge,) * (dims - 1) + (2 * edge if name == "swin_unetr" else edge,)
    torch.manual_seed(0)
    return build_model(name, dims, img_size=size, **kwargs).eval(), size


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_architecture_has_a_smallest_feature_map_to_embed(name, dims):
    model, size = _model(name, dims)
    module = bottleneck_module(model, dims, size)
    shapes = {}

    def record(m, _inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == dims + 2:
            shapes[m] = output.shape

    handles = [m.register_forward_hook(record) for m in model.modules()]
    with torch.inference_mode():
        model(torch.zeros(1, 1, *size))
    for handle in handles:
        handle.remove()
    chosen = dict(model.named_modules())[module]
    smallest = min(np.prod(s[2:]) for s in shapes.values())
    assert np.prod(shapes[chosen][2:]) == smallest

    image = np.random.default_rng(0).random(size).astype(np.float32)
    with EmbeddingRecorder(model, module, dims) as recorder:
        predict_probabilities(model, image, patch_size=None, window=None, device="cpu")
        vector = recorder.take()
    assert vector.shape == (shapes[chosen][1],) and np.isfinite(vector).all()


def test_the_embedding_is_the_spatial_mean_averaged_over_every_window():
    model, size = _model("unet", 3)
    module = bottleneck_module(model, 3, size)
    target = dict(model.named_modules())[module]
    image = np.random.default_rng(1).random((24, 24, 24)).astype(np.float32)
    outputs = []
    handle = target.register_forward_hook(lambda m, i, o: outputs.append(o.mean(dim=(2, 3, 4))))
    with EmbeddingRecorder(model, module, 3) as recorder:
        predict_probabilities(model, image, patch_size=size, window=window(), device="cpu")
        vector = recorder.take()
    handle.remove()
    windows = torch.cat(outputs)  # one row per window, whatever the batch of windows
    assert len(windows) > 1
    np.testing.assert_allclose(vector, windows.mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)


def test_take_without_a_forward_pass_and_an_unknown_module_are_refused():
    model, _ = _model("unet", 2)
    with pytest.raises(EmbeddingError, match="no module 'nowhere'"):
        EmbeddingRecorder(model, "nowhere", 2)
    recorder = EmbeddingRecorder(model, bottleneck_module(model, 2, (16, 16)), 2)
    with pytest.raises(EmbeddingError, match="did not run"):
        recorder.take()


def test_the_hook_is_removed_on_exit():
    model, size = _model("unet", 2)
    module = bottleneck_module(model, 2, size)
    recorder = EmbeddingRecorder(model, module, 2)
    with recorder:
        pass
    with torch.inference_mode():
        model(torch.zeros(1, 1, *size))
    with pytest.raises(EmbeddingError, match="did not run"):
        recorder.take()
