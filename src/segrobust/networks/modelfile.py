"""The ``model.pt`` file of a model run (contract 3): weights plus what is needed to rebuild them.

Training writes it, evaluation reads it; neither needs to know how the other was configured.

Model files are shared with the people who segment new images (``segrobust predict``), so a
model file is read with torch's weights-only unpickler (``torch.load(weights_only=True)``): it
rebuilds tensors, numbers, text, lists, tuples and dicts and refuses any other object, so a
file whose pickle would call ``os.system`` or anything else is refused unread instead of
running code. The file holds nothing else (its metadata is plain data), and the resumable
training checkpoint is read the same way (:func:`read_torch_file`). The calibration file's
SHA-256 of ``model.pt`` only proves the two files travel together, not that either is harmless.
"""

from __future__ import annotations

import os
import pickle
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


class ModelFileError(ValueError):
    """A model or checkpoint file that was not loaded; the message names it and says why."""


#: Keys every model file holds (contract 3).
MODEL_KEYS = ("arch", "spatial_dims", "model_kwargs", "img_size", "state_dict")


def _unsafe_objects(path: str | os.PathLike) -> str:
    """The objects other than plain data a torch file's pickle names (read without running
    it), for the error message."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy (non-zip) file or a damaged one: the names are a courtesy
        return "objects other than tensors and plain data"
    return "objects other than tensors and plain data: " + ", ".join(names[:5])


def read_torch_file(path: str | os.PathLike, what: str = "model file") -> Any:
    """A torch file's content, read with the weights-only unpickler (module docstring).

    Raises:
        ModelFileError: naming ``path``: it holds other objects (it was not loaded, so nothing
            in it ran), or it is not a readable torch file.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path}: this {what} holds {_unsafe_objects(path)}; loading it could run code, so "
            "it was not loaded. A segrobust model file holds only tensors, numbers, text, "
            "lists and dicts: ask whoever shared it for the file training wrote, or train the "
            "model again"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: not a readable {what} ({type(exc).__name__}: {exc})"
        ) from exc


def load_model_file(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network stored in ``path`` on ``device`` in eval mode; returns it and the
    file's metadata (everything but the weights).

    Raises:
        ModelFileError: naming ``path``: objects other than plain data (not loaded), not a
            readable torch file, or not a model file (keys missing).
    """
    payload = read_torch_file(path)
    missing = [key for key in MODEL_KEYS if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise ModelFileError(f"{path}: not a segrobust model file (lacks {', '.join(missing)})")
    model = build_model(
        payload["arch"],
        payload["spatial_dims"],
        img_size=payload["img_size"],
        **payload["model_kwargs"],
    )
    model.load_state_dict(payload.pop("state_dict"))
    return model.to(device).eval(), payload
