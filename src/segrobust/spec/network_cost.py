"""Compute and memory of one network per input voxel, from its config keys, without torch.

The cluster resources of training and evaluation (:mod:`segrobust.spec.resources`) scale with
how much a network computes per voxel, which its width sets (``models.<arch>``). Parse time must
stay torch-free (every cluster job re-parses the Snakefile), so the cost is counted here from
the architecture's layer layout, mirroring the builders in ``segrobust.networks`` (and MONAI's
``BasicUNetPlusPlus``, ``UNet``, ``UNETR`` and ``SwinUNETR`` they wrap).
``tests/test_resources.py`` checks the counts against torch's own FLOP counter on the real
networks, at the default widths and at the papers' (or doubled) widths.

Each architecture's record (``segrobust.spec.architectures``) names its function here, which
lists the network as :class:`Layer` records: a convolution or dense layer with
``cin`` inputs, ``cout`` outputs and ``taps`` multiply-adds per input and output channel per
output element, at ``scale`` output elements per input voxel (a level ``l`` below the top of a
``d``-dimensional network has ``scale = 2 ** (-d * l)``). Per input voxel, a layer costs
``cin * cout * taps * scale`` multiply-adds (MACs) and stores ``cout * scale`` activations.
Normalisation, activation, pooling and concatenation are not counted: they cost time but no
MACs, and the measured seconds per MAC (in :mod:`segrobust.spec.resources`) absorb them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segrobust.registry import import_target
from segrobust.spec.architectures import UNETR_VIT_PATCH, get_architecture

#: MONAI UNETR's ViT: 12 transformer layers on 16-voxel patches (both fixed inside UNETR).
UNETR_LAYERS = 12
#: MONAI SwinUNETR: 2-voxel patch embedding, 7-voxel attention windows, MLP ratio 4.
SWIN_PATCH = 2
SWIN_WINDOW = 7
SWIN_MLP_RATIO = 4


@dataclass(frozen=True)
class Layer:
    """One convolution or dense layer (see the module docstring for the fields)."""

    cin: float
    cout: float
    taps: float
    scale: float
    kernel: float | None = None

    @property
    def weights(self) -> float:
        """Weights of the layer (``kernel`` taps per channel pair; ``taps`` when not given)."""
        return self.cin * self.cout * (self.taps if self.kernel is None else self.kernel)

    @property
    def macs(self) -> float:
        """Multiply-adds per input voxel."""
        return self.cin * self.cout * self.taps * self.scale

    @property
    def activations(self) -> float:
        """Output values per input voxel."""
        return self.cout * self.scale


def _scale(dims: int, level: int) -> float:
    return 2.0 ** (-dims * level)


def skip_unet_layers(dims: int, kwargs: Mapping[str, Any], size: Sequence[int]) -> list[Layer]:
    """``segrobust.networks.skip_unet.SkipUNet``: two 3^d convolutions per level and side, a
    2x transposed convolution up, an additive attention gate (1x1 convolutions) for
    ``skip = attention``."""
    channels, k, skip = list(kwargs["channels"]), 3**dims, kwargs["skip"]
    layers, cin = [], 1
    for level, c in enumerate(channels):
        s = _scale(dims, level)
        layers += [Layer(cin, c, k, s), Layer(c, c, k, s)]
        cin = c
    for level in range(len(channels) - 1):
        c, below, s = channels[level], channels[level + 1], _scale(dims, level)
        layers.append(Layer(below, c, 1, s, 2**dims))  # kernel 2, stride 2: one tap per output
        if skip == "attention":
            inner = max(c // 2, 1)
            layers += [Layer(c, inner, 1, s), Layer(c, inner, 1, s), Layer(inner, 1, 1, s)]
        merged = c if skip == "none" else 2 * c
        layers += [Layer(merged, c, k, s), Layer(c, c, k, s)]
    layers.append(Layer(channels[0], 1, 1, 1.0))
    return layers


def skip_vnet_layers(dims: int, kwargs: Mapping[str, Any], size: Sequence[int]) -> list[Layer]:
    """``segrobust.networks.skip_vnet.SkipVNet``: residual stages of ``convs[l]`` k^d
    convolutions, 2x strided convolutions down and transposed convolutions up."""
    channels, k, skip = list(kwargs["channels"]), kwargs["kernel_size"] ** dims, kwargs["skip"]
    convs = kwargs["convs"] or [min(level + 1, 3) for level in range(len(channels))]
    layers = []

    def stage(cin: int, c: int, n: int, s: float) -> None:
        layers.extend([Layer(cin, c, k, s)] + [Layer(c, c, k, s)] * (n - 1))

    for level, c in enumerate(channels):
        s = _scale(dims, level)
        stage(1 if level == 0 else c, c, convs[level], s)
        if level < len(channels) - 1:
            layers.append(Layer(c, channels[level + 1], 2**dims, _scale(dims, level + 1)))
    for level in range(len(channels) - 1):
        c, s = channels[level], _scale(dims, level)
        layers.append(Layer(channels[level + 1], c, 1, s, 2**dims))
        merged = c if skip == "none" else 2 * c
        stage(merged, c, convs[level], s)
    layers.append(Layer(channels[0], 1, 1, 1.0))
    return layers


def unetpp_layers(dims: int, kwargs: Mapping[str, Any], size: Sequence[int]) -> list[Layer]:
    """MONAI ``BasicUNetPlusPlus`` (deep supervision off): a two-convolution node at every
    (level i, column j) with i + j <= 4; node (i, j >= 1) concatenates the j nodes left of it
    with the 2x transposed-convolution upsampling of node (i + 1, j - 1). (Its three unused
    deep-supervision heads are 1x1 convolutions, left out.)"""
    f, k = list(kwargs["features"]), 3**dims
    layers, cin = [], 1
    for level in range(5):
        s = _scale(dims, level)
        layers += [Layer(cin, f[level], k, s), Layer(f[level], f[level], k, s)]
        cin = f[level]
    for level in range(4):
        s = _scale(dims, level)
        # MONAI halves the upsampled width below the top level (UpCat ``halves``)
        up = f[level + 1] if level == 0 else f[level + 1] // 2
        for column in range(1, 5 - level):
            out = f[5] if (level, column) == (0, 4) else f[level]
            layers.append(Layer(f[level + 1], up, 1, s, 2**dims))
            layers += [Layer(column * f[level] + up, out, k, s), Layer(out, out, k, s)]
    layers.append(Layer(f[5], 1, 1, 1.0))
    return layers


def _residual_unit(cin: int, cout: int, units: int, k: int, s: float, strided: bool) -> list:
    """MONAI ``ResidualUnit``: ``units`` convolutions, plus a residual convolution (k^d when
    strided, 1x1 otherwise) when the shape changes."""
    layers = [Layer(cin, cout, k, s)] + [Layer(cout, cout, k, s)] * (units - 1)
    if strided or cin != cout:
        layers.append(Layer(cin, cout, k if strided else 1, s))
    return layers


def monai_unet_layers(dims: int, kwargs: Mapping[str, Any], size: Sequence[int]) -> list[Layer]:
    """MONAI ``UNet`` with stride 2 everywhere: level l's down path is a strided residual unit
    to ``channels[l]`` (output at level l + 1); its up path a stride-2 transposed 3^d
    convolution (about (3/2)^d taps per output voxel) then a one-convolution residual unit."""
    channels, units, k = list(kwargs["channels"]), kwargs["num_res_units"], 3**dims
    layers, cin = [], 1
    for level, c in enumerate(channels[:-1]):
        s = _scale(dims, level + 1)
        layers += _residual_unit(cin, c, units, k, s, True) if units else [Layer(cin, c, k, s)]
        cin = c
    s_bottom = _scale(dims, len(channels) - 1)
    layers += (
        _residual_unit(cin, channels[-1], units, k, s_bottom, False)
        if units
        else [Layer(cin, channels[-1], k, s_bottom)]
    )
    for level in range(len(channels) - 1):
        last = level == len(channels) - 2
        upc = channels[level] + (channels[-1] if last else channels[level])
        out = 1 if level == 0 else channels[level - 1]
        s = _scale(dims, level)
        layers.append(Layer(upc, out, 1.5**dims, s, k))
        if units:
            layers += _residual_unit(out, out, 1, k, s, False)
    return layers


def _res_block(cin: int, cout: int, k: int, s: float) -> list[Layer]:
    """MONAI ``UnetResBlock``: two k^d convolutions, plus a 1x1 residual when widths differ."""
    layers = [Layer(cin, cout, k, s), Layer(cout, cout, k, s)]
    return layers + ([Layer(cin, cout, 1, s)] if cin != cout else [])


def _up_block(cin: int, cout: int, k: int, s: float, dims: int) -> list[Layer]:
    """MONAI ``UnetrUpBlock``: 2x transposed convolution, concatenation, residual block."""
    return [Layer(cin, cout, 1, s, 2**dims)] + _res_block(2 * cout, cout, k, s)


def _transformer_block(width: float, hidden: float, tokens: float, scale: float) -> list:
    """One pre-norm transformer block per token: q, k, v and output projections, the two MLP
    layers, and the attention products (QK^T and AV: ``2 * tokens`` MACs per channel)."""
    return [
        Layer(width, 4 * width, 1, scale),
        Layer(width, hidden, 1, scale),
        Layer(hidden, width, 1, scale),
        Layer(2 * tokens, width, 1, scale, 0),
    ]


def unetr_layers(dims: int, kwargs: Mapping[str, Any], size: Sequence[int]) -> list[Layer]:
    """MONAI ``UNETR``: a ViT on 16^d patches, its hidden states brought to 1/8, 1/4 and 1/2
    resolution by transposed convolutions (``UnetrPrUpBlock``), and a residual decoder."""
    fs, h, k = kwargs["feature_size"], kwargs["hidden_size"], 3**dims
    tokens = math.prod(e // UNETR_VIT_PATCH for e in size)
    t = float(UNETR_VIT_PATCH) ** (-dims)
    s = [_scale(dims, level) for level in range(4)]
    layers = [Layer(1, h, UNETR_VIT_PATCH**dims, t)]
    for _ in range(UNETR_LAYERS):
        layers += _transformer_block(h, kwargs["mlp_dim"], tokens, t)
    layers += _res_block(1, fs, k, s[0])  # encoder1 on the input
    for width, n_up in ((2 * fs, 2), (4 * fs, 1), (8 * fs, 0)):  # encoder2-4
        layers.append(Layer(h, width, 1, s[3], 2**dims))
        for step in range(n_up):
            up = s[2 - step]
            layers += [Layer(width, width, 1, up, 2**dims)] + _res_block(width, width, k, up)
    layers += _up_block(h, 8 * fs, k, s[3], dims)  # decoder5 .. decoder2
    for level, width in ((2, 4 * fs), (1, 2 * fs), (0, fs)):
        layers += _up_block(2 * width, width, k, s[level], dims)
    layers.append(Layer(fs, 1, 1, 1.0))
    return layers


def swin_unetr_layers(dims: int, kwargs: Mapping[str, Any], size: Sequence[int]) -> list:
    """MONAI ``SwinUNETR``: patch embedding to 1/2 resolution, four Swin stages (windowed
    attention, MLP ratio 4) each ending in a patch merging to half resolution and twice the
    width, residual blocks on every stage's output and a residual decoder."""
    fs, k = kwargs["feature_size"], 3**dims
    s = [_scale(dims, level) for level in range(6)]
    layers = [Layer(1, fs, SWIN_PATCH**dims, s[1])]
    for stage, depth in enumerate(kwargs["depths"]):
        width, scale = fs * 2**stage, s[stage + 1]
        window = math.prod(min(SWIN_WINDOW, max(e // 2 ** (stage + 1), 1)) for e in size)
        for _ in range(depth):
            layers += _transformer_block(width, SWIN_MLP_RATIO * width, window, scale)
        layers.append(Layer(2**dims * width, 2 * width, 1, s[stage + 2]))
    layers += _res_block(1, fs, k, s[0])
    for level, width in ((1, fs), (2, 2 * fs), (3, 4 * fs), (5, 16 * fs)):
        layers += _res_block(width, width, k, s[level])
    for level, width in ((4, 8 * fs), (3, 4 * fs), (2, 2 * fs), (1, fs), (0, fs)):
        layers += _up_block(2 * width if level else width, width, k, s[level], dims)
    layers.append(Layer(fs, 1, 1, 1.0))
    return layers


def network_layers(
    arch: str, dims: int, kwargs: Mapping[str, Any], size: Sequence[int]
) -> list[Layer]:
    """The counted layers of ``arch`` (``models.<arch>`` keys ``kwargs``) on inputs of spatial
    ``size`` (only UNETR and Swin UNETR depend on it: their token counts), by the cost model
    its record names (``segrobust.spec.architectures``: ``layers``, given the config keys and
    the record's ``fixed`` arguments).

    Raises:
        UnknownNameError: for an architecture without a record, naming the known ones.
    """
    record = get_architecture(arch)
    return import_target(record.layers)(dims, {**kwargs, **record.fixed}, size)


def macs_per_voxel(arch: str, dims: int, kwargs: Mapping[str, Any], size: Sequence[int]) -> float:
    """Forward multiply-adds per input voxel of ``arch`` on inputs of spatial ``size``."""
    return sum(layer.macs for layer in network_layers(arch, dims, kwargs, size))


def activations_per_voxel(
    arch: str, dims: int, kwargs: Mapping[str, Any], size: Sequence[int]
) -> float:
    """Layer outputs per input voxel (values kept for the backward pass, before counting the
    normalisation and activation copies of each)."""
    return sum(layer.activations for layer in network_layers(arch, dims, kwargs, size))


def parameter_count(arch: str, dims: int, kwargs: Mapping[str, Any], size: Sequence[int]) -> float:
    """Weights of the counted layers (biases and norms left out): weights, gradients and the
    two Adam moments are four copies of this."""
    return sum(layer.weights for layer in network_layers(arch, dims, kwargs, size))
