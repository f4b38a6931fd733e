"""An architecture and a dataset source added through the documented places only
(docs/ARCHITECTURE.md, "Extension points"): a record each, the module its record names (a
builder, a preparation), the config schema's enum and keys, and this test. Everything derived
from the records sees them (registry, size rules, cost model, palette, code versions, config
checks), and the workflow's dry run plans their jobs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from workflow_helpers import REPO, TINY, copy_workflow

from segrobust.data import sources
from segrobust.networks import build_model, catalog, check_input_size
from segrobust.report.names import display_name
from segrobust.report.plotting import arch_palette
from segrobust.spec import architectures, code_deps
from segrobust.spec.config import ConfigError, check_architecture_dims
from segrobust.spec.network_cost import macs_per_voxel

# The user's module: two records and the code they name. Registering is what adding a record to
# segrobust/spec/architectures.py and segrobust/data/sources.py does.
EXTENSION = '''
"""A fake architecture (a U-Net variant with its own builder) and a fake dataset source (a
mirror of GlaS in its own layout, prepared by the GlaS preparation)."""

from segrobust.data.sources import SOURCES, Source, SourceBounds
from segrobust.spec.architectures import Architecture, register

register(
    Architecture(
        name="fake_net",
        display_name="Fake Net",
        colour="#123456",
        builder="fake_extension:build_fake_net",
        fixed={"skip": "concat"},
        spatial_dims=(2,),
        divisor=lambda keys: 2 ** (len(keys["channels"]) - 1),
        instance_norm=lambda keys: False,
        layers="segrobust.spec.network_cost:skip_unet_layers",
        train_s_per_gmac={2: 0.3},
        infer_s_per_gmac={2: 0.1},
    )
)
SOURCES.register("fake_source")(
    Source(
        name="fake_source",
        urls=("https://example.org/fake_glas.zip",),
        filename="fake_glas.zip",
        checksum=None,
        algorithm="sha256",
        expected_size=None,
        size_hint="a few MB",
        archive_format="zip",
        licence="test data",
        prepare="fake_extension:prepare_fake",
        bounds=SourceBounds(cases=20, raw_voxels=64 * 64),
    )
)


def build_fake_net(spatial_dims, *, img_size=None, skip, channels):
    from segrobust.networks.skip_unet import build_skip_unet

    return build_skip_unet(
        spatial_dims, img_size=img_size, skip=skip, channels=channels, norm="batch", dropout=0.0
    )


def prepare_fake(raw, out_dir, opts, provenance, log):
    from segrobust.data.prepare import prepare_glas

    prepare_glas(raw, out_dir, opts, provenance, log)
'''


@pytest.fixture
def extension(tmp_path, monkeypatch):
    """The extension module imported into copies of the record tables (undone after)."""
    (tmp_path / "fake_extension.py").write_text(textwrap.dedent(EXTENSION))
    monkeypatch.syspath_prepend(str(tmp_path))
    for table in (architectures.ARCHITECTURES, sources.SOURCES):
        monkeypatch.setattr(table, "_entries", dict(table._entries))
    monkeypatch.delitem(sys.modules, "fake_extension", raising=False)
    __import__("fake_extension")
    yield tmp_path / "fake_extension.py"
    catalog.builder_of.cache_clear()
    sys.modules.pop("fake_extension", None)


def test_what_derives_from_the_records_sees_them(extension):
    keys = {"channels": [4, 8]}
    model = build_model("fake_net", 2, img_size=(16, 16), **keys)
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    assert "multiple of 2" in check_input_size("fake_net", 2, 15, **keys)
    assert macs_per_voxel("fake_net", 2, keys, (16, 16)) == macs_per_voxel(
        "unet", 2, keys, (16, 16)
    )
    assert arch_palette(["fake_net", "unet"])["fake_net"] == "#123456"
    assert display_name("fake_net") == "Fake Net"
    with pytest.raises(ConfigError, match=r"studies.context.archs\[0\].*'fake_net'.*3D.*2D"):
        check_architecture_dims({"context": {"enabled": True, "archs": ["fake_net"]}})
    train = REPO / "workflow" / "scripts" / "train_model.py"
    assert extension.resolve() in code_deps.code_files(train, REPO / "src", archs=["fake_net"])
    assert sources.get_source("fake_source").preparer().__module__ == "fake_extension"


def _with_schema_entries(workdir) -> None:
    """The schema's places: the names in its enums, the architecture's keys and defaults."""
    path = workdir / "workflow" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(path.read_text())
    schema["definitions"]["arch"]["enum"].append("fake_net")
    schema["definitions"]["source"]["enum"].append("fake_source")
    schema["properties"]["models"]["properties"]["fake_net"] = {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": "A fake U-Net variant.",
        "properties": {"channels": {"$ref": "#/definitions/channels", "default": [4, 8]}},
    }
    path.write_text(yaml.safe_dump(schema, sort_keys=False))


@pytest.mark.workflow
def test_the_workflow_plans_their_jobs(tmp_path):
    (tmp_path / "wf").mkdir()
    workdir = copy_workflow(tmp_path / "wf")
    _with_schema_entries(workdir)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "fake_extension.py").write_text(textwrap.dedent(EXTENSION))
    config = yaml.safe_load(TINY.read_text())
    config["studies"]["texture"]["archs"] = ["unet", "fake_net"]
    config["studies"]["perturbation"].update(datasets=["fake_ds"], archs=["fake_net"])
    config["datasets"]["fake_ds"] = {"source": "fake_source", "image_size": 32}
    (workdir / "fake.yaml").write_text(yaml.safe_dump(config))
    # Snakemake's own command line, in a process that first imports the user's module
    starter = "import fake_extension; from snakemake.cli import main; main()"
    pythonpath = os.pathsep.join([str(tmp_path / "plugins"), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", starter, "--dry-run", "--cores", "1", "--configfile", "fake.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    jobs = dict(re.findall(r"^\s*([a-z_]+)\s+(\d+)\s*$", out, flags=re.M))
    assert jobs["download_source"] == jobs["prepare_dataset"] == "1"
    trained = re.findall(r"rule train_model:\n(?:.*\n){0,10}?\s*wildcards: (.*)", out)
    fake = [w for w in trained if "arch=fake_net" in w]
    assert len(fake) == 3  # two texture alphas, one perturbation dataset
    assert any("dataset=fake_ds" in w for w in fake)
    assert "resources/downloads/fake_source/fake_glas.zip" in out
