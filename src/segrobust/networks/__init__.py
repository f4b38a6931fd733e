"""Architecture registry: every network the studies compare, built from MONAI blocks.

All builders take ``(spatial_dims, img_size=None, **kwargs)`` and return a network with 1 input
channel and 1 output channel of logits, so training, inference and ``model.pt`` never need to know
which architecture they hold.

The skip-connection study needs "the same network with the skips removed and nothing else
changed". Two MONAI networks (``UNet``, ``VNet``) wire their skips in internally and cannot drop
them, so the U-Net family (``unet``, ``noskip_unet``, ``attention_unet``) is ONE class,
:class:`SkipUNet`, and the V-Net pair (``vnet``, ``noskip_vnet``) is ONE class, :class:`SkipVNet`,
each assembled from MONAI blocks (``Convolution``, ``UpSample``, the attention gate of
``monai.networks.nets.attentionunet``) with a ``skip`` mode. Only the merge of each decoder level
differs between modes (see :class:`SkipMerge`). MONAI's ``AttentionUnet`` itself is not used for
``attention_unet`` because its convolution/upsampling layout differs from the U-Net's, which would
confound "attention gates" with "a different network"; its gate block is reused instead.

``unetpp``, ``unetr`` and ``swin_unetr`` are MONAI's ``BasicUNetPlusPlus``, ``UNETR`` and
``SwinUNETR`` with 1-in / 1-out channels.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Pool
from monai.networks.nets import UNETR, BasicUNetPlusPlus, SwinUNETR
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from segrobust.registry import Registry
from segrobust.spec.input_sizes import (  # noqa: F401 (check_input_size is part of the API)
    DEFAULT_UNET_CHANNELS,
    DEFAULT_UNETPP_FEATURES,
    DEFAULT_VNET_CHANNELS,
    as_size,
    check_input_size,
)

ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture")

SKIP_MODES = ("concat", "none", "attention")

# Small widths that train in minutes on a 2-core CPU; the papers' widths are in the report.


class SkipMerge(nn.Module):
    """How one decoder level combines the upsampled deeper features ``up`` with the encoder
    features ``skip`` of the same resolution.

    ``concat``: ``cat(up, skip)`` (U-Net / V-Net). ``attention``: ``cat(up, gate(skip, up))``
    with MONAI's additive attention gate (Attention U-Net). ``none``: ``up`` alone; the encoder
    features are never read, so the decoder receives nothing from the encoder at this level.

    Args:
        mode: one of :data:`SKIP_MODES`.
        spatial_dims: 2 or 3.
        channels: channels of both ``up`` and ``skip`` at this level.
    """

    def __init__(self, mode: str, spatial_dims: int, channels: int) -> None:
        super().__init__()
        if mode not in SKIP_MODES:
            raise ValueError(f"unknown skip mode {mode!r}; allowed: {', '.join(SKIP_MODES)}")
        self.mode = mode
        self.gate = (
            AttentionBlock(spatial_dims, f_int=max(channels // 2, 1), f_g=channels, f_l=channels)
            if mode == "attention"
            else None
        )
        self.out_channels = channels if mode == "none" else 2 * channels

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return up
        if self.gate is not None:
            skip = self.gate(g=up, x=skip)
        return torch.cat((up, skip), dim=1)


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
        channels: Sequence[int] = DEFAULT_UNET_CHANNELS,
        skip: str = "concat",
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 levels, got {channels}")
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
        channels: Sequence[int] = DEFAULT_VNET_CHANNELS,
        convs: Sequence[int] | None = None,
        skip: str = "concat",
        kernel_size: int = 5,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 levels, got {channels}")
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
                self.downs.append(
                    Convolution(
                        spatial_dims,
                        c,
                        channels[i + 1],
                        strides=2,
                        kernel_size=2,
                        norm=norm,
                        act="prelu",
                        padding=0,
                    )
                )
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            c = channels[level]
            self.ups.append(
                Convolution(
                    spatial_dims,
                    channels[level + 1],
                    c,
                    strides=2,
                    kernel_size=2,
                    norm=norm,
                    act="prelu",
                    is_transposed=True,
                    padding=0,
                    output_padding=0,
                )
            )
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


class FirstOutput(nn.Module):
    """Wraps a network returning a list of outputs (UNet++) and returns the first (full-size)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def _require_einops(name: str) -> None:
    """MONAI imports einops (its transformer blocks' dependency) lazily and would fail deep inside
    the constructor or the first forward pass; fail early with the fix instead."""
    if importlib.util.find_spec("einops") is None:
        raise ImportError(f"{name} needs the 'einops' package (pip install einops)")


