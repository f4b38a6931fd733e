"""``monai_unet``: MONAI's ``UNet`` (residual units, strided convolutions), the 3D U-Net of the
context-vs-foreground-ratio paper (``num_res_units=2``).

It differs from ``unet`` (the skip-connection study's plain U-Net, :mod:`.skip_unet`): every
level is a residual unit of ``num_res_units`` convolutions, downsampling is a stride-2
convolution rather than max pooling, and the output layer has no activation.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import UNet
from torch import nn


def build_monai_unet(
    spatial_dims: int,
    *,
    img_size=None,
    channels: Sequence[int],
    num_res_units: int,
    norm: str,
    dropout: float,
) -> nn.Module:
    """MONAI UNet (``models.monai_unet``): ``channels`` per level, stride 2 between levels
    (inputs divisible by ``2 ** (len(channels) - 1)``), ``num_res_units`` per level."""
    return UNet(
        spatial_dims,
        1,
        1,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=num_res_units,
        norm=norm,
        dropout=dropout,
    )
