"""The names the config schema allows are exactly the registered implementations (records)."""

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


def test_analysis_writes_the_outputs_the_contract_names():
    from segrobust import contract
    from segrobust.analysis.run import OUTPUTS

    named = {f"{t}.csv" for t in contract.ANALYSIS_TABLES} | set(contract.ANALYSIS_TEXTS)
    assert named == set(OUTPUTS)


def test_dataset_sources_match_the_records():
    """One enum of sources in the schema (``definitions.source``, referenced by every dataset
    entry); its real-data sources are exactly the records, and the real sources' keys apply to
    every source that is not a generator."""
    from segrobust.data.sources import SOURCES

    generators = {"synthetic_texture", "synthetic_spheres"}
    assert set(SCHEMA["definitions"]["source"]["enum"]) - generators == set(SOURCES.names())
    entry = SCHEMA["properties"]["datasets"]["additionalProperties"]
    assert entry["properties"]["source"] == {"$ref": "#/definitions/source"}


def test_architecture_names_match_records_and_schema():
    from segrobust.spec.architectures import ARCHITECTURES

    assert sorted(SCHEMA["definitions"]["arch"]["enum"]) == ARCHITECTURES.names()
    assert sorted(SCHEMA["properties"]["models"]["properties"]) == ARCHITECTURES.names()


def test_every_report_figure_has_its_caption_file():
    from segrobust import contract

    captions = Path(__file__).resolve().parents[1] / "workflow" / "report" / "captions"
    names = [n for names in contract.FIGURES.values() for n in names]
    names += list(contract.ANALYSIS_FIGURES)
    assert sorted(p.stem for p in captions.glob("*.rst")) == sorted(names)
