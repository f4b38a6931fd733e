"""Rule generate_authors_dataset: the second texture generator's test set like one dataset."""

from segrobust.data.authors_textures import generate_authors_texture_dataset
from segrobust.execution.job import job


def main(snakemake):
    with job(snakemake) as log:
        generate_authors_texture_dataset(snakemake.output[0], **snakemake.params.spec)
        log(f"wrote {snakemake.output[0]}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
