# Real datasets: download a source's archive, then prepare a configured dataset from it.
#
# config["datasets"][<name>] = {source: <SOURCES name>, variant: 2d|3d, ...}; see
# segrobust.data.prepare.PrepareOptions for the preparation keys. Only names whose source is in
# SOURCES are matched here, so the synthetic dataset rules (texture-..., spheres) are left alone.
# Parse time stays light: segrobust.data.sources imports nothing heavy.

from segrobust.data.sources import SOURCES, download_settings, downloadable_sources


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
    """The dataset's config entry, with the top-level split unless the entry overrides it
    (plain values: their repr drives the params rerun trigger)."""
    split = dict(config["split"])
    defaults = {"calibration_fraction": split.pop("calibration_fraction"), "split": split}
    return {**defaults, **config["datasets"][wildcards.name]}


rule download_source:
    output:
        "resources/downloads/{source}/{filename}",
    log:
        "logs/download_source/{source}/{filename}.log",
    wildcard_constraints:
        source=regex_of(downloadable_sources()),
        filename=regex_of(SOURCES.get(n).filename for n in downloadable_sources()),
    retries: 2
    threads: 1
    params:
        settings=lambda wildcards: get_download_settings(wildcards.source),
    conda:
        "../../envs/segrobust.yaml"
    script:
        "../scripts/download_source.py"


rule prepare_dataset:
    input:
        raw=get_raw_input,
        code=code(
            "data/sources.py",
            "data/download.py",
            "data/extract.py",
            "data/prepare.py",
            "data/msd.py",
            "complexity.py",
            "io.py",
        ),
    output:
        directory("resources/datasets/{name}"),
    log:
        "logs/prepare_dataset/{name}.log",
    wildcard_constraints:
        name=regex_of(real_datasets()),
    threads: 1
    params:
        entry=get_dataset_entry,
    conda:
        "../../envs/segrobust.yaml"
    script:
        "../scripts/prepare_dataset.py"
