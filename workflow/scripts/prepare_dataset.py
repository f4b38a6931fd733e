"""Snakemake script of rule prepare_dataset: a configured real dataset into the contract."""

import logging

from segrobust.data.prepare import prepare_dataset
from segrobust.execution.job import job


def main(snakemake):
    # job() routes Python logging into the rule's log and records a failure's traceback there
    with job(snakemake):
        prepare_dataset(
            snakemake.wildcards.name,
            snakemake.params.entry,
            snakemake.input.raw,
            snakemake.output[0],
            log=logging.getLogger("prepare_dataset"),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
