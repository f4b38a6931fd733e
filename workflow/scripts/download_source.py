"""Snakemake script of rule download_source: fetch and verify one source archive."""

import logging

from segrobust.data.download import fetch


def main(snakemake):
    logging.basicConfig(
        filename=snakemake.log[0],
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    log = logging.getLogger("download_source")
    settings = snakemake.params.settings
    try:
        fetch(
            settings["url"],
            snakemake.output[0],
            checksum=settings["checksum"],
            algorithm=settings["algorithm"],
            expected_size=settings["expected_size"],
            log=log,
        )
    except Exception:
        log.exception("download of %s failed", settings["url"])
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