@ARCHITECTURES.register("unet")
def _unet(spatial_dims: int, img_size=None, **kwargs: Any) -> nn.Module:
    """U-Net with concatenated skips. kwargs: channels, norm, dropout (see SkipUNet)."""
    return SkipUNet(spatial_dims, skip="concat", **kwargs)


@ARCHITECTURES.register("noskip_unet")
def _noskip_unet(spatial_dims: int, img_size=None, **kwargs: Any) -> nn.Module:
    """The U-Net without skip connections (SkipUNet with skip="none")."""
    return SkipUNet(spatial_dims, skip="none", **kwargs)


@ARCHITECTURES.register("attention_unet")
def _attention_unet(spatial_dims: int, img_size=None, **kwargs: Any) -> nn.Module:
    """The U-Net with attention-gated skips (SkipUNet with skip="attention")."""
    return SkipUNet(spatial_dims, skip="attention", **kwargs)


@ARCHITECTURES.register("vnet")
def _vnet(spatial_dims: int, img_size=None, **kwargs: Any) -> nn.Module:
    """V-Net with concatenated skips. kwargs: channels, convs, kernel_size, norm, dropout."""
    return SkipVNet(spatial_dims, skip="concat", **kwargs)


@ARCHITECTURES.register("noskip_vnet")
def _noskip_vnet(spatial_dims: int, img_size=None, **kwargs: Any) -> nn.Module:
    """The V-Net without skip connections (SkipVNet with skip="none")."""
    return SkipVNet(spatial_dims, skip="none", **kwargs)


@ARCHITECTURES.register("unetpp")
def _unetpp(
    spatial_dims: int,
    img_size=None,
    features: Sequence[int] = DEFAULT_UNETPP_FEATURES,
    **kwargs: Any,
) -> nn.Module:
    """UNet++ (MONAI BasicUNetPlusPlus, deep supervision off).

    kwargs: ``features`` (6 ints: the five level widths and the last decoder's width; MONAI's
    default (32, 32, 64, 128, 256, 32)), plus BasicUNetPlusPlus's ``act``, ``norm``, ``dropout``,
    ``upsample``. Inputs must be divisible by 16.
    """
    net = BasicUNetPlusPlus(
        spatial_dims, 1, 1, features=tuple(features), deep_supervision=False, **kwargs
    )
    return FirstOutput(net)


@ARCHITECTURES.register("unetr")
def _unetr(
    spatial_dims: int,
    img_size=None,
    feature_size: int = 8,
    hidden_size: int = 96,
    mlp_dim: int = 192,
    num_heads: int = 4,
    **kwargs: Any,
) -> nn.Module:
    """UNETR (MONAI). ``img_size`` (the training patch / image size) is required, each edge a
    multiple of 16 (the ViT patch). kwargs: ``feature_size`` (CNN decoder width), ``hidden_size``,
    ``mlp_dim``, ``num_heads`` (ViT; hidden_size divisible by num_heads), plus UNETR's
    ``norm_name``, ``dropout_rate``... Paper values: 16, 768, 3072, 12."""
    if img_size is None:
        raise ValueError("unetr needs img_size (the training patch or image size)")
    _require_einops("unetr")
    size = as_size(img_size, spatial_dims)
    return UNETR(
        1,
        1,
        size,
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        spatial_dims=spatial_dims,
        **kwargs,
    )


@ARCHITECTURES.register("swin_unetr")
def _swin_unetr(
    spatial_dims: int, img_size=None, feature_size: int = 12, **kwargs: Any
) -> nn.Module:
    """Swin UNETR (MONAI SwinUNETR; size-agnostic, inputs divisible by 32). kwargs:
    ``feature_size`` (multiple of 12; MONAI default 24, paper 48), ``depths``, ``num_heads``,
    ``window_size``..."""
    _require_einops("swin_unetr")
    return SwinUNETR(1, 1, feature_size=feature_size, spatial_dims=spatial_dims, **kwargs)


def build_model(name: str, spatial_dims: int, *, img_size=None, **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` with 1 input and 1 output (logit) channel.

    Raises:
        UnknownNameError: for an unknown ``name``, listing the allowed names.
        ValueError: for ``spatial_dims`` other than 2 or 3.
    """
    builder = ARCHITECTURES.get(name)
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return builder(spatial_dims, img_size=img_size, **kwargs)
