"""One record per architecture: everything segrobust knows about it, without importing torch.

An architecture used to live in nine places (the vocabulary, the builder registry, the input-size
rules, the cost model's dispatch, two tables of measured constants, the report's palette, ...).
Each of those now derives from the :class:`Architecture` record here:

- ``networks.catalog.build_model`` imports the record's ``builder`` (``"module:function"``) when a
  network is first built, and binds the record's ``fixed`` keyword arguments;
- ``spec.input_sizes`` checks input sizes with the record's ``divisor`` and ``instance_norm``;
- ``spec.network_cost.network_layers`` counts the layers with the record's ``layers`` function;
- ``spec.resources`` prices training and inference with ``train_s_per_gmac`` /
  ``infer_s_per_gmac``;
- the report colours and names an architecture with ``colour`` and ``display_name``;
- config validation refuses an architecture in a study whose dimensionality it does not support
  (``spatial_dims``); ``tests/test_registries_match_schema.py`` checks that the schema's
  ``definitions.arch`` enum and ``models`` entries name exactly the records.

Adding an architecture: a builder module in ``segrobust/networks/``, one record below, its
``models.<name>`` keys and defaults and its name in ``definitions.arch`` of the config schema,
and a tiny setting in ``tests/test_models.py`` (docs/ARCHITECTURE.md, "Extension points").

Parse time imports this module (config checks, cluster resources), so it imports nothing heavy:
builders and cost functions are named by strings and imported only where they are used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from segrobust.registry import Registry

#: MONAI UNETR's ViT patch edge (fixed inside UNETR): UNETR inputs are multiples of it.
UNETR_VIT_PATCH = 16
#: MONAI SwinUNETR downsamples by 32: a 2-voxel patch embedding and four 2x patch mergings.
SWIN_DOWNSAMPLING = 32
#: MONAI BasicUNetPlusPlus pools four times.
UNETPP_DOWNSAMPLING = 16


@dataclass(frozen=True)
class Architecture:
    """One architecture the studies can train.

    Attributes:
        name: the config name (``studies.<study>.archs``, ``models.<name>``).
        display_name: how the report names it ("No-skip U-Net").
        colour: its colour in every figure (hex).
        builder: ``"module:function"`` building it as ``builder(spatial_dims, *, img_size,
            **fixed, **config_keys)`` with 1 input and 1 output channel of logits.
        fixed: keyword arguments the record binds (the variant of a shared builder, e.g.
            ``skip="none"``); the config cannot set them.
        spatial_dims: the dimensionalities it supports (2: texture and perturbation studies,
            3: context study).
        divisor: ``divisor(config_keys)``: the number every input edge must be a multiple of.
        instance_norm: ``instance_norm(config_keys)``: whether it normalises per instance, which
            needs more than one voxel at its deepest level.
        layers: ``"module:function"`` of its cost model, ``layers(dims, keys, size)`` returning
            ``segrobust.spec.network_cost.Layer`` records (``keys``: config keys and ``fixed``).
        train_s_per_gmac, infer_s_per_gmac: seconds per 10^9 forward multiply-adds in training
            (backward and optimizer included) and in inference, per spatial dims, measured on
            one CPU thread by ``benchmarks/resource_constants.py`` (``segrobust.spec.resources``
            explains the conditions).
    """

    name: str
    display_name: str
    colour: str
    builder: str
    spatial_dims: tuple[int, ...]
    divisor: Callable[[Mapping[str, Any]], int] = field(repr=False)
    instance_norm: Callable[[Mapping[str, Any]], bool] = field(repr=False)
    layers: str
    train_s_per_gmac: Mapping[int, float]
    infer_s_per_gmac: Mapping[int, float]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def builder_module(self) -> str:
        """The dotted module of ``builder``."""
        return self.builder.partition(":")[0]

    def build_identity(self) -> str:
        """What of this record decides a trained network: the builder and its bound arguments.
        (Display name, colour, size rules and cost constants decide no output of a job that
        trains or evaluates it; ``segrobust.spec.code_deps`` hashes this text instead.)"""
        return repr((self.name, self.builder, sorted(self.fixed.items())))


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def register(record: Architecture) -> Architecture:
    """Add ``record`` to :data:`ARCHITECTURES` (a second record of one name is an error)."""
    return ARCHITECTURES.register(record.name)(record)


def get_architecture(name: str) -> Architecture:
    """The record called ``name``; an error lists the allowed names."""
    return ARCHITECTURES.get(name)


def _levels(keys: Mapping[str, Any]) -> int:
    """A network that halves its input ``len(channels) - 1`` times."""
    return 2 ** (len(keys["channels"]) - 1)


def _norm_key(keys: Mapping[str, Any]) -> bool:
    return keys["norm"] == "instance"


_COST = "segrobust.spec.network_cost"

# One register() per record: the records are data and alike in shape on purpose (`duplicates`
# pairs them); a table of tuples would lose the field names that make each value readable.

register(
    Architecture(
        name="unet",
        display_name="U-Net",
        colour="#1f77b4",
        builder="segrobust.networks.skip_unet:build_skip_unet",
        fixed={"skip": "concat"},
        spatial_dims=(2, 3),
        divisor=_levels,
        instance_norm=_norm_key,
        layers=f"{_COST}:skip_unet_layers",
        train_s_per_gmac={2: 0.261, 3: 0.153},
        infer_s_per_gmac={2: 0.089, 3: 0.032},
    )
)
register(
    Architecture(
        name="noskip_unet",
        display_name="No-skip U-Net",
        colour="#ff7f0e",
        builder="segrobust.networks.skip_unet:build_skip_unet",
        fixed={"skip": "none"},
        spatial_dims=(2, 3),
        divisor=_levels,
        instance_norm=_norm_key,
        layers=f"{_COST}:skip_unet_layers",
        train_s_per_gmac={2: 0.261, 3: 0.138},
        infer_s_per_gmac={2: 0.093, 3: 0.025},
    )
)
register(
    Architecture(
        name="attention_unet",
        display_name="Attention U-Net",
        colour="#2ca02c",
        builder="segrobust.networks.skip_unet:build_skip_unet",
        fixed={"skip": "attention"},
        spatial_dims=(2, 3),
        divisor=_levels,
        instance_norm=_norm_key,
        layers=f"{_COST}:skip_unet_layers",
        train_s_per_gmac={2: 0.283, 3: 0.187},
        infer_s_per_gmac={2: 0.096, 3: 0.026},
    )
)
register(
    Architecture(
        name="unetpp",
        display_name="UNet++",
        colour="#d62728",
        builder="segrobust.networks.unetpp:build_unetpp",
        spatial_dims=(2, 3),
        divisor=lambda keys: UNETPP_DOWNSAMPLING,
        instance_norm=_norm_key,
        layers=f"{_COST}:unetpp_layers",
        train_s_per_gmac={2: 0.358, 3: 0.160},
        infer_s_per_gmac={2: 0.114, 3: 0.051},
    )
)
register(
    Architecture(
        name="vnet",
        display_name="V-Net",
        colour="#9467bd",
        builder="segrobust.networks.skip_vnet:build_skip_vnet",
        fixed={"skip": "concat"},
        spatial_dims=(2, 3),
        divisor=_levels,
        instance_norm=_norm_key,
        layers=f"{_COST}:skip_vnet_layers",
        train_s_per_gmac={2: 0.124, 3: 0.083},
        infer_s_per_gmac={2: 0.039, 3: 0.012},
    )
)
register(
    Architecture(
        name="noskip_vnet",
        display_name="No-skip V-Net",
        colour="#8c564b",
        builder="segrobust.networks.skip_vnet:build_skip_vnet",
        fixed={"skip": "none"},
        spatial_dims=(2, 3),
        divisor=_levels,
        instance_norm=_norm_key,
        layers=f"{_COST}:skip_vnet_layers",
        train_s_per_gmac={2: 0.332, 3: 0.090},
        infer_s_per_gmac={2: 0.090, 3: 0.011},
    )
)
register(
    Architecture(
        name="unetr",
        display_name="UNETR",
        colour="#e377c2",
        builder="segrobust.networks.unetr:build_unetr",
        spatial_dims=(2, 3),
        divisor=lambda keys: UNETR_VIT_PATCH,
        # its decoder upsamples the ViT tokens before any normalisation
        instance_norm=lambda keys: False,
        layers=f"{_COST}:unetr_layers",
        train_s_per_gmac={2: 0.346, 3: 0.143},
        infer_s_per_gmac={2: 0.139, 3: 0.033},
    )
)
register(
    Architecture(
        name="monai_unet",
        display_name="MONAI U-Net",
        colour="#7f7f7f",
        builder="segrobust.networks.monai_unet:build_monai_unet",
        spatial_dims=(2, 3),
        divisor=_levels,
        instance_norm=_norm_key,
        layers=f"{_COST}:monai_unet_layers",
        train_s_per_gmac={2: 0.809, 3: 0.487},
        infer_s_per_gmac={2: 0.178, 3: 0.103},
    )
)
register(
    Architecture(
        name="swin_unetr",
        display_name="Swin UNETR",
        colour="#bcbd22",
        builder="segrobust.networks.swin_unetr:build_swin_unetr",
        spatial_dims=(2, 3),
        divisor=lambda keys: SWIN_DOWNSAMPLING,
        # built with MONAI's default norm_name="instance"
        instance_norm=lambda keys: True,
        layers=f"{_COST}:swin_unetr_layers",
        train_s_per_gmac={2: 0.550, 3: 0.631},
        infer_s_per_gmac={2: 0.249, 3: 0.450},
    )
)
