"""Shifted test sets of a model run beyond the study's own conditions, and the kind of each
condition (parse time: no torch, no file access).

The per-shift coverage (``segrobust.analysis.shift_coverage``) and the applicability check's
level (``segrobust.guarantees.applicability``) need labelled images of the shifts a deployment
brings. Most are test conditions the studies evaluate anyway (other blend alphas, each
perturbation and severity); this module adds one a study does not have: images of the same
textures at the same alpha from the second, independent generator
(``segrobust.data.authors_textures``), for every model run whose training dataset is a 2D
texture dataset (the texture grid's and named ``synthetic_texture`` datasets). Its dataset is
``resources/datasets/authors-<training dataset>`` (``shift_tests.authors_images`` images, seed
``shift_tests.authors_seed``; 0 images: none) and its condition ``authors-style`` is shift-only:
its rows go to the run's ``applicability.csv``, never to ``per_image.csv``, so the studies'
analyses are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segrobust.contract import Run, dataset_dir, texture_dataset_name
from segrobust.spec.runs import enabled_studies, study_datasets, texture_dataset_spec

AUTHORS_CONDITION = "authors-style"
AUTHORS_PREFIX = "authors-"
AUTHORS_KIND = "authors-style generator"
IN_DOMAIN_KIND = "in-domain"
#: What the second generator takes from the training dataset's generator arguments.
AUTHORS_KEYS = ("image_size", "foreground", "background", "direction", "alpha")


def authors_dataset_name(dataset: str) -> str:
    """``authors-<dataset>``: the second generator's images like ``dataset``'s."""
    return f"{AUTHORS_PREFIX}{dataset}"


def _texture_spec(config: Mapping[str, Any], dataset: str) -> Mapping[str, Any] | None:
    """The generator arguments of a 2D texture training dataset, else None."""
    if dataset.startswith("texture-"):
        _, direction, alpha = dataset.split("-", 2)
        if texture_dataset_name(direction, float(alpha)) == dataset:
            return texture_dataset_spec(config, direction, float(alpha))
    entry = config["datasets"].get(dataset)
    if entry is not None and entry["source"] == "synthetic_texture":
        return entry
    return None


def authors_dataset_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Arguments of ``generate_authors_texture_dataset`` for dataset ``authors-<dataset>``.

    Raises:
        ValueError: ``name`` is not an authors'-style dataset of a 2D texture dataset.
    """
    source = name.removeprefix(AUTHORS_PREFIX)
    spec = _texture_spec(config, source) if name.startswith(AUTHORS_PREFIX) else None
    if spec is None:
        raise ValueError(
            f"{name!r} is not an authors'-style dataset: allowed are {AUTHORS_PREFIX}<dataset> "
            "for a texture-grid or synthetic_texture dataset"
        )
    shifts = config["shift_tests"]
    return {
        **{key: spec[key] for key in AUTHORS_KEYS},
        "n_test": shifts["authors_images"],
        "seed": shifts["authors_seed"],
    }


def authors_dataset_names(config: Mapping[str, Any]) -> list[str]:
    """Every authors'-style dataset the config's runs are evaluated on (none when
    ``shift_tests.authors_images`` is 0)."""
    if config["shift_tests"]["authors_images"] == 0:
        return []
    datasets = {d for s in enabled_studies(config) for d in study_datasets(config, s)}
    return sorted(authors_dataset_name(d) for d in datasets if _texture_spec(config, d))


def shift_conditions(config: Mapping[str, Any], run: Run) -> list[dict]:
    """The shift-only conditions of ``run`` (``segrobust.spec.runs.evaluation_conditions``
    appends them): the authors'-style test set where the run trains on a 2D texture dataset."""
    name = authors_dataset_name(run.dataset)
    if name not in authors_dataset_names(config):
        return []
    return [
        {
            "name": AUTHORS_CONDITION,
            "dataset_dir": dataset_dir(name),
            "input": dataset_dir(name),
            "split": "test",
            "meta": {"test_dataset": name},
            "shift_only": True,
        }
    ]


def shift_kind(condition: str, columns: Mapping[str, Any], run: Run) -> tuple[str, bool]:
    """``(kind, in_domain)`` of a test condition of ``run``: ``in-domain`` (its own test
    distribution), the authors'-style generator, ``<perturbation> s<severity>``, or for the
    texture grid ``alpha <train> -> <test>``."""
    if condition == AUTHORS_CONDITION:
        return AUTHORS_KIND, False
    if condition in ("clean", run.dataset):
        return IN_DOMAIN_KIND, True
    perturbation = columns.get("perturbation")
    if perturbation not in (None, "none"):
        return f"{perturbation} s{int(columns['severity'])}", False
    train, test = columns.get("train_alpha"), columns.get("test_alpha")
    if train is not None and test is not None:
        return f"alpha {float(train):g} -> {float(test):g}", False
    return condition, False
