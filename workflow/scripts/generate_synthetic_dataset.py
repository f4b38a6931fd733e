"""Rule generate_synthetic_dataset: a named synthetic dataset (textures or 3D spheres)."""

from segrobust.data.synthetic import generate_named_dataset
from segrobust.execution.job import job


def main(snakemake):
    with job(snakemake) as log:
        generate_named_dataset(snakemake.output[0], snakemake.params.spec)
        log(f"wrote {snakemake.output[0]}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
