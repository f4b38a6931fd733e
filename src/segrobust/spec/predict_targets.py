"""The config's ``predict:`` section turned into what the predict rules need (parse time).

Nothing here imports torch or MONAI: the Snakefile calls it while building the DAG.

``predict.model`` is either one model run, written as its path below ``results/``
(``<study>/<dataset>/<arch>/p<patch>/seed<seed>``, one of the runs the config trains), or
``recommended``: the runs of ``predict.study`` on ``predict.dataset`` (the study's only dataset
when null) at the study's lowest seed, one per architecture and patch size, among which the
recipe chooses per image (``segrobust.predict.batch``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segrobust.contract import Run
from segrobust.spec.config import ConfigError

RECOMMENDED = "recommended"

#: Where the predict_images rule writes (one folder per config).
PREDICT_DIR = "results/predict"

#: Levels of a command-line batch that names none: the workflow's defaults (1 - the schema's
#: ``analysis.conformal_alpha`` and its ``analysis.fnr_level``; tests/test_predict.py checks).
DEFAULT_CONFIDENCE = 0.9
DEFAULT_FNR_LEVEL = 0.1

_RUN_PATH = re.compile(
    r"(?P<study>[a-z]+)/(?P<dataset>[A-Za-z0-9][A-Za-z0-9_.-]*)/(?P<arch>[a-z_]+)/p(?P<patch>full|\d+)/seed(?P<seed>\d+)"
)


@dataclass(frozen=True)
class PredictPlan:
    """What one predict_images job does."""

    images: str
    runs: tuple[Run, ...]
    confidence: float
    fnr_level: float
    save_probabilities: bool


def parse_run_path(text: str) -> Run:
    """``texture/texture-background-0.5/unet/pfull/seed1`` -> the Run.

    Raises:
        ConfigError: naming ``predict.model`` and the expected form.
    """
    match = _RUN_PATH.fullmatch(str(text).strip("/"))
    if match is None:
        raise ConfigError(
            f"config key predict.model: {text!r} is not allowed; allowed: {RECOMMENDED!r} or a "
            "model run <study>/<dataset>/<arch>/p<patch>/seed<seed>, e.g. "
            "perturbation/texture_demo/unet/pfull/seed1"
        )
    parts = match.groupdict()
    return Run(parts["study"], parts["dataset"], parts["arch"], parts["patch"], int(parts["seed"]))


def _listed(runs: Sequence[Run], limit: int = 8) -> str:
    names = [r.model_dir.removeprefix("results/").replace("/models/", "/", 1) for r in runs]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def candidate_runs(predict: Mapping[str, Any], runs_by_study: Mapping[str, Sequence[Run]]):
    """The runs ``predict.model`` names (see the module docstring)."""
    every = [run for runs in runs_by_study.values() for run in runs]
    if predict["model"] != RECOMMENDED:
        run = parse_run_path(predict["model"])
        if run not in every:
            raise ConfigError(
                f"config key predict.model: run {predict['model']!r} is not trained by this "
                f"config; allowed: {RECOMMENDED!r} or one of {_listed(every)}"
            )
        return (run,)
    study = predict["study"]
    runs = list(runs_by_study.get(study, ()))
    if not runs:
        raise ConfigError(
            f"config key predict.study: study {study!r} is not enabled, so it has no runs to "
            f"recommend from; allowed: {', '.join(s for s, r in runs_by_study.items() if r)}"
        )
    datasets = sorted({r.dataset for r in runs})
    dataset = predict["dataset"]
    if dataset is None and len(datasets) > 1:
        raise ConfigError(
            f"config key predict.dataset: null, but study {study!r} trains on several datasets; "
            f"allowed: {', '.join(datasets)}"
        )
    dataset = datasets[0] if dataset is None else dataset
    if dataset not in datasets:
        raise ConfigError(
            f"config key predict.dataset: {dataset!r} is not a training dataset of study "
            f"{study!r}; allowed: {', '.join(datasets)}"
        )
    runs = [r for r in runs if r.dataset == dataset]
    seed = min(r.seed for r in runs)
    return tuple(r for r in runs if r.seed == seed)


def predict_plan(
    config: Mapping[str, Any], runs_by_study: Mapping[str, Sequence[Run]]
) -> PredictPlan | None:
    """The predict job of ``config``; None when ``predict.images`` is null (no predict job).

    Null levels take the analysis settings: confidence 1 - ``analysis.conformal_alpha``, FNR
    level ``analysis.fnr_level`` (the levels the study's report states).
    """
    predict = config["predict"]
    if predict["images"] is None:
        return None
    analysis = config["analysis"]
    confidence = predict["confidence"]
    fnr_level = predict["fnr_level"]
    return PredictPlan(
        images=str(predict["images"]),
        runs=candidate_runs(predict, runs_by_study),
        confidence=1.0 - analysis["conformal_alpha"] if confidence is None else confidence,
        fnr_level=analysis["fnr_level"] if fnr_level is None else fnr_level,
        save_probabilities=bool(predict["save_probabilities"]),
    )
