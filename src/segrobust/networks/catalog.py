"""The architecture registry: config name -> builder.

Every builder takes ``(spatial_dims, *, img_size, **arch_kwargs)`` with the architecture's
config keys (``models.<name>`` of the config schema, which states their defaults) as explicit
keyword arguments, and returns a network with 1 input channel and 1 output channel of logits, so
training, inference and ``model.pt`` never need to know which architecture they hold. Adding an
architecture: one module with its builder, one line here, its schema entry (keys and defaults),
its input-size rule in ``segrobust.spec.input_sizes``, and its name in
``segrobust.contract.ARCHITECTURES``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from segrobust.networks.monai_unet import build_monai_unet
from segrobust.networks.skip_unet import build_skip_unet
from segrobust.networks.skip_vnet import build_skip_vnet
from segrobust.networks.swin_unetr import build_swin_unetr
from segrobust.networks.unetpp import build_unetpp
from segrobust.networks.unetr import build_unetr
from segrobust.registry import Registry

ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture")

for _name, _builder in (
    ("unet", functools.partial(build_skip_unet, skip="concat")),
    ("noskip_unet", functools.partial(build_skip_unet, skip="none")),
    ("attention_unet", functools.partial(build_skip_unet, skip="attention")),
    ("vnet", functools.partial(build_skip_vnet, skip="concat")),
    ("noskip_vnet", functools.partial(build_skip_vnet, skip="none")),
    ("unetpp", build_unetpp),
    ("unetr", build_unetr),
    ("swin_unetr", build_swin_unetr),
    ("monai_unet", build_monai_unet),
):
    ARCHITECTURES.register(_name)(_builder)


def build_model(name: str, spatial_dims: int, *, img_size=None, **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` with 1 input and 1 output (logit) channel.

    Raises:
        UnknownNameError: for an unknown ``name``, listing the allowed names.
        ValueError: for ``spatial_dims`` other than 2 or 3, or keys the architecture does not
            take (naming them and the keys it takes).
    """
    builder = ARCHITECTURES.get(name)
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    expected = _keys_of(builder)
    problems = []
    if unknown := sorted(set(kwargs) - expected):
        problems.append(f"unknown key(s) {', '.join(unknown)}")
    if missing := sorted(expected - set(kwargs)):
        problems.append(f"missing key(s) {', '.join(missing)}")
    if problems:
        raise ValueError(
            f"architecture {name!r}: {'; '.join(problems)}; it takes: {', '.join(sorted(expected))}"
        )
    return builder(spatial_dims, img_size=img_size, **kwargs)


def _keys_of(builder: Callable[..., nn.Module]) -> set[str]:
    """The config keys a builder takes: its keyword-only arguments besides ``img_size`` (the
    run's input size) and what the registry binds (e.g. the U-Net family's ``skip``)."""
    parameters = inspect.signature(builder).parameters.values()
    bound = builder.keywords if isinstance(builder, functools.partial) else {}
    return {
        p.name
        for p in parameters
        if p.kind is p.KEYWORD_ONLY and p.name != "img_size" and p.name not in bound
    }
