"""Snakemake script of rule prepare_dataset: one configured real dataset into the contract."""

import logging

from segrobust.data.prepare import prepare_dataset


def main(snakemake):
    logging.basicConfig(
        filename=snakemake.log[0],
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    log = logging.getLogger("prepare_dataset")
    try:
        prepare_dataset(
            snakemake.wildcards.name,
            snakemake.params.entry,
            snakemake.input.raw,
            snakemake.output[0],
            log=log,
        )
    except Exception:
        log.exception("preparation of %s failed", snakemake.wildcards.name)
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
