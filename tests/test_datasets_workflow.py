"""The download and preparation rules run through Snakemake, from a local HTTP server."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from archives import make_busi_zip, make_msd_tar, serve, write_msd_dir

from segrobust.io import SPLITS, load_split

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "workflow" / "rules" / "datasets.smk"

pytestmark = pytest.mark.workflow


def write_snakefile(workdir: Path, datasets: dict, targets: list[str]) -> Path:
    snakefile = workdir / "Snakefile"
    snakefile.write_text(
        textwrap.dedent(
            f"""
            config["datasets"] = {datasets!r}

            include: {str(RULES)!r}

            rule all:
                input:
                    {", ".join(repr(t) for t in targets)},

            # Stands for the integrator's synthetic-data rules: must not clash with ours.
            rule make_texture:
                output:
                    directory("resources/datasets/texture-a-0.1"),
                shell:
                    "mkdir -p {{output}}"
            """
        )
    )
    return snakefile


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "-d",
            str(workdir),
            "-s",
            str(workdir / "Snakefile"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
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
            },
            "busi": {
                "source": "busi",
                "url": f"{url}/Dataset_BUSI.zip",
                "checksum": hashlib.sha256(busi.read_bytes()).hexdigest(),
                "image_size": 16,
            },
            "kidney3d": {
                "source": "msd_import",
                "path": str(user),
                "variant": "3d",
                "spacing": [1.6, 1.6, 5.0],
            },
            "texture-a-0.1": {"source": "textures"},  # not a real source: not ours
        }
        targets = [f"resources/datasets/{n}" for n in datasets]
        write_snakefile(work, datasets, targets)
        result = run_snakemake(work)
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
    again = run_snakemake(work, "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_conflicting_overrides_for_one_download_are_named(tmp_path):
    datasets = {
        "a": {"source": "glas", "url": "http://127.0.0.1:9/a.zip"},
        "b": {"source": "glas", "url": "http://127.0.0.1:9/b.zip", "image_size": 64},
    }
    write_snakefile(tmp_path, datasets, ["resources/datasets/a", "resources/datasets/b"])
    result = run_snakemake(tmp_path, "--dry-run")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "datasets.b.url" in output and "datasets.a.url" in output and "conflicts" in output
