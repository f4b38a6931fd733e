"""The names the config schema allows are exactly the registered implementations."""

from pathlib import Path

import yaml

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
)


def test_texture_names_match_registry():
    from segrobust.data.textures import TEXTURES

    assert sorted(SCHEMA["definitions"]["texture"]["enum"]) == TEXTURES.names()
