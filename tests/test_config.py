"""Config validation: every bad value stops the run with the key, the value and what is allowed."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from segrobust.spec.config import (
    ConfigError,
    check_against_schema,
    check_config_files,
    check_consistency,
    context_min_shape,
    main,
    read_config_file,
    with_context_min_shape,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def filled(config):
    """``config`` checked and with the schema defaults filled in, as the Snakefile does."""
    check_against_schema(config, SCHEMA)
    validate(config, str(SCHEMA_PATH))
    check_consistency(config)
    return config


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"studies": {"texture": {"archs": ["resnet"]}}},
            ["studies.texture.archs[0]", "'resnet'", "noskip_unet"],
        ),
        (
            {"studies": {"texture": {"alphas": [0.5, 1.0]}}},
            ["studies.texture.alphas[1]", "1.0", "< 1"],
        ),
        ({"studies": {"texture": {"alphas": [0.0]}}}, ["studies.texture.alphas[0]", ">= 0.0001"]),
        ({"studies": {"texture": {"image_size": 0}}}, ["studies.texture.image_size", "0", ">= 16"]),
        ({"studies": {"texture": {"image_size": -64}}}, ["studies.texture.image_size", "-64"]),
        (
            {"studies": {"texture": {"directions": ["sideways"]}}},
            ["studies.texture.directions[0]", "'sideways'", "background, foreground"],
        ),
        ({"device": "tpu"}, ["device", "'tpu'", "auto, cpu, cuda"]),
        (
            {"studies": {"perturbation": {"perturbations": ["jpeg"]}}},
            ["perturbations[0]", "'jpeg'", "speckle"],
        ),
        ({"studies": {"perturbation": {"severities": [6]}}}, ["severities[0]", "6", "<= 5"]),
        (
            {"studies": {"texture": {"textures": {"foreground": "marble"}}}},
            ["textures.foreground", "'marble'", "brick"],
        ),
        ({"seeds": []}, ["seeds"]),
        ({"studies": {"texture": {"epochs": 3}}}, ["studies.texture", "'epochs'", "train"]),
        (
            {"datasets": {"x": {"source": "nowhere"}}},
            ["datasets.x.source", "'nowhere'", "msd_spleen"],
        ),
        (
            {"datasets": {"x": {"source": "synthetic_texture", "alpah": 0.3}}},
            ["datasets.x", "'alpah'", "alpha"],
        ),
        ({"split": {"calibration_fraction": 1.0}}, ["split.calibration_fraction", "< 1"]),
        # size keys have maxima: a typo is refused by name, not by a 149 GiB allocation
        (
            {"studies": {"texture": {"image_size": 100000}}},
            ["studies.texture.image_size", "100000", "<= 2048"],
        ),
        ({"studies": {"texture": {"n_train": 10**6}}}, ["studies.texture.n_train", "<= 5000"]),
        (
            {"datasets": {"b": {"source": "busi", "image_size": 100000}}},
            ["datasets.b.image_size", "100000", "<= 2048"],
        ),
        (
            {"datasets": {"b": {"source": "busi", "image_size": [256, 4096]}}},
            ["datasets.b.image_size[1]", "<= 2048"],
        ),
        (
            {"datasets": {"t": {"source": "synthetic_texture", "image_size": 4096}}},
            ["datasets.t.image_size", "<= 2048"],
        ),
        (
            {"datasets": {"s": {"source": "synthetic_spheres", "volume_size": 1000}}},
            ["datasets.s.volume_size", "<= 512"],
        ),
        (
            {"datasets": {"s": {"source": "synthetic_spheres", "n_test": 10**5}}},
            ["datasets.s.n_test", "<= 2000"],
        ),
        ({"studies": {"context": {"patch_sizes": [16, 1024]}}}, ["patch_sizes[1]", "<= 512"]),
        (
            {"studies": {"texture": {"train": {"epochs": 10**6}}}},
            ["studies.texture.train.epochs", "<= 10000"],
        ),
        (
            {"studies": {"context": {"train": {"batch_size": 4096}}}},
            ["studies.context.train.batch_size", "<= 1024"],
        ),
        (
            {"studies": {"context": {"train": {"samples_per_volume": 5000}}}},
            ["samples_per_volume", "<= 1024"],
        ),
        (
            {"studies": {"context": {"inference": {"sw_batch_size": 5000}}}},
            ["inference.sw_batch_size", "<= 1024"],
        ),
        ({"analysis": {"n_bootstrap": 10**7}}, ["analysis.n_bootstrap", "<= 100000"]),
        (
            {"datasets": {"h": {"source": "msd_heart", "min_fg_fraction": 1.5}}},
            ["datasets.h.min_fg_fraction", "< 1"],
        ),
        (
            {"datasets": {"h": {"source": "msd_heart", "extract_max_ratio": 0.5}}},
            ["datasets.h.extract_max_ratio", ">= 1"],
        ),
    ],
)
def test_schema_errors_name_key_value_and_allowed(config, expected):
    with pytest.raises(ConfigError) as info:
        check_against_schema(config, SCHEMA)
    for fragment in expected:
        assert fragment in str(info.value)


def test_defaults_fill_every_study():
    config = filled({})
    assert config["studies"]["texture"]["train"]["epochs"] == 10
    assert config["studies"]["context"]["inference"]["mode"] == "gaussian"
    assert config["datasets"]["spheres"]["volume_size"] == 32
    assert config["analysis"]["baseline_arch"] == "unet"


def test_every_schema_key_has_default_and_description():
    """The schema's own promise: every leaf key is typed, defaulted and described."""
    missing = []

    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            where = f"{path}.{name}" if path else name
            if "$ref" in sub:
                target = SCHEMA["definitions"][sub["$ref"].split("/")[-1]]
                sub = {**target, **sub}
            if "default" not in sub and where.split(".")[-1] != "source":
                missing.append(f"{where}: default")
            if "description" not in sub and where.split(".")[-1] != "source":
                missing.append(f"{where}: description")
            if sub.get("type") == "object":
                walk(sub, where)

    walk(SCHEMA, "")
    assert not missing, missing


