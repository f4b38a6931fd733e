# Real datasets: download a source's archive, then prepare a configured dataset from it.
#
# config["datasets"][<name>] = {source: <SOURCES name>, variant: 2d|3d, ...}; see
# segrobust.data.prepare.PrepareOptions for the preparation keys. Only names whose source is in
# SOURCES are matched here, so the synthetic dataset rules (texture-..., spheres) are left alone.
# Parse time stays light: segrobust.data.sources imports nothing heavy.

import re
from pathlib import Path

import segrobust.data.sources
from segrobust.data.sources import SOURCES, download_settings, downloadable_sources

# The library modules this stage runs, as inputs: the code rerun trigger only sees the scripts.
_DATA_LIB = Path(segrobust.data.sources.__file__).parent


def _alternation(names):
    """A regex matching exactly these names (or nothing when there are none)."""
    names = sorted(names)
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def real_datasets():
    """The config's datasets whose source is a registered real-data source."""
    return {
        name: entry
        for name, entry in (config.get("datasets") or {}).items()
        if isinstance(entry, dict) and entry.get("source") in SOURCES
    }


def get_download_settings(source_name):
    """The source's URL and checksum with the overrides of the datasets using it."""
    return download_settings(source_name, real_datasets())


def get_raw_input(wildcards):
    """The downloaded archive of a dataset's source, or the directory of an msd_import."""
    entry = config["datasets"][wildcards.name]
    source = SOURCES.get(entry["source"])
    if not source.downloadable:
        return entry["path"]
    return f"resources/downloads/{source.name}/{source.filename}"


def get_dataset_entry(wildcards):
    """The dataset's config entry (plain values: its repr drives the params rerun trigger)."""
    return dict(config["datasets"][wildcards.name])


rule download_source:
    output:
        "resources/downloads/{source}/{filename}",
    log:
        "logs/download_source/{source}/{filename}.log",
    wildcard_constraints:
        source=_alternation(downloadable_sources()),
        filename=_alternation(SOURCES.get(n).filename for n in downloadable_sources()),
    retries: 2
    threads: 1
    params:
        settings=lambda wildcards: get_download_settings(wildcards.source),
    script:
        "../scripts/download_source.py"


rule prepare_dataset:
    input:
        raw=get_raw_input,
        code=[
            str(_DATA_LIB / m)
            for m in (
                "sources.py",
                "download.py",
                "extract.py",
                "prepare.py",
                "msd.py",
            )
        ],
    output:
        directory("resources/datasets/{name}"),
    log:
        "logs/prepare_dataset/{name}.log",
    wildcard_constraints:
        name=_alternation(real_datasets()),
    threads: 1
    params:
        entry=get_dataset_entry,
    script:
        "../scripts/prepare_dataset.py"
