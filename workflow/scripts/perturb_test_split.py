"""Rule perturb_test_split: a dataset's test split under one perturbation at every severity."""

from segrobust.execution.job import job
from segrobust.perturb import perturb_test_split


def main(snakemake):
    with job(snakemake) as log:
        perturb_test_split(
            snakemake.input.dataset,
            snakemake.wildcards.perturbation,
            snakemake.params.severities,
            snakemake.params.seed,
            snakemake.output[0],
            options=snakemake.params.options,
        )
        log(f"wrote {snakemake.output[0]}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
