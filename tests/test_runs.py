"""The experiment grid built from a config."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from segrobust.contract import Run
from segrobust.spec.runs import evaluation_conditions, study_runs, texture_dataset_spec, train_spec
from segrobust.spec.shifts import authors_dataset_names, authors_dataset_spec, shift_kind

REPO = Path(__file__).resolve().parents[1]


def config_from(path):
    config = yaml.safe_load((REPO / path).read_text())
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def grid_config():
    """The default config with the grid these tests read spelled out, so that they test how
    conditions are built, not what the default study happens to hold."""
    config = config_from("config/config.yaml")
    config["studies"]["texture"].update(
        image_size=64, directions=["background", "foreground"], alphas=[0.1, 0.5, 0.9]
    )
    config["studies"]["perturbation"].update(
        perturbations=["speckle", "background_blur", "gaussian_noise", "blur"],
        severities=[1, 2, 3, 4, 5],
    )
    config["datasets"]["texture_demo"].update(image_size=64, alpha=0.5, direction="background")
    config["shift_tests"] = {**config.get("shift_tests", {}), "authors_images": 200}
    return config


def test_paper_grid_has_the_published_size():
    config = config_from("config/paper.yaml")
    texture = study_runs(config, "texture")
    assert len(texture) == 2 * 15 * 6 * 5
    assert len(study_runs(config, "perturbation")) == 4 * 6 * 3
    assert len(study_runs(config, "context")) == 2 * 5 * 3 * 3


def test_texture_run_is_tested_on_every_alpha_of_its_direction_plus_calibration():
    config = grid_config()
    run = Run("texture", "texture-foreground-0.5", "unet", "full", 1)
    conds = evaluation_conditions(config, run)
    *conds, authors = conds  # the shift-only test set of the second generator comes last
    assert authors["shift_only"] and authors["name"] == "authors-style"
    assert authors["dataset_dir"] == "resources/datasets/authors-texture-foreground-0.5"
    tests = [c for c in conds if c["split"] == "test"]
    assert [c["meta"]["test_alpha"] for c in tests] == [0.1, 0.5, 0.9]
    assert all(c["meta"]["direction"] == "foreground" for c in conds)
    assert all(c["meta"]["train_alpha"] == 0.5 for c in conds)
    # unperturbed rows say so (contract 4), which the conformal calibration lookup relies on
    assert all(c["meta"]["perturbation"] == "none" and c["meta"]["severity"] == 0 for c in conds)
    (cal,) = [c for c in conds if c["split"] == "calibration"]
    assert cal["dataset_dir"] == "resources/datasets/texture-foreground-0.5"


def test_perturbation_run_conditions_cover_every_severity():
    config = grid_config()
    run = Run("perturbation", "texture_demo", "unet", "full", 1)
    conds = evaluation_conditions(config, run)
    names = {c["name"] for c in conds}
    assert "clean" in names and "speckle-s1" in names and "blur-s5" in names
    assert "authors-style" in names  # texture_demo is a 2D texture dataset
    assert len(conds) == 2 + 4 * 5 + 1
    blur3 = next(c for c in conds if c["name"] == "blur-s3")
    assert blur3["dataset_dir"].endswith("conditions/texture_demo/blur/s3")
    assert blur3["input"].endswith("conditions/texture_demo/blur")


def test_shift_tests_reach_2d_texture_runs_only_and_can_be_switched_off():
    config = grid_config()
    assert authors_dataset_names(config) == [
        f"authors-{name}" for name in sorted(
            [f"texture-{d}-{a}" for d in ("background", "foreground") for a in (0.1, 0.5, 0.9)]
            + ["texture_demo"]
        )
    ]  # fmt: skip
    spec = authors_dataset_spec(config, "authors-texture_demo")
    assert spec == dict(image_size=64, foreground="brick", background="grass",
                        direction="background", alpha=0.5, n_test=200, seed=1)  # fmt: skip
    context = Run("context", "spheres", "unet", "16", 1)
    assert not [c for c in evaluation_conditions(config, context) if c.get("shift_only")]
    with pytest.raises(ValueError, match="not an authors'-style dataset"):
        authors_dataset_spec(config, "authors-spheres")
    config["shift_tests"]["authors_images"] = 0
    assert authors_dataset_names(config) == []
    run = Run("perturbation", "texture_demo", "unet", "full", 1)
    assert "authors-style" not in {c["name"] for c in evaluation_conditions(config, run)}


@pytest.mark.parametrize(
    "condition, columns, kind",
    [
        ("clean", {"perturbation": "none"}, ("in-domain", True)),
        ("texture-background-0.5", {"train_alpha": 0.5, "test_alpha": 0.5}, ("in-domain", True)),
        ("texture-background-0.9", {"train_alpha": 0.5, "test_alpha": 0.9},
         ("alpha 0.5 -> 0.9", False)),
        ("speckle-s3", {"perturbation": "speckle", "severity": 3}, ("speckle s3", False)),
        ("authors-style", {"test_dataset": "authors-texture_demo"},
         ("authors-style generator", False)),
    ],
)  # fmt: skip
def test_every_condition_has_its_shift_kind(condition, columns, kind):
    run = Run("texture", "texture-background-0.5", "unet", "full", 1)
    assert shift_kind(condition, columns, run) == kind


def test_train_spec_is_plain_and_per_arch():
    config = config_from("config/config.yaml")
    spec = train_spec(config, "context", "unetr", "32")
    assert spec["patch_size"] == [32, 32, 32] and spec["spatial_dims"] == 3
    assert spec["model_kwargs"] == config["models"]["unetr"]
    assert train_spec(config, "texture", "unet", "full")["patch_size"] is None
    assert repr(eval(repr(spec))) == repr(spec)  # plain values only: params trigger is stable


def test_study_seeds_override_global_seeds():
    config = config_from("config/paper.yaml")
    assert {r.seed for r in study_runs(config, "perturbation")} == {1, 2, 3}
    assert {r.seed for r in study_runs(config, "texture")} == {1, 2, 3, 4, 5}


def test_run_paths_and_columns():
    run = Run("context", "spheres", "unetr", "32", 3)
    assert run.model_dir == "results/context/models/spheres/unetr/p32/seed3"
    assert run.metrics_dir == "results/context/metrics/spheres/unetr/p32/seed3"
    assert run.columns == {
        "study": "context", "dataset": "spheres", "arch": "unetr", "seed": 3, "patch": "32"
    }  # fmt: skip


def test_texture_dataset_spec_carries_the_split_counts_and_drives_the_generator():
    import inspect

    from segrobust.data.textures import generate_texture_dataset

    config = config_from("config/config.yaml")
    spec = texture_dataset_spec(config, "foreground", 0.9)
    assert {k: spec[k] for k in ("n_train", "n_validation", "n_calibration", "n_test")} == {
        "n_train": 28,
        "n_validation": 4,
        "n_calibration": 100,
        "n_test": 100,
    }
    assert (spec["direction"], spec["alpha"]) == ("foreground", 0.9)
    # exactly the generator's keyword arguments, so the rule can pass it on as it is
    parameters = inspect.signature(generate_texture_dataset).parameters
    assert set(spec) == set(parameters) - {"out_dir"}
    assert repr(eval(repr(spec))) == repr(spec)  # plain values only: params trigger is stable
