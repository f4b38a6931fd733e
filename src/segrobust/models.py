"""Architecture registry (placeholder with one entry until the full registry lands)."""

from __future__ import annotations

from typing import Any

from monai.networks.nets import UNet
from torch import nn

from segrobust.registry import Registry

ARCHITECTURES: Registry = Registry("architecture")


@ARCHITECTURES.register("unet")
def _unet(spatial_dims: int, img_size=None, channels=(8, 16, 32, 64), **kwargs: Any) -> nn.Module:
    strides = (2,) * (len(channels) - 1)
    return UNet(spatial_dims, 1, 1, channels=channels, strides=strides, **kwargs)


def build_model(name: str, spatial_dims: int, *, img_size=None, **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` with 1 input and 1 output (logit) channel."""
    return ARCHITECTURES.get(name)(spatial_dims, img_size=img_size, **kwargs)
