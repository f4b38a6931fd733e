# Real datasets: download a source's archive, then prepare a configured dataset from it.
#
# config["datasets"][<name>] = {source: <SOURCES name>, variant: 2d|3d, ...}; see
# segrobust.data.prepare.PrepareOptions for the preparation keys. Only names whose source is in
# SOURCES are matched here, so the synthetic dataset rules (texture-..., spheres) are left alone.
# Parse time stays light: segrobust.data.sources imports nothing heavy.

import re
from pathlib import Path

import segrobust.data.sources
from segrobust.data.sources import SOURCES, downloadable_sources

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


# Dataset-entry keys that override the source's download settings.
OVERRIDES = (
    ("url", "url"),
    ("checksum", "checksum"),
    ("checksum_algorithm", "algorithm"),
)


def get_download_settings(source_name):
    """URL, checksum and size for a source: its registry entry, overridden by the `url` /
    `checksum` / `checksum_algorithm` of the datasets using it (which must agree)."""
    source = SOURCES.get(source_name)
    settings = {
        "url": source.urls[0],
        "checksum": source.checksum,
        "algorithm": source.algorithm,
        "expected_size": source.expected_size,
        "size_hint": source.size_hint,
    }
    chosen = {}
    for name, entry in real_datasets().items():
        if entry["source"] != source_name:
            continue
        for key, setting in OVERRIDES:
            if key not in entry:
                continue
            if setting in chosen and chosen[setting][1] != entry[key]:
                raise ValueError(
                    f"datasets.{name}.{key} = {entry[key]!r} conflicts with "
                    f"datasets.{chosen[setting][0]}.{key} = {chosen[setting][1]!r}; datasets "
                    f"of source {source_name} share one download"
                )
            chosen[setting] = (name, entry[key])
    settings.update({setting: value for setting, (_, value) in chosen.items()})
    if "url" in chosen:
        settings["expected_size"] = None  # a mirror's copy is checked by checksum only
    return settings


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
