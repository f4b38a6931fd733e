"""The model's own view of an image: its deepest feature map, averaged over space.

The applicability check (``segrobust.guarantees.applicability``) asks how unlike the calibration
images a new image is. Label-free statistics of the image and its mask see the texture, the
noise and the predicted size; the network's bottleneck sees what the network itself responds
to. The embedding of an image is the global average over space of the output of the module
with the smallest feature map (the bottleneck of a U-Net or V-Net; for a transformer encoder
whose tokens are reshaped outside any module, the smallest map its decoder computes), pooled
over every forward pass that predicting the image made (the windows of sliding-window
inference, each averaged once).

Which module that is is found once per model by a probe forward pass on a blank input of the
model's input size (:func:`bottleneck_module`) and recorded by name in ``calibration.json``, so
``predict`` hooks the very module whose embeddings the calibration images were described by.
It is captured with a forward hook while the ordinary prediction runs: no image is predicted
twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


class EmbeddingError(ValueError):
    """No feature map to embed with, or a named module the model does not have."""


def _spatial_numel(output: object, spatial_dims: int) -> int | None:
    """Spatial size of a module output shaped (batch, channels, *spatial), else None."""
    if not isinstance(output, torch.Tensor) or output.ndim != spatial_dims + 2:
        return None
    return math.prod(output.shape[2:])


def bottleneck_module(
    model: torch.nn.Module,
    spatial_dims: int,
    input_shape: Sequence[int],
    device: torch.device | str = "cpu",
) -> str:
    """Name of the module whose output has the fewest spatial elements (the last such module in
    execution order: the outermost block of the bottleneck), found by one probe forward pass.

    Args:
        input_shape: the model's spatial input size (the training image size or patch size).

    Raises:
        EmbeddingError: no module outputs a (batch, channels, *spatial) tensor.
    """
    seen: list[tuple[int, int, str]] = []
    names = {module: name for name, module in model.named_modules() if name}

    def record(module, _inputs, output):
        numel = _spatial_numel(output, spatial_dims)
        if numel is not None and module in names:
            seen.append((numel, len(seen), names[module]))

    handles = [module.register_forward_hook(record) for module in names]
    try:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            model(torch.zeros((1, 1, *map(int, input_shape)), device=device))
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    if not seen:
        raise EmbeddingError(
            f"{type(model).__name__}: no module outputs a {spatial_dims}D feature map to embed with"
        )
    smallest = min(numel for numel, _, _ in seen)
    return max((order, name) for numel, order, name in seen if numel == smallest)[1]


class EmbeddingRecorder:
    """Captures the pooled output of one named module while predictions run.

    Use as a context manager around the predictions; after each image, :meth:`take` returns the
    mean over that image's forward passes (and batch items) of the module output averaged over
    space, a float64 vector with one value per channel.
    """

    def __init__(self, model: torch.nn.Module, module_name: str, spatial_dims: int) -> None:
        modules = dict(model.named_modules())
        if module_name not in modules:
            raise EmbeddingError(
                f"the model has no module {module_name!r} to take the embedding from (a "
                "calibration of another architecture?); re-run rule evaluate_model"
            )
        self.module, self.spatial_dims = modules[module_name], spatial_dims
        self.module_name = module_name
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._handle = None

    def _hook(self, _module, _inputs, output) -> None:
        if _spatial_numel(output, self.spatial_dims) is None:
            return
        pooled = output.detach().float().mean(dim=tuple(range(2, output.ndim)))
        total = pooled.sum(dim=0)
        self._sum = total if self._sum is None else self._sum + total
        self._count += pooled.shape[0]

    def __enter__(self) -> EmbeddingRecorder:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def take(self) -> np.ndarray:
        """The embedding of the image predicted since the last call; resets the sum.

        Raises:
            EmbeddingError: the module did not run since the last call.
        """
        if self._sum is None:
            raise EmbeddingError(f"module {self.module_name!r} did not run for this image")
        vector = (self._sum / self._count).cpu().numpy().astype(np.float64)
        self._sum, self._count = None, 0
        return vector
