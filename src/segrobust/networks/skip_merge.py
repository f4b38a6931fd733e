"""How a decoder level merges the encoder features of its resolution: the switch the
skip-connection study turns (concatenation, attention-gated concatenation, or none)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

#: Merge modes: U-Net / V-Net concatenation, Attention U-Net gating, and no skip at all.
SKIP_MODES = ("concat", "none", "attention")


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


def level_widths(channels: Sequence[int]) -> tuple[int, ...]:
    """The widths of an encoder-decoder's levels, top to bottom, checked to have >= 2 levels."""
    channels = tuple(int(c) for c in channels)
    if len(channels) < 2:
        raise ValueError(f"channels needs at least 2 levels, got {channels}")
    return channels
