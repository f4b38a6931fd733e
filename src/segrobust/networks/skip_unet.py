"""The U-Net family of the skip-connection study: ``unet``, ``noskip_unet``, ``attention_unet``.

The study needs "the same network with the skips removed and nothing else changed". MONAI's
``UNet`` wires its skips in internally and cannot drop them, so the three are ONE class,
:class:`SkipUNet`, assembled from MONAI blocks (``Convolution``, ``UpSample``, the attention gate
of ``monai.networks.nets.attentionunet``) with a ``skip`` mode; only the merge of each decoder
level differs (:class:`segrobust.networks.skip_merge.SkipMerge`). MONAI's ``AttentionUnet`` itself
is not used for ``attention_unet`` because its convolution / upsampling layout differs from the
U-Net's, which would confound "attention gates" with "a different network".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Pool
from torch import nn

from segrobust.networks.skip_merge import SkipMerge, level_widths


def _conv(
    spatial_dims: int, cin: int, cout: int, *, kernel_size: int, norm, act, **kw
) -> nn.Module:
    return Convolution(spatial_dims, cin, cout, kernel_size=kernel_size, norm=norm, act=act, **kw)


class SkipUNet(nn.Module):
    """A U-Net (Ronneberger et al. 2015) whose skip connections are a switch.

    Each encoder level is two 3x3 convolutions (MONAI ``Convolution``: conv, norm, ReLU), levels
    are joined by 2x max pooling. Each decoder level upsamples the deeper features with a
    transposed convolution (MONAI ``UpSample``, deconv) to the level's width, merges them with the
    encoder features by :class:`SkipMerge`, then applies two 3x3 convolutions. A 1x1 convolution
    gives the logits.

    With ``skip="none"`` the decoder level receives ONLY the upsampled deeper features: the first
    decoder convolution of each level then has ``channels[i]`` input channels instead of
    ``2 * channels[i]``; every other layer is identical to ``skip="concat"``.

    Args:
        spatial_dims: 2 or 3.
        channels: width of each level, top to bottom; ``len(channels)`` levels, so inputs must be
            divisible by ``2 ** (len(channels) - 1)``.
        skip: ``concat`` (U-Net), ``none`` (No-Skip U-Net) or ``attention`` (Attention U-Net).
        norm: MONAI norm name for every convolution (``batch``, ``instance``...).
        dropout: dropout probability in every convolution.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: Sequence[int],
        skip: str,
        norm: str,
        dropout: float,
    ) -> None:
        super().__init__()
        channels = level_widths(channels)
        conv = dict(kernel_size=3, norm=norm, act="relu", dropout=dropout)

        def double(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                _conv(spatial_dims, cin, cout, **conv), _conv(spatial_dims, cout, cout, **conv)
            )

        self.encoders = nn.ModuleList()
        cin = 1
        for c in channels:
            self.encoders.append(double(cin, c))
            cin = c
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            c = channels[level]
            self.ups.append(
                UpSample(spatial_dims, channels[level + 1], c, scale_factor=2, mode="deconv")
            )
            merge = SkipMerge(skip, spatial_dims, c)
            self.merges.append(merge)
            self.decoders.append(double(merge.out_channels, c))
        self.head = Convolution(spatial_dims, channels[0], 1, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge, dec in zip(self.ups, self.merges, self.decoders, strict=True):
            x = dec(merge(up(x), skips.pop()))
        return self.head(x)


def build_skip_unet(
    spatial_dims: int,
    *,
    img_size=None,
    skip: str,
    channels: Sequence[int],
    norm: str,
    dropout: float,
) -> nn.Module:
    """One of the U-Net family (``models.unet`` / ``noskip_unet`` / ``attention_unet``: channels,
    norm, dropout); the registry binds ``skip`` per architecture."""
    return SkipUNet(spatial_dims, channels, skip=skip, norm=norm, dropout=dropout)
