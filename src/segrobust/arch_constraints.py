"""Which spatial input sizes each architecture can take, without importing torch.

Config validation runs at Snakefile parse time (on every cluster job too), so it must not import
torch or MONAI; these arithmetic rules mirror the networks built in ``segrobust.models`` and a unit
test checks them against real forward passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: ViT patch edge of MONAI's UNETR (fixed at 16 voxels in its constructor).
UNETR_PATCH = 16
#: Swin UNETR downsamples five times (2**5).
SWIN_UNETR_FACTOR = 32
#: BasicUNetPlusPlus has four pooling levels (2**4).
UNETPP_FACTOR = 16


def downsampling_factor(arch: str, model_kwargs: Mapping[str, Any]) -> int:
    """The factor every spatial input edge must be divisible by for ``arch``."""
    if arch == "unetr":
        return UNETR_PATCH
    if arch == "swin_unetr":
        return SWIN_UNETR_FACTOR
    if arch == "unetpp":
        return UNETPP_FACTOR
    levels = len(model_kwargs.get("channels", (8, 16, 32, 64)))
    return 2 ** (levels - 1)


def input_size_problem(
    arch: str, spatial_dims: int, size: int, model_kwargs: Mapping[str, Any]
) -> str | None:
    """Why ``arch`` cannot take inputs of edge ``size``, or None when it can."""
    factor = downsampling_factor(arch, model_kwargs)
    if size % factor:
        return (
            f"{arch} needs every input edge divisible by {factor}; allowed sizes near {size}: "
            f"{max(factor, size // factor * factor)} or {(size // factor + 1) * factor}"
        )
    return None
