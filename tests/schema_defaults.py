"""The config schema's defaults, for tests: the schema is the one home of every default, so
tests take model widths, training settings and sliding-window settings from it and override only
what they exercise."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from snakemake.utils import validate

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


@functools.cache
def _defaults() -> dict[str, Any]:
    config: dict[str, Any] = {}
    validate(config, str(SCHEMA))  # fills every default in
    return config


def default_config() -> dict[str, Any]:
    """A fresh copy of the config with every schema default filled in."""
    return copy.deepcopy(_defaults())


def model_kwargs(arch: str, **overrides: Any) -> dict[str, Any]:
    """The architecture's config keys (``models.<arch>``) with ``overrides``."""
    return {**_defaults()["models"][arch], **overrides}


def window(**overrides: Any):
    """Sliding-window settings from ``studies.context.inference`` with ``overrides``."""
    from segrobust.evaluation.infer import SlidingWindow

    inference = {**_defaults()["studies"]["context"]["inference"], **overrides}
    return SlidingWindow.from_config(inference)


def train_settings(patch_size=None, *, inference: dict | None = None, **overrides: Any):
    """``TrainSettings`` from a study's default ``train`` section with ``overrides``."""
    from segrobust.training.train import TrainSettings

    train = {**_defaults()["studies"]["texture"]["train"], **overrides}
    window_config = {**_defaults()["studies"]["context"]["inference"], **(inference or {})}
    return TrainSettings.from_config(train, patch_size, window_config)
