# Real anatomy shipped inside an installed Python package (no download), written in the MSD layout
# for a `source: msd_import` dataset whose `path` is resources/bundled/<name>; the bundles and why
# they are cut into slabs: segrobust.data.bundles, written by segrobust.data.bundled_anatomy.

from segrobust.data.bundles import BUNDLES


rule bundled_anatomy:
    """The MNI152 template that nilearn ships, checked by SHA-256 and cut into slabs: real
    anatomy offline, in the MSD layout."""
    output:
        directory("resources/bundled/{bundle}"),
    log:
        "logs/bundled/{bundle}.log",
    wildcard_constraints:
        bundle=regex_of(BUNDLES),
    conda:
        "../envs/segrobust.yaml"
    threads: 1
    resources:
        runtime=runtime_of("bundled_anatomy"),
        mem_mb=mem_mb_of("bundled_anatomy"),
    params:
        code=code_version("write_bundled_anatomy.py"),
        # the files' digests, threshold and slab layout: a change re-writes the dataset
        spec=lambda wildcards: BUNDLES[wildcards.bundle].spec(),
    script:
        "../scripts/write_bundled_anatomy.py"
