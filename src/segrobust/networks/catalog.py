"""Build an architecture by its config name, from its record (``segrobust.spec.architectures``).

Every builder takes ``(spatial_dims, *, img_size, **fixed, **config_keys)``: the record's bound
arguments (e.g. the U-Net family's ``skip``) and the architecture's config keys
(``models.<name>`` of the config schema, which states their defaults) as explicit keyword
arguments, and returns a network with 1 input channel and 1 output channel of logits, so
training, inference and ``model.pt`` never need to know which architecture they hold. A builder
module is imported the first time its architecture is built, so a job imports only the network
code it uses.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from segrobust.registry import import_target
from segrobust.spec.architectures import get_architecture


@functools.cache
def builder_of(name: str) -> Callable[..., nn.Module]:
    """The builder of architecture ``name`` with its record's ``fixed`` arguments bound.

    Raises:
        UnknownNameError: for an unknown ``name``, listing the allowed names.
    """
    record = get_architecture(name)
    return functools.partial(import_target(record.builder), **record.fixed)


def build_model(name: str, spatial_dims: int, *, img_size=None, **kwargs: Any) -> nn.Module:
    """Build architecture ``name`` with 1 input and 1 output (logit) channel.

    Raises:
        UnknownNameError: for an unknown ``name``, listing the allowed names.
        ValueError: for ``spatial_dims`` the architecture does not support, or keys it does not
            take (naming them and the keys it takes).
    """
    record = get_architecture(name)
    if spatial_dims not in record.spatial_dims:
        allowed = " or ".join(str(d) for d in record.spatial_dims)
        raise ValueError(f"{name}: spatial_dims must be {allowed}, got {spatial_dims!r}")
    builder = builder_of(name)
    expected = config_keys(builder)
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


def config_keys(builder: functools.partial) -> set[str]:
    """The config keys a bound builder takes: its keyword-only arguments besides ``img_size``
    (the run's input size) and what the record binds."""
    parameters = inspect.signature(builder.func).parameters.values()
    return {
        p.name
        for p in parameters
        if p.kind is p.KEYWORD_ONLY and p.name != "img_size" and p.name not in builder.keywords
    }
