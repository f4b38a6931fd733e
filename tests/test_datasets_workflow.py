"""The download and preparation rules run through Snakemake, from a local HTTP server."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from archives import make_busi_zip, make_msd_tar, serve, write_msd_dir
from workflow_helpers import copy_workflow

from segrobust.data.dataset import SPLITS, load_split

pytestmark = pytest.mark.workflow

# The archives hold a handful of cases: split them so that no split is empty (an empty split is
# refused at import) and nothing is carved off for calibration.
SMALL_SPLIT = {"split": {"train": 0.4, "validation": 0.3, "test": 0.3}, "calibration_fraction": 0}


def write_config(workdir: Path, datasets: dict) -> Path:
    """A copy of the project's workflow in ``workdir`` with a config that defines ``datasets``
    and runs no study (only the dataset rules are exercised)."""
    copy_workflow(workdir)
    config = {
        "studies": {s: {"enabled": False} for s in ("texture", "perturbation", "context")},
        "datasets": datasets,
    }
    path = workdir / "datasets.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake ARGS`` with the test config (named last: --configfile takes several values)."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args, "--cores", "1", "--configfile", "datasets.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_download_and_prepare_through_snakemake(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    tar = make_msd_tar(served / "Task09_Spleen.tar", tmp_path / "build", n_cases=3)
    busi = make_busi_zip(served / "Dataset_BUSI.zip")
    user = write_msd_dir(
        tmp_path / "user",
        task="Task99_Kidney",
        n_cases=3,
        labels={"0": "background", "1": "kidney"},
    )
    work = tmp_path / "work"
    work.mkdir()
    with serve(served) as (url, requests):
        datasets = {
            "spleen2d": {
                "source": "msd_spleen",
                "url": f"{url}/Task09_Spleen.tar",
                "checksum": hashlib.md5(tar.read_bytes()).hexdigest(),
                "image_size": 16,
                **SMALL_SPLIT,
            },
            "busi": {
                "source": "busi",
                "url": f"{url}/Dataset_BUSI.zip",
                "checksum": hashlib.sha256(busi.read_bytes()).hexdigest(),
                "image_size": 16,
                **SMALL_SPLIT,
            },
            "kidney3d": {
                "source": "msd_import",
                "path": str(user),
                "variant": "3d",
                "spacing": [1.6, 1.6, 5.0],
                **SMALL_SPLIT,
            },
        }
        targets = [f"resources/datasets/{n}" for n in datasets]
        write_config(work, datasets)
        result = run_snakemake(work, *targets)
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(r["path"] for r in requests) == ["/Dataset_BUSI.zip", "/Task09_Spleen.tar"]
    assert (
        work / "resources/downloads/msd_spleen/Task09_Spleen.tar"
    ).read_bytes() == tar.read_bytes()
    for name, ndim in (("spleen2d", 2), ("busi", 2), ("kidney3d", 3)):
        out = work / "resources" / "datasets" / name
        cases = [c for s in SPLITS for c in load_split(out, s)]
        assert cases and all(c.image.ndim == ndim for c in cases), name
        assert json.loads((out / "provenance.json").read_text())["dataset"] == name
        assert (work / "logs" / "prepare_dataset" / f"{name}.log").is_file()
    assert (work / "logs/download_source/busi/Dataset_BUSI.zip.log").is_file()

    # Nothing is redone on a second run.
    again = run_snakemake(work, "--dry-run", *targets)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_conflicting_overrides_for_one_download_are_named(tmp_path):
    datasets = {
        "a": {"source": "glas", "url": "http://127.0.0.1:9/a.zip"},
        "b": {"source": "glas", "url": "http://127.0.0.1:9/b.zip", "image_size": 64},
    }
    write_config(tmp_path, datasets)
    result = run_snakemake(tmp_path, "--dry-run", "resources/datasets/a", "resources/datasets/b")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "datasets.b.url" in output and "datasets.a.url" in output and "conflicts" in output
