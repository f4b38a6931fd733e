"""The experiment grid: which model runs, datasets and test conditions a config asks for.

Rules and their input functions call these; they only build names and plain dicts from the
config (no torch, no file access), so the paper grid's DAG builds in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from segrobust.contract import (
    CLEAN,
    STUDIES,
    Run,
    condition_name,
    dataset_dir,
    texture_dataset_name,
)


def enabled_studies(config: Mapping[str, Any]) -> list[str]:
    """Studies switched on in ``config``, in pipeline order."""
    return [s for s in STUDIES if config["studies"][s]["enabled"]]


def texture_grid(config: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """(direction, alpha) of every texture-study dataset."""
    study = config["studies"]["texture"]
    for direction in study["directions"]:
        for alpha in study["alphas"]:
            yield direction, alpha


def study_datasets(config: Mapping[str, Any], study: str) -> list[str]:
    """The training datasets of ``study``'s runs (empty when the study is disabled): what
    needs them asks here rather than listing every run (``study_runs``), which made the
    paper grid's dry run quadratic in its runs (each evaluation job listed all 2,124 runs)."""
    spec = config["studies"][study]
    if not spec["enabled"]:
        return []
    if study == "texture":
        return [texture_dataset_name(d, a) for d, a in texture_grid(config)]
    return list(spec["datasets"])


def study_runs(config: Mapping[str, Any], study: str) -> list[Run]:
    """Every model run of ``study`` (empty when the study is disabled)."""
    spec = config["studies"][study]
    if not spec["enabled"]:
        return []
    seeds = spec["seeds"] or config["seeds"]
    datasets = study_datasets(config, study)
    patches = ["full"] if study != "context" else [str(p) for p in spec["patch_sizes"]]
    return [
        Run(study, dataset, arch, patch, seed)
        for dataset in datasets
        for arch in spec["archs"]
        for patch in patches
        for seed in seeds
    ]


def texture_dataset_spec(config: Mapping[str, Any], direction: str, alpha: float) -> dict:
    """Generator arguments of one texture-study dataset (plain values, for rule params)."""
    study = config["studies"]["texture"]
    return {
        "image_size": study["image_size"],
        **{key: study[key] for key in ("n_train", "n_validation", "n_calibration", "n_test")},
        "foreground": study["textures"]["foreground"],
        "background": study["textures"]["background"],
        "direction": direction,
        "alpha": float(alpha),
        "irregularity": study["shape"]["irregularity"],
        "radius": study["shape"]["radius"],
        "seed": study["data_seed"],
    }


def spatial_dims(study: str) -> int:
    """The context study is 3D; the texture and perturbation studies are 2D."""
    return 3 if study == "context" else 2


def train_spec(config: Mapping[str, Any], study: str, arch: str, patch: str) -> dict:
    """Everything a training job needs besides its paths (plain values: the params trigger)."""
    dims = spatial_dims(study)
    return {
        "arch": arch,
        "spatial_dims": dims,
        "model_kwargs": dict(config["models"][arch]),
        "train": dict(config["studies"][study]["train"]),
        "patch_size": None if patch == "full" else [int(patch)] * dims,
        "inference": window_settings(config, study),
    }


def window_settings(config: Mapping[str, Any], study: str) -> dict | None:
    """The sliding-window settings of a patch-trained study (the context study), else None.

    Only the keys that change predictions: toggling ``save_predictions`` must not re-train.
    """
    if study != "context":
        return None
    inference = config["studies"]["context"]["inference"]
    return {key: inference[key] for key in ("overlap", "mode", "sw_batch_size")}


def _condition(name: str, dataset: str, split: str, **meta: Any) -> dict:
    return {
        "name": name,
        "dataset_dir": dataset_dir(dataset),
        "input": dataset_dir(dataset),
        "split": split,
        "meta": {"test_dataset": dataset, **meta},
    }


def perturbation_condition_dir(dataset: str, perturbation: str) -> str:
    """Directory holding one sub-dataset per severity of a perturbed test split."""
    return f"results/perturbation/conditions/{dataset}/{perturbation}"


def evaluation_conditions(config: Mapping[str, Any], run: Run) -> list[dict]:
    """The test conditions a model run is evaluated on, each ``{name, dataset_dir, input, split,
    meta}``; ``input`` is the rule output holding ``dataset_dir`` (for the DAG).

    Every run is also evaluated on its own dataset's calibration split (under the in-domain
    condition's name), which the conformal analysis calibrates on, and on the shift-only
    conditions of ``segrobust.spec.shifts`` (the second texture generator).
    """
    from segrobust.spec.shifts import shift_conditions  # it builds on this module

    return _study_conditions(config, run) + shift_conditions(config, run)


def _study_conditions(config: Mapping[str, Any], run: Run) -> list[dict]:
    """The study's own test conditions of ``run`` (``evaluation_conditions``)."""
    if run.study == "texture":
        _, direction, alpha = run.dataset.split("-", 2)
        conds = []
        for test_alpha in config["studies"]["texture"]["alphas"]:
            test_ds = texture_dataset_name(direction, test_alpha)
            meta = {
                "direction": direction,
                "train_alpha": float(alpha),
                "test_alpha": float(test_alpha),
                **CLEAN,
            }
            conds.append(_condition(test_ds, test_ds, "test", **meta))
            if test_ds == run.dataset:
                conds.append(_condition(test_ds, test_ds, "calibration", **meta))
        return conds
    clean = dict(CLEAN)
    if run.study == "perturbation":
        clean["level"] = "Unperturbed"
    conds = [
        _condition("clean", run.dataset, "test", **clean),
        _condition("clean", run.dataset, "calibration", **clean),
    ]
    if run.study == "perturbation":
        study = config["studies"]["perturbation"]
        for perturbation in study["perturbations"]:
            condition_dir = perturbation_condition_dir(run.dataset, perturbation)
            for severity in study["severities"]:
                conds.append(
                    {
                        "name": condition_name(perturbation, severity),
                        "dataset_dir": f"{condition_dir}/s{severity}",
                        "input": condition_dir,
                        "split": "test",
                        "meta": {
                            "test_dataset": run.dataset,
                            "perturbation": perturbation,
                            "severity": severity,
                        },
                    }
                )
    return conds


def synthetic_dataset_names(config: Mapping[str, Any]) -> list[str]:
    """Named datasets under ``datasets`` that are generated rather than downloaded."""
    return [n for n, s in config["datasets"].items() if s["source"].startswith("synthetic_")]
