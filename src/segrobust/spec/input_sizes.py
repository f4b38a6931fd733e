"""Which spatial input sizes each architecture can take, without importing torch.

Config validation runs at Snakefile parse time (on every cluster job too), so it must not import
torch or MONAI; these arithmetic rules mirror the networks built in ``segrobust.networks`` (which
re-exports :func:`check_input_size`), and ``tests/test_models.py`` checks them against real
forward passes.
"""

from __future__ import annotations

import math
from typing import Any

from segrobust.registry import UnknownNameError

#: The registered architectures (``segrobust.networks.ARCHITECTURES``; a test keeps them equal).
ARCHITECTURE_NAMES = (
    "attention_unet", "noskip_unet", "noskip_vnet", "swin_unetr", "unet", "unetpp", "unetr", "vnet",
)  # fmt: skip
DEFAULT_UNET_CHANNELS = (8, 16, 32, 64)
DEFAULT_VNET_CHANNELS = (8, 16, 32, 64)
DEFAULT_UNETPP_FEATURES = (8, 8, 16, 32, 64, 8)
UNETR_VIT_PATCH = 16  # MONAI UNETR's ViT patch edge (fixed inside UNETR)


def as_size(size, spatial_dims: int) -> tuple[int, ...]:
    if isinstance(size, int):
        return (size,) * spatial_dims
    size = tuple(int(s) for s in size)
    if len(size) != spatial_dims:
        raise ValueError(f"size {size} does not have {spatial_dims} dimensions")
    return size


def required_divisor(name: str, spatial_dims: int, **kwargs: Any) -> int:
    """The number every input edge of ``name`` must be a multiple of."""
    if name not in ARCHITECTURE_NAMES:
        allowed = ", ".join(ARCHITECTURE_NAMES)
        raise UnknownNameError(f"unknown architecture {name!r}; allowed: {allowed}")
    if name in ("unet", "noskip_unet", "attention_unet"):
        return 2 ** (len(kwargs.get("channels", DEFAULT_UNET_CHANNELS)) - 1)
    if name in ("vnet", "noskip_vnet"):
        return 2 ** (len(kwargs.get("channels", DEFAULT_VNET_CHANNELS)) - 1)
    if name == "unetpp":
        return 16  # four poolings in BasicUNetPlusPlus
    if name == "unetr":
        return UNETR_VIT_PATCH
    if name == "swin_unetr":
        return int(kwargs.get("patch_size", 2)) ** 5
    raise AssertionError(f"no input-size rule for registered architecture {name!r}")


def check_input_size(name: str, spatial_dims: int, size, **kwargs: Any) -> str | None:
    """Why ``name`` cannot take inputs of spatial ``size`` (int or one int per axis), or None.

    Config validation calls this for each (architecture, patch or image size) pair so a bad
    combination fails before any job starts.
    """
    try:
        edges = as_size(size, spatial_dims)
    except ValueError as exc:
        return str(exc)
    divisor = required_divisor(name, spatial_dims, **kwargs)
    bad = [e for e in edges if e <= 0 or e % divisor]
    if bad:
        return (
            f"{name} needs every edge of the input to be a positive multiple of {divisor}; "
            f"size {list(edges)} has {bad}"
        )
    if _uses_instance_norm(name, kwargs) and math.prod(e // divisor for e in edges) < 2:
        return (
            f"{name} uses instance normalisation, which needs more than one voxel at its deepest "
            f"level; size {list(edges)} leaves one (make an edge at least {2 * divisor})"
        )
    return None


def _uses_instance_norm(name: str, kwargs: dict[str, Any]) -> bool:
    if name == "unetr":
        return False  # its decoder upsamples the ViT tokens before any normalisation
    if name == "swin_unetr":
        norm = kwargs.get("norm_name", "instance")
    else:
        default = ("instance", {"affine": True}) if name == "unetpp" else "batch"
        norm = kwargs.get("norm", default)
    return (norm[0] if isinstance(norm, (tuple, list)) else norm).lower() == "instance"
