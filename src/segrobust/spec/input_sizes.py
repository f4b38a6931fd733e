"""Which spatial input sizes each architecture can take, without importing torch.

Config validation runs at Snakefile parse time (on every cluster job too), so it must not import
torch or MONAI; these arithmetic rules mirror the networks built in ``segrobust.networks`` (which
re-exports :func:`check_input_size`), and ``tests/test_models.py`` checks them against real
forward passes. ``kwargs`` are an architecture's config keys (``models.<name>``, defaults filled
in by the schema).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from segrobust.contract import ARCHITECTURES
from segrobust.registry import UnknownNameError

UNETR_VIT_PATCH = 16  # MONAI UNETR's ViT patch edge (fixed inside UNETR)
SWIN_DOWNSAMPLING = 32  # MONAI SwinUNETR: patch embedding 2 x four 2x merges
UNETPP_DOWNSAMPLING = 16  # four poolings in MONAI BasicUNetPlusPlus


def as_size(size, spatial_dims: int) -> tuple[int, ...]:
    """An input size as one int per spatial axis (an int means a square / cube)."""
    if isinstance(size, int):
        return (size,) * spatial_dims
    size = tuple(int(s) for s in size)
    if len(size) != spatial_dims:
        raise ValueError(f"size {size} does not have {spatial_dims} dimensions")
    return size


def _levels(kwargs: Mapping[str, Any]) -> int:
    return 2 ** (len(kwargs["channels"]) - 1)


#: Architecture -> the number every input edge must be a multiple of.
_DIVISORS = {
    "unet": _levels,
    "noskip_unet": _levels,
    "attention_unet": _levels,
    "monai_unet": _levels,
    "vnet": _levels,
    "noskip_vnet": _levels,
    "unetpp": lambda kwargs: UNETPP_DOWNSAMPLING,
    "unetr": lambda kwargs: UNETR_VIT_PATCH,
    "swin_unetr": lambda kwargs: SWIN_DOWNSAMPLING,
}


def required_divisor(name: str, **kwargs: Any) -> int:
    """The number every input edge of ``name`` must be a multiple of."""
    if name not in ARCHITECTURES:
        allowed = ", ".join(ARCHITECTURES)
        raise UnknownNameError(f"unknown architecture {name!r}; allowed: {allowed}")
    return _DIVISORS[name](kwargs)


def check_input_size(name: str, spatial_dims: int, size, **kwargs: Any) -> str | None:
    """Why ``name`` cannot take inputs of spatial ``size`` (int or one int per axis), or None.

    Config validation calls this for each (architecture, patch or image size) pair so a bad
    combination fails before any job starts.
    """
    try:
        edges = as_size(size, spatial_dims)
    except ValueError as exc:
        return str(exc)
    divisor = required_divisor(name, **kwargs)
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


def _uses_instance_norm(name: str, kwargs: Mapping[str, Any]) -> bool:
    if name == "unetr":
        return False  # its decoder upsamples the ViT tokens before any normalisation
    if name == "swin_unetr":
        return True  # built with MONAI's default norm_name="instance"
    return kwargs["norm"] == "instance"
