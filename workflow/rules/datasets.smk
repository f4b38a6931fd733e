# Real datasets: download a source's archive, then prepare a configured dataset from it.
#
# config["datasets"][<name>] = {source: <SOURCES name>, variant: 2d|3d, ...}; see
# segrobust.data.prepare.PrepareOptions for the preparation keys. Only names whose source is in
# SOURCES are matched here, so the synthetic dataset rules (texture-..., spheres) are left alone.
# Parse time stays light: segrobust.data.sources imports nothing heavy.

# A real 3D dataset of the context study also gets min_shape (its largest patch): a volume too
# small for it fails preparation, named, not training.
from segrobust.spec.config import with_context_min_shape


# Downloads run where Snakemake runs (a login node): cluster compute nodes often have no internet.
localrules:
    download_source,


# No `retries`: fetch() retries transient network failures itself (resuming the partial file),
# and a checksum mismatch or an unreadable archive is final -- a rule-level retry only
# downloaded the same bad file again.
rule download_source:
    """Download a real dataset's archive and verify its checksum (runs on the login node:
    compute nodes may have no internet)."""
    output:
        "resources/downloads/{source}/{filename}",
    log:
        "logs/download_source/{source}/{filename}.log",
    wildcard_constraints:
        source=regex_of(downloadable_sources()),
        filename=regex_of(SOURCES.get(n).filename for n in downloadable_sources()),
    conda:
        "../envs/segrobust.yaml"
    threads: 1
    params:
        settings=lambda wildcards: get_download_settings(wildcards.source),
    script:
        "../scripts/download_source.py"


rule prepare_dataset:
    """A downloaded archive or a user's MSD-layout folder, split by patient or volume and
    written as a dataset (NIfTI + datalist.json)."""
    input:
        raw=get_raw_input,
    output:
        directory("resources/datasets/{name}"),
    log:
        "logs/prepare_dataset/{name}.log",
    wildcard_constraints:
        name=regex_of(real_datasets()),
    conda:
        "../envs/segrobust.yaml"
    threads: 1
    resources:
        runtime=runtime_of("prepare_dataset"),
        mem_mb=mem_mb_of("prepare_dataset"),
    params:
        code=preparation_code,
        entry=lambda wildcards: with_context_min_shape(
            get_dataset_entry(wildcards), config, wildcards.name
        ),
    script:
        "../scripts/prepare_dataset.py"
