"""``swin_unetr``: Swin UNETR (Hatamizadeh et al. 2022), MONAI's ``SwinUNETR``; size-agnostic,
inputs divisible by 32."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import SwinUNETR
from torch import nn


def build_swin_unetr(
    spatial_dims: int, *, img_size=None, feature_size: int, depths: Sequence[int]
) -> nn.Module:
    """Swin UNETR (``models.swin_unetr``): ``feature_size`` a multiple of 12, ``depths`` the
    Swin blocks per stage (four stages)."""
    return SwinUNETR(
        1, 1, feature_size=feature_size, depths=tuple(depths), spatial_dims=spatial_dims
    )
