"""Snakemake script of rule download_source: fetch and verify one source archive."""

import logging

from segrobust.data.download import fetch
from segrobust.execution.job import job


def main(snakemake):
    # job() routes Python logging into the rule's log and records a failure's traceback there
    with job(snakemake):
        settings = snakemake.params.settings
        fetch(
            settings["url"],
            snakemake.output[0],
            checksum=settings["checksum"],
            algorithm=settings["algorithm"],
            expected_size=settings["expected_size"],
            extract_limits=settings.get("extract_limits"),
            log=logging.getLogger("download_source"),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
