"""The ``model.pt`` file of a model run (contract 3): weights plus what is needed to rebuild them.

Training writes it, evaluation reads it; neither needs to know how the other was configured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from segrobust import __version__, atomic
from segrobust.networks.catalog import build_model


def save_model_file(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    arch: str,
    spatial_dims: int,
    model_kwargs: Mapping[str, Any],
    img_size: Sequence[int] | None,
    patch_size: Sequence[int] | None,
    **extra: Any,
) -> None:
    """Write the model file atomically (:func:`segrobust.atomic.write_torch`: permissions from
    the umask, a full disk reported with the path). ``extra`` is stored as is (e.g.
    ``best_epoch``, ``best_val_dice``)."""
    payload = {
        "arch": arch,
        "spatial_dims": int(spatial_dims),
        "model_kwargs": dict(model_kwargs),
        "img_size": list(img_size) if img_size is not None else None,
        "patch_size": list(patch_size) if patch_size is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "segrobust_version": __version__,
        **extra,
    }
    atomic.write_torch(path, payload)


def load_model_file(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network stored in ``path`` on ``device`` in eval mode; returns it and the
    file's metadata (everything but the weights)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(
        payload["arch"],
        payload["spatial_dims"],
        img_size=payload["img_size"],
        **payload["model_kwargs"],
    )
    model.load_state_dict(payload.pop("state_dict"))
    return model.to(device).eval(), payload
