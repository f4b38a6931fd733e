"""Rule generate_texture_dataset: one texture-study dataset (direction, alpha)."""

from segrobust.data.textures import generate_texture_dataset
from segrobust.execution.job import job


def main(snakemake):
    with job(snakemake) as log:
        generate_texture_dataset(snakemake.output[0], **snakemake.params.spec)
        log(f"wrote {snakemake.output[0]}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
