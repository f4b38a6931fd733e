"""``unetr``: UNETR (Hatamizadeh et al. 2022), MONAI's ``UNETR``: a ViT encoder on 16-voxel
patches with a convolutional decoder. Its input size is fixed at construction: the training
patch (or image) size."""

from __future__ import annotations

from monai.networks.nets import UNETR
from torch import nn

from segrobust.spec.input_sizes import as_size


def build_unetr(
    spatial_dims: int,
    *,
    img_size,
    feature_size: int,
    hidden_size: int,
    mlp_dim: int,
    num_heads: int,
    proj_type: str,
) -> nn.Module:
    """UNETR (``models.unetr``). ``img_size`` (each edge a multiple of 16) is required;
    ``hidden_size`` must be divisible by ``num_heads``; ``proj_type`` is the ViT patch embedding
    (``conv`` or ``perceptron``; the context paper used ``perceptron``)."""
    if img_size is None:
        raise ValueError("unetr needs img_size (the training patch or image size)")
    return UNETR(
        1,
        1,
        as_size(img_size, spatial_dims),
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        proj_type=proj_type,
        spatial_dims=spatial_dims,
    )
