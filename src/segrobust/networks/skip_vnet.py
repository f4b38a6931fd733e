"""The V-Net pair of the skip-connection study: ``vnet`` and ``noskip_vnet``.

As for the U-Net family, MONAI's ``VNet`` concatenates its skips inside ``UpTransition`` and has
fixed widths, so the pair is one class, :class:`SkipVNet`, built from MONAI blocks with a skip
switch (:class:`segrobust.networks.skip_merge.SkipMerge`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from segrobust.networks.skip_merge import SkipMerge, level_widths


class ResidualStage(nn.Module):
    """A V-Net stage: ``n_convs`` 5x5(x5) convolutions whose output is added to ``residual``.

    ``forward(x, residual)`` returns ``act(convs(x) + residual)``; the first convolution maps
    ``in_channels`` to ``channels``, so ``x`` may be wider than the residual (a merged decoder
    input) while the residual path keeps ``channels``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: int,
        n_convs: int,
        *,
        kernel_size: int,
        norm: str,
        dropout: float,
    ) -> None:
        super().__init__()
        layers = []
        for i in range(n_convs):
            last = i == n_convs - 1
            layers.append(
                Convolution(
                    spatial_dims,
                    in_channels if i == 0 else channels,
                    channels,
                    kernel_size=kernel_size,
                    norm=norm,
                    act=None if last else "prelu",
                    dropout=dropout,
                )
            )
        self.convs = nn.Sequential(*layers)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + residual)


def _resample(spatial_dims: int, cin: int, cout: int, norm: str, *, up: bool) -> nn.Module:
    """V-Net's level transition: a 2x2 convolution of stride 2 (down), or its transpose (up),
    with norm and PReLU."""
    return Convolution(
        spatial_dims, cin, cout, strides=2, kernel_size=2, norm=norm, act="prelu", padding=0,
        is_transposed=up, output_padding=0 if up else None,
    )  # fmt: skip


class SkipVNet(nn.Module):
    """A V-Net (Milletari et al. 2016) with residual stages whose skip connections are a switch.

    Encoder level ``i`` is a :class:`ResidualStage` of ``convs[i]`` convolutions at
    ``channels[i]``; levels are joined by a 2x2 strided convolution (``channels[i] ->
    channels[i+1]``), which is also the residual of the next stage. The input stage adds the
    1-channel input broadcast to ``channels[0]`` as its residual (as V-Net's input transition).
    Each decoder level upsamples with a 2x2 transposed convolution to ``channels[i]``, merges with
    the encoder features by :class:`SkipMerge`, and runs a residual stage whose residual is the
    upsampled tensor. A 1x1 convolution gives the logits.

    Differences from MONAI's ``VNet`` (fixed widths 16..256, ``16 % in_channels == 0``, skips
    concatenated inside ``UpTransition``): widths and depth are configurable, and with
    ``skip="none"`` the decoder stage's first convolution takes ``channels[i]`` instead of
    ``2 * channels[i]`` inputs; nothing else changes. Inputs must be divisible by
    ``2 ** (len(channels) - 1)``.

    Args:
        spatial_dims: 2 or 3.
        channels: width of each level, top to bottom.
        convs: convolutions per stage, top to bottom (decoder mirrors the encoder); default
            ``min(level + 1, 3)`` as in the paper (1, 2, 3, 3, ...).
        skip: ``concat`` (V-Net) or ``none`` (No-Skip V-Net); ``attention`` also works.
        kernel_size: convolution kernel edge (the paper's 5).
        norm: MONAI norm name.
        dropout: dropout probability in every convolution.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: Sequence[int],
        convs: Sequence[int] | None,
        skip: str,
        kernel_size: int,
        norm: str,
        dropout: float,
    ) -> None:
        super().__init__()
        channels = level_widths(channels)
        convs = (
            tuple(convs)
            if convs is not None
            else tuple(min(i + 1, 3) for i in range(len(channels)))
        )
        if len(convs) != len(channels):
            raise ValueError(f"convs {convs} needs one entry per level of channels {channels}")
        opts = dict(kernel_size=kernel_size, norm=norm, dropout=dropout)
        self.stem_channels = channels[0]
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, c in enumerate(channels):
            self.encoders.append(
                ResidualStage(spatial_dims, 1 if i == 0 else c, c, convs[i], **opts)
            )
            if i < len(channels) - 1:
                self.downs.append(_resample(spatial_dims, c, channels[i + 1], norm, up=False))
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            c = channels[level]
            self.ups.append(_resample(spatial_dims, channels[level + 1], c, norm, up=True))
            merge = SkipMerge(skip, spatial_dims, c)
            self.merges.append(merge)
            self.decoders.append(
                ResidualStage(spatial_dims, merge.out_channels, c, convs[level], **opts)
            )
        self.head = Convolution(spatial_dims, channels[0], 1, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.encoders[0](x, x.expand(-1, self.stem_channels, *x.shape[2:]))
        skips.append(x)
        for down, enc in zip(self.downs, self.encoders[1:], strict=True):
            d = down(x)
            x = enc(d, d)
            skips.append(x)
        x = skips.pop()
        for up, merge, dec in zip(self.ups, self.merges, self.decoders, strict=True):
            u = up(x)
            x = dec(merge(u, skips.pop()), u)
        return self.head(x)


def build_skip_vnet(
    spatial_dims: int,
    *,
    img_size=None,
    skip: str,
    channels: Sequence[int],
    convs: Sequence[int] | None,
    kernel_size: int,
    norm: str,
    dropout: float,
) -> nn.Module:
    """V-Net or No-Skip V-Net (``models.vnet`` / ``noskip_vnet``: channels, convs, kernel_size,
    norm, dropout); the registry binds ``skip`` per architecture."""
    return SkipVNet(
        spatial_dims, channels, convs, skip, kernel_size=kernel_size, norm=norm, dropout=dropout
    )
