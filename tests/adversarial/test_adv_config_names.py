"""Issue 22, case 2: a name in the config cannot make the pipeline write or delete outside the
project.

``datasets: {"../../../victim_dir": {source: synthetic_texture}}`` used to make
``snakemake --until generate_synthetic_dataset`` delete the victim directory's files (Snakemake
removes a ``directory()`` output before its job) and write a dataset there. Every config name
that becomes a path is now refused at parse time naming the key (the schema's name pattern),
and, in depth, the one writer (``segrobust.atomic``) refuses any write or delete outside the
project's ``results/``, ``resources/`` and ``logs/`` in a pipeline job, whatever its caller
checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sandbox import SENTINEL, make_sandbox, snapshot
from workflow_helpers import copy_workflow

from segrobust import atomic
from segrobust.data.dataset import DatasetWriter
from segrobust.data.download import fetch
from segrobust.data.prepare import prepare_dataset
from segrobust.spec.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
NAME_RULE = "1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
HOSTILE_NAMES = [
    "../../../victim_dir", "../x", "a/b", "/tmp/x", "..", ".", ".hidden", "", "x" * 65, "é",
    "a b", "x\x00y", "a.b", "-x", "_x", "a\\b", "~",
]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_dataset_name_that_is_not_a_plain_folder_name_is_refused_at_parse_time(name):
    config = {"datasets": {name: {"source": "synthetic_texture"}}}
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA_PATH)
    assert str(err.value).startswith(f"config key datasets: the name {name!r} is not allowed; ")
    assert NAME_RULE in str(err.value)


@pytest.mark.parametrize(
    "config, key",
    [
        ({"studies": {"perturbation": {"datasets": ["../x"]}}}, "studies.perturbation.datasets[0]"),
        ({"studies": {"context": {"datasets": ["ok", "a/b"]}}}, "studies.context.datasets[1]"),
        ({"predict": {"images": "new", "dataset": "../x"}}, "predict.dataset"),
        ({"datasets": {1: {"source": "synthetic_texture"}}}, "datasets"),
    ],
)
def test_every_other_name_that_becomes_a_path_is_refused_naming_its_key(config, key):
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA_PATH)
    assert str(err.value).startswith(f"config key {key}: ")


def test_the_shipped_configs_names_pass():
    from snakemake.utils import update_config

    for path in [*sorted((REPO / "config").glob("*.yaml")), REPO / "tests/configs/tiny.yaml"]:
        config: dict = {}
        update_config(config, yaml.safe_load((REPO / "config/config.yaml").read_text()))
        update_config(config, yaml.safe_load(path.read_text()))
        validate_config(config, SCHEMA_PATH)


def _project_beside_a_victim(tmp_path):
    """``<sandbox>/.../l7/project`` (a copy of the workflow) and ``l7/victim_dir`` with files:
    ``resources/datasets/../../../victim_dir`` from the project is the victim."""
    sandbox = make_sandbox(tmp_path)
    parent = sandbox.target.parent
    (parent / "project").mkdir()
    project = copy_workflow(parent / "project")
    victim = parent / "victim_dir"
    victim.mkdir()
    (victim / "thesis.txt").write_bytes(SENTINEL)
    (victim / "data").mkdir()
    (victim / "data" / "results.csv").write_bytes(SENTINEL)
    return sandbox, project, victim


def _outside(before: dict, after: dict, project: Path, root: Path) -> list[str]:
    """Paths that changed below ``root`` but outside ``project``."""
    inside = str(project.relative_to(root))
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    return sorted(k for k in changed if k != inside and not k.startswith(inside + os.sep))


@pytest.mark.workflow
def test_the_victim_directory_survives_snakemake_until_generate_synthetic_dataset(tmp_path):
    sandbox, project, victim = _project_beside_a_victim(tmp_path)
    config = {
        "studies": {s: {"enabled": False} for s in ("texture", "perturbation", "context")},
        "datasets": {"../../../victim_dir": {"source": "synthetic_texture"}},
    }
    (project / "hostile.yaml").write_text(yaml.safe_dump(config))
    before = snapshot(sandbox.root)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--until",
         "generate_synthetic_dataset", "--configfile", "hostile.yaml"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "config key datasets: the name '../../../victim_dir' is not allowed" in output
    assert _outside(before, snapshot(sandbox.root), project, sandbox.root) == []
    assert (victim / "thesis.txt").read_bytes() == SENTINEL
    assert not (project / "resources").exists()


def test_the_writer_refuses_paths_outside_the_project_whatever_the_caller_checked(
    tmp_path, monkeypatch
):
    """A call that bypasses the schema: the guard in ``segrobust.atomic`` alone stops it."""
    sandbox, project, victim = _project_beside_a_victim(tmp_path)
    monkeypatch.chdir(project)
    monkeypatch.setenv(atomic.OUTPUT_ROOTS_ENV, "")  # so that the test's value is undone after it
    atomic.confine_outputs(["results", "resources", "logs"])  # what the Snakefile does
    (project / "resources" / "datasets").mkdir(parents=True)
    outside = project.parent / "elsewhere"
    outside.mkdir()
    (project / "results").symlink_to(outside)  # a root may be a link: it is resolved too
    (outside / "linked").symlink_to(victim)
    before = snapshot(sandbox.root)
    attempts = {
        "dataset": lambda: DatasetWriter("resources/datasets/../../../victim_dir", {}).__enter__(),
        "file": lambda: atomic.write_text("resources/datasets/../../../victim_dir/x.txt", "x"),
        "absolute": lambda: atomic.write_text(str(victim / "thesis.txt"), "x"),
        "project top": lambda: atomic.write_text("Snakefile", "x"),
        "a root itself": lambda: atomic.atomic_dir("resources").__enter__(),
        "trailing slash": lambda: atomic.atomic_dir("resources/datasets/").__enter__(),
        "dot": lambda: atomic.atomic_dir("resources/datasets/.").__enter__(),
        "through a link": lambda: atomic.write_text("results/linked/thesis.txt", "x"),
        "delete": lambda: atomic.remove("resources/../../victim_dir/thesis.txt"),
        "prepare": lambda: prepare_dataset(
            "x", {"source": "msd_import", "path": str(victim)}, victim, "resources/datasets/../../v"
        ),
        "download": lambda: fetch(
            "http://127.0.0.1:9/x.zip", "resources/downloads/../../../victim_dir/x.zip",
            checksum=None, algorithm="sha256", attempts=1,
        ),
    }  # fmt: skip
    for what, attempt in attempts.items():
        with pytest.raises(atomic.OutputPathError, match="refusing to") as err:
            attempt()
        assert "refusing to write or delete" in str(err.value) or "refusing to change" in str(
            err.value
        ), what
    assert snapshot(sandbox.root) == before
    # ... while the project's own outputs are written as before, also through the linked root
    atomic.write_text("results/summary.csv", "a,b\n")
    with DatasetWriter("resources/datasets/mine", {"source": "test"}):
        pass
    assert (outside / "summary.csv").read_text() == "a,b\n"
    assert (project / "resources" / "datasets" / "mine" / "datalist.json").is_file()
