"""Which spatial input sizes each architecture can take, without importing torch.

Config validation runs at Snakefile parse time (on every cluster job too), so it must not import
torch or MONAI; the arithmetic rules are each architecture's record
(``segrobust.spec.architectures``: ``divisor``, ``instance_norm``), mirroring the networks built
in ``segrobust.networks`` (which re-exports :func:`check_input_size`), and
``tests/test_models.py`` checks them against real forward passes. ``kwargs`` are an
architecture's config keys (``models.<name>``, defaults filled in by the schema).
"""

from __future__ import annotations

import math
from typing import Any

from segrobust.spec.architectures import get_architecture


def as_size(size, spatial_dims: int) -> tuple[int, ...]:
    """An input size as one int per spatial axis (an int means a square / cube)."""
    if isinstance(size, int):
        return (size,) * spatial_dims
    size = tuple(int(s) for s in size)
    if len(size) != spatial_dims:
        raise ValueError(f"size {size} does not have {spatial_dims} dimensions")
    return size


def required_divisor(name: str, **kwargs: Any) -> int:
    """The number every input edge of ``name`` must be a multiple of (its record's rule).

    Raises:
        UnknownNameError: for an unknown ``name``, listing the allowed names.
    """
    return get_architecture(name).divisor(kwargs)


def check_input_size(name: str, spatial_dims: int, size, **kwargs: Any) -> str | None:
    """Why ``name`` cannot take inputs of spatial ``size`` (int or one int per axis), or None.

    Config validation calls this for each (architecture, patch or image size) pair so a bad
    combination fails before any job starts.
    """
    try:
        edges = as_size(size, spatial_dims)
    except ValueError as exc:
        return str(exc)
    divisor = required_divisor(name, **kwargs)
    bad = [e for e in edges if e <= 0 or e % divisor]
    if bad:
        return (
            f"{name} needs every edge of the input to be a positive multiple of {divisor}; "
            f"size {list(edges)} has {bad}"
        )
    if get_architecture(name).instance_norm(kwargs) and math.prod(e // divisor for e in edges) < 2:
        return (
            f"{name} uses instance normalisation, which needs more than one voxel at its deepest "
            f"level; size {list(edges)} leaves one (make an edge at least {2 * divisor})"
        )
    return None
