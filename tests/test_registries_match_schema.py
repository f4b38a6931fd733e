"""The names the config schema allows are exactly the registered implementations."""

from pathlib import Path

import yaml

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
)


def test_texture_names_match_registry():
    from segrobust.data.textures import TEXTURES

    assert sorted(SCHEMA["definitions"]["texture"]["enum"]) == TEXTURES.names()


def test_perturbation_names_match_registry():
    from segrobust.perturb import PERTURBATIONS

    study = SCHEMA["properties"]["studies"]["properties"]["perturbation"]["properties"]
    assert sorted(study["perturbations"]["items"]["enum"]) == PERTURBATIONS.names()


def test_analysis_rule_declares_every_analysis_output():
    """The analyze rule's declared outputs are exactly what run_analysis writes."""
    import re

    from segrobust.analysis.run import OUTPUTS

    rules = (Path(__file__).resolve().parents[1] / "workflow/rules/common.smk").read_text()
    block = rules[rules.index("ANALYSIS_TABLES = [") :]
    tables = re.findall(r'"([a-z_]+)",', block[: block.index("]")])
    declared = {f"{t}.csv" for t in tables} | {
        "recipe.md",
        "notes.md",
        "cd_diagram.png",
        "coverage.png",
    }
    assert declared == set(OUTPUTS)


def test_dataset_sources_match_registry():
    from segrobust.data.sources import SOURCES

    datasets = SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"]
    real = set(datasets["source"]["enum"]) - {"synthetic_texture", "synthetic_spheres"}
    assert real == set(SOURCES.names())


def test_architecture_names_match_registry_and_schema():
    from segrobust.networks import ARCHITECTURES
    from segrobust.spec.input_sizes import ARCHITECTURE_NAMES

    assert list(ARCHITECTURE_NAMES) == ARCHITECTURES.names()
    assert sorted(SCHEMA["definitions"]["arch"]["enum"]) == ARCHITECTURES.names()


def test_report_figures_match_figure_registry():
    """Every registered figure is drawn by the pipeline, under its study."""
    import re

    from segrobust.report.figures import FIGURES

    rules = (Path(__file__).resolve().parents[1] / "workflow/rules/common.smk").read_text()
    block = rules[rules.index("FIGURES = {") :]
    block = block[: block.index("}")]
    declared = {}
    for study, names in re.findall(r'"([a-z]+)": \[([^\]]*)\]', block):
        for name in re.findall(r'"([a-z0-9_]+)"', names):
            declared[name] = study
    assert declared == {name: FIGURES.get(name).study for name in FIGURES.names()}