def test_split_must_sum_to_one():
    with pytest.raises(ConfigError, match=r"split: train \+ validation \+ test must sum to 1"):
        filled({"split": {"train": 0.8, "validation": 0.1, "test": 0.2}})


@pytest.mark.parametrize(
    "config, message",
    [
        ({"studies": {"texture": {"image_size": 32, "shape": {"irregularity": [0, 0.8]}}}},
         r"studies.texture.shape: radius 0.31 does not fit a 32-pixel image at irregularity 0.8"),
        ({"datasets": {"texture_demo": {"source": "synthetic_texture", "radius": [0.3, 0.2]},
                       "spheres": {"source": "synthetic_spheres"}}},
         r"datasets.texture_demo: radius range \[low, high\] needs low < high"),
    ],
)  # fmt: skip
def test_texture_shapes_must_fit_their_images_at_parse_time(config, message):
    with pytest.raises(ConfigError, match=message):
        filled(config)


def test_study_dataset_must_be_defined():
    with pytest.raises(ConfigError, match=r"studies.perturbation.datasets\[0\].*'busi2'.*defined"):
        filled({"studies": {"perturbation": {"datasets": ["busi2"]}}})


def test_context_dataset_must_be_3d():
    with pytest.raises(ConfigError, match=r"'texture_demo' is 2D, the context study needs 3D"):
        filled({"studies": {"context": {"datasets": ["texture_demo"]}}})


def test_patch_larger_than_volume_is_rejected():
    with pytest.raises(
        ConfigError, match=r"patch_sizes\[1\].*48 is larger than the volumes.*<= 32"
    ):
        filled({"studies": {"context": {"patch_sizes": [16, 48], "archs": ["unet"]}}})


def test_patch_unetr_cannot_take_is_rejected():
    config = {
        "studies": {
            "context": {"patch_sizes": [24], "archs": ["unetr"]},
            "perturbation": {"enabled": False},
        },
        "datasets": {"spheres": {"source": "synthetic_spheres", "volume_size": 48}},
    }
    with pytest.raises(
        ConfigError, match=r"patch size 24 cannot be used with architecture 'unetr'.*16"
    ):
        filled(config)


def test_shipped_configs_are_valid():
    for path in ("config/config.yaml", "config/paper.yaml", "tests/configs/tiny.yaml"):
        filled(yaml.safe_load((REPO / path).read_text()))


