"""Rule bundled_anatomy: a dataset shipped inside an installed package -> MSD-layout directory."""

import logging

from segrobust.data.bundled_anatomy import write_bundled_dataset
from segrobust.execution.job import job


def main(snakemake):
    with job(snakemake):
        write_bundled_dataset(
            snakemake.wildcards.bundle,
            snakemake.output[0],
            log=logging.getLogger("bundled_anatomy"),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
