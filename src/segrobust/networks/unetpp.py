"""``unetpp``: UNet++ (Zhou et al. 2018), MONAI's ``BasicUNetPlusPlus`` with dense skip paths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNetPlusPlus
from torch import nn

#: Norm names of the config -> MONAI norm arguments (instance norm with affine parameters is
#: BasicUNetPlusPlus's own default).
NORMS = {"instance": ("instance", {"affine": True}), "batch": ("batch", {})}


class FirstOutput(nn.Module):
    """Wraps a network returning a list of outputs (UNet++) and returns the first (full-size)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def build_unetpp(
    spatial_dims: int, *, img_size=None, features: Sequence[int], norm: str, dropout: float
) -> nn.Module:
    """UNet++ with deep supervision off (``models.unetpp``).

    ``features``: six widths, the five encoder levels and the last decoder's (MONAI's default
    (32, 32, 64, 128, 256, 32)); inputs must be divisible by 16 (four poolings).
    """
    net = BasicUNetPlusPlus(
        spatial_dims,
        1,
        1,
        features=tuple(features),
        deep_supervision=False,
        norm=NORMS[norm],
        dropout=dropout,
    )
    return FirstOutput(net)