def test_canonical_config_ignores_key_order():
    from segrobust.spec.config import canonical

    a = {"b": {"y": 1, "x": [{"q": 1, "p": 2}]}, "a": 0}
    b = {"a": 0, "b": {"x": [{"p": 2, "q": 1}], "y": 1}}
    assert repr(canonical(a)) == repr(canonical(b))
    assert canonical({"l": [3, 1, 2]}) == {"l": [3, 1, 2]}  # lists keep their order


def test_source_specific_required_key_is_named_at_parse_time():
    config = {"datasets": {"mine": {"source": "msd_import", "variant": "3d"}}}
    with pytest.raises(ConfigError) as info:
        filled(config)
    message = str(info.value)
    assert "datasets.mine.path" in message and "msd_import" in message
    assert "imagesTr/, labelsTr/ and dataset.json" in message
    config = {"datasets": {"mine": {"source": "msd_import", "path": "  "}}}
    with pytest.raises(ConfigError, match="datasets.mine.path: missing or empty"):
        filled(config)


def test_context_min_shape_is_the_largest_patch_of_real_3d_datasets():
    config = filled(
        {
            "studies": {
                "context": {"datasets": ["spheres", "spleen3d"], "patch_sizes": [16, 32]},
                "perturbation": {"datasets": ["spleen2d"]},
            },
            "datasets": {
                "spheres": {"source": "synthetic_spheres"},
                "spleen3d": {"source": "msd_spleen", "variant": "3d"},
                "spleen2d": {"source": "msd_spleen"},
            },
        }
    )
    assert context_min_shape(config, "spleen3d") == [32, 32, 32]
    entry = {"source": "msd_spleen", "variant": "3d"}
    assert with_context_min_shape(entry, config, "spleen3d") == {**entry, "min_shape": [32] * 3}
    assert with_context_min_shape({"source": "msd_spleen"}, config, "spleen2d") == {
        "source": "msd_spleen"
    }
    assert context_min_shape(config, "spheres") is None  # checked against volume_size instead
    assert context_min_shape(config, "spleen2d") is None  # not in the context study
    config["studies"]["context"]["enabled"] = False
    assert context_min_shape(config, "spleen3d") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty (no keys)"),
        ("# only a comment\n", "empty (no keys)"),
        ("seeds: [1\nsplit: {}\n", "line 2, column 6: not valid YAML: expected ',' or ']'"),
        ("studies:\n\ttexture: {}\n", "line 2, column 1: not valid YAML: found character '\\t'"),
        ("- 1\n- 2\n", "top level must be a mapping of keys, got a list"),
    ],
)
def test_config_file_errors_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert str(info.value).startswith(f"config file {path}") and message in str(info.value)
    with pytest.raises(ConfigError, match="mine.yaml"):
        check_config_files(tmp_path / "absent.yaml", [path])
    assert main([str(path)]) == 1


def test_config_files_are_checked_default_first_and_an_absent_default_is_left_to_snakemake(
    tmp_path, capsys
):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("seeds: [1]\n")
    bad.write_text("")
    check_config_files(tmp_path / "absent.yaml", [good])
    with pytest.raises(ConfigError, match="bad.yaml: empty"):
        check_config_files(bad, [good])
    assert read_config_file(REPO / "config" / "paper.yaml")["seeds"] == [1, 2, 3, 4, 5]
    assert main([str(good)]) == 0 and "1 config file(s) valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"studies": {"texture": {"n_images": 40}}}, "studies.texture.n_images"),
        (
            {"datasets": {"t": {"source": "synthetic_texture", "n_images": 40}}},
            "datasets.t.n_images",
        ),
        (
            {"datasets": {"s": {"source": "synthetic_spheres", "n_volumes": 24}}},
            "datasets.s.n_volumes",
        ),
    ],
)
def test_replaced_count_keys_name_the_per_split_counts(config, where):
    with pytest.raises(ConfigError) as info:
        check_against_schema(config, SCHEMA)
    message = str(info.value)
    assert where in message
    assert "replaced by the per-split counts n_train, n_validation, n_calibration and n_test" in (
        " ".join(message.split())
    )


