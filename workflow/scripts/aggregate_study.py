"""Rule aggregate_study: every model run's tables -> the study's tidy tables and summary."""

from segrobust import atomic
from segrobust.analysis.aggregate import concat_tables, summarise
from segrobust.execution.job import job


def main(snakemake):
    with job(snakemake) as log:
        per_image = concat_tables(snakemake.input.per_image)
        atomic.write_csv(snakemake.output.per_image, per_image)
        atomic.write_csv(snakemake.output.summary, summarise(per_image))
        for name in ("fnr", "train_logs", "patches", "applicability"):
            atomic.write_csv(snakemake.output[name], concat_tables(snakemake.input[name]))
        log(f"{len(per_image)} per-image rows from {len(snakemake.input.per_image)} runs")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