@pytest.mark.parametrize(
    "section", [{"preload": False}, {"gpu_jobs_per_device": {"train_model": 4}}, {}]
)
def test_the_removed_execution_section_says_why_and_what_to_do(section):
    with pytest.raises(ConfigError) as info:
        check_against_schema({"execution": section}, SCHEMA)
    message = " ".join(str(info.value).split())
    assert message.startswith("config key execution:")
    assert "the key was removed" in message and "docs/decisions.md" in message
    assert "delete the section from your config" in message


def test_split_count_and_design_option_defaults():
    config = filled({})
    texture = config["studies"]["texture"]
    assert [texture[k] for k in ("n_train", "n_validation", "n_test", "n_calibration")] == [
        28,
        4,
        100,
        100,
    ]
    spheres = config["datasets"]["spheres"]
    assert [spheres[k] for k in ("n_train", "n_validation", "n_test", "n_calibration")] == [
        17,
        2,
        100,
        100,
    ]
    assert spheres["noise_model"] == "gaussian" and spheres["radius_sampling"] == "continuous"
    assert spheres["noise"] == 0.3 and spheres["noise_max"] == 0.8
    assert config["studies"]["perturbation"]["options"] == {"speckle": {"scaling": "fixed"}}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"datasets": {"s": {"source": "synthetic_spheres", "noise_model": "poisson"}}},
            ["datasets.s.noise_model", "'poisson'", "gaussian, uniform_max"],
        ),
        (
            {"datasets": {"s": {"source": "synthetic_spheres", "radius_sampling": "round"}}},
            ["datasets.s.radius_sampling", "'round'", "continuous, integer"],
        ),
        (
            {"studies": {"perturbation": {"options": {"speckle": {"scaling": "dtype"}}}}},
            ["studies.perturbation.options.speckle.scaling", "'dtype'", "fixed, minmax"],
        ),
        (
            {"studies": {"perturbation": {"options": {"blur": {"scaling": "fixed"}}}}},
            ["studies.perturbation.options", "'blur'", "speckle"],
        ),
        ({"studies": {"texture": {"n_test": 0}}}, ["studies.texture.n_test", ">= 1"]),
        ({"studies": {"texture": {"n_calibration": -1}}}, ["n_calibration", ">= 0"]),
    ],
)
def test_design_option_and_count_errors_name_key_value_and_allowed(config, expected):
    with pytest.raises(ConfigError) as info:
        check_against_schema(config, SCHEMA)
    for fragment in expected:
        assert fragment in str(info.value)


def test_default_study_held_out_sets_are_sized_for_statistics():
    config = filled(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    texture = config["studies"]["texture"]
    # the default study's training size is kept; >= 100 held-out images per 2D condition, and
    # 60 test + 40 calibration sphere volumes (27 sliding windows each per run: the time budget)
    assert (texture["n_train"], texture["n_validation"]) == (28, 4)
    assert texture["n_test"] >= 100 and texture["n_calibration"] >= 100
    demo, spheres = config["datasets"]["texture_demo"], config["datasets"]["spheres"]
    assert demo["n_test"] >= 100 and demo["n_calibration"] >= 100
    assert spheres["n_test"] >= 60 and spheres["n_calibration"] >= 40
    assert (
        config["datasets"]["spheres"]["n_train"],
        config["datasets"]["spheres"]["n_validation"],
    ) == (
        17,
        2,
    )


def test_paper_config_uses_the_papers_training_sizes_and_the_authors_sphere_model():
    config = filled(yaml.safe_load((REPO / "config/paper.yaml").read_text()))
    texture = config["studies"]["texture"]
    assert (texture["n_train"], texture["n_validation"]) == (70, 10)
    assert texture["n_test"] >= 100 and texture["n_calibration"] >= 100
    spheres = config["datasets"]["spheres"]
    assert (spheres["n_train"], spheres["n_validation"], spheres["n_test"]) == (70, 30, 100)
    assert spheres["n_calibration"] >= 100
    assert spheres["noise_model"] == "uniform_max" and spheres["noise_max"] == 0.8
    assert spheres["radius_sampling"] == "integer"
    assert (spheres["train_radii"], spheres["test_radii"]) == ([25, 35], [5, 48])
    assert config["studies"]["perturbation"]["options"]["speckle"]["scaling"] == "fixed"
